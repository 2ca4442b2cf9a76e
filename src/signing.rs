//! The private key an Okta service app signs its client assertions with: read from PEM once,
//! when the config is loaded, and from then on only handed to the signer. [`config`] parses it,
//! [`okta::auth`] signs with it; the key material never appears in a message or `Debug` output.
//!
//! [`config`]: crate::config
//! [`okta::auth`]: crate::okta::auth

use std::fmt;

use jsonwebtoken::{Algorithm, EncodingKey, Header};

/// Why a PEM text is not a key the OAuth client can sign with. Neither variant quotes the key.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "is not a PEM RSA or EC (P-256) private key (\"BEGIN PRIVATE KEY\", \"BEGIN RSA \
         PRIVATE KEY\" or \"BEGIN EC PRIVATE KEY\")"
    )]
    NotAKey,
    #[error("cannot sign with it: {0}")]
    CannotSign(#[source] jsonwebtoken::errors::Error),
}

/// A parsed private key: RSA (signs RS256) or EC P-256 (signs ES256). Its bytes are wiped
/// when it is dropped, and its `Debug` shows only the algorithm.
#[derive(Clone)]
pub struct PrivateKey {
    key: EncodingKey,
    alg: Algorithm,
}

impl PrivateKey {
    /// Parses a PEM private key: RSA (PKCS#1 or PKCS#8) or EC P-256 (SEC1 or PKCS#8), and signs
    /// once with it, so that a key that parses but cannot sign is refused now rather than at the
    /// first run. The error never quotes the key.
    ///
    /// The PEM text is borrowed, never copied here: the loader holds it in a [`SecretString`]
    /// (read from a `*_file` through a buffer wiped after use) that wipes it when dropped, right
    /// after this returns. The parsed key is wiped when dropped too. What is not wiped is
    /// jsonwebtoken's own scratch while it decodes (the DER bytes and ASN.1 blocks it drops).
    ///
    /// [`SecretString`]: secrecy::SecretString
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let looks_ec = pem.contains("BEGIN EC PRIVATE KEY");
        let rsa = || EncodingKey::from_rsa_pem(pem.as_bytes()).map(|k| (k, Algorithm::RS256));
        let ec = || EncodingKey::from_ec_pem(pem.as_bytes()).map(|k| (k, Algorithm::ES256));
        let parsed = if looks_ec {
            ec().or_else(|_| rsa())
        } else {
            rsa().or_else(|_| ec())
        };
        let (key, alg) = parsed.map_err(|_| KeyError::NotAKey)?;
        let mut header = Header::new(alg);
        header.typ = Some("JWT".into());
        jsonwebtoken::encode(&header, &serde_json::json!({"probe": true}), &key)
            .map_err(KeyError::CannotSign)?;
        Ok(PrivateKey { key, alg })
    }

    /// The key as the JWT signer takes it.
    pub fn encoding_key(&self) -> &EncodingKey {
        &self.key
    }

    /// The JWT algorithm this key signs with: RS256 or ES256.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey({:?}, value not shown)", self.alg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use okta_pendo_testkit::keys;

    /// The base64 body of a PEM: what must never be shown.
    fn body(pem: &str) -> String {
        pem.lines().filter(|l| !l.starts_with("-----")).collect()
    }

    #[test]
    fn rsa_and_ec_keys_pick_their_algorithm() {
        let rsa = PrivateKey::from_pem(keys::RSA_PRIVATE_PEM).unwrap();
        assert_eq!(rsa.algorithm(), Algorithm::RS256);
        let ec = PrivateKey::from_pem(keys::EC_PRIVATE_PEM).unwrap();
        assert_eq!(ec.algorithm(), Algorithm::ES256);
    }

    #[test]
    fn bad_keys_are_refused_in_words() {
        let e = PrivateKey::from_pem(
            "-----BEGIN PRIVATE KEY-----\nTUlJQ1NFQ1JFVA==\n-----END PRIVATE KEY-----\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("is not a PEM RSA or EC"), "{e}");
        assert!(!e.contains("TUlJQ1NFQ1JFVA"), "{e}");
        assert!(PrivateKey::from_pem("not pem at all").is_err());
        // A public key is not a private key.
        assert!(PrivateKey::from_pem(keys::RSA_PUBLIC_PEM).is_err());
    }

    #[test]
    fn debug_shows_the_algorithm_only() {
        for pem in [keys::RSA_PRIVATE_PEM, keys::EC_PRIVATE_PEM] {
            let key = PrivateKey::from_pem(pem).unwrap();
            let shown = format!("{key:?} {key:#?}");
            assert!(shown.contains("value not shown"), "{shown}");
            let secret = body(pem);
            // No line of the key, nor any 16-character piece of its body, is shown.
            for piece in secret.as_bytes().chunks(16) {
                let piece = std::str::from_utf8(piece).unwrap();
                assert!(!shown.contains(piece), "{shown}");
            }
        }
    }
}

//! Signing JWTs: the private key an Okta service app signs its client assertions with (read
//! from PEM once, when the config is loaded, and from then on only handed to the signer), the
//! per-process DPoP key, and the compact JWS both are sent as. [`config`] parses the app's key,
//! [`okta::auth`] signs with it; the key material never appears in a message or `Debug` output.
//! The crypto is `ring`'s, the library the TLS connections use too.
//!
//! [`config`]: crate::config
//! [`okta::auth`]: crate::okta::auth

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, RSA_PKCS1_SHA256, RsaKeyPair,
};
use secrecy::zeroize::Zeroizing;
use serde::Serialize;

/// Why a PEM text is not a key the OAuth client can sign with. Neither variant quotes the key.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "is not a PEM RSA or EC (P-256) private key (\"BEGIN PRIVATE KEY\", \"BEGIN RSA \
         PRIVATE KEY\" or \"BEGIN EC PRIVATE KEY\")"
    )]
    NotAKey,
    #[error("cannot sign with it: {0}")]
    CannotSign(#[source] SignError),
}

/// Why a JWT could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("the key was refused: {0}")]
    Key(String),
    #[error("the signer failed")]
    Signer,
    #[error("cannot encode the JWT: {0}")]
    Encode(#[source] serde_json::Error),
}

/// The system's random source failed.
#[derive(Debug, thiserror::Error)]
#[error("the system's random source failed")]
pub struct RandomError;

/// The JWS algorithm a key signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// ECDSA with P-256 and SHA-256 (the signature as `r || s`).
    ES256,
}

/// How the key's DER is laid out (what `ring` parses it from).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Der {
    /// PKCS#8 (RSA or EC).
    Pkcs8,
    /// PKCS#1 `RSAPrivateKey`.
    Pkcs1,
}

/// A parsed private key: RSA (signs RS256) or EC P-256 (signs ES256). Its DER bytes are wiped
/// when it is dropped, and its `Debug` shows only the algorithm.
#[derive(Clone)]
pub struct PrivateKey {
    der: Zeroizing<Vec<u8>>,
    layout: Der,
    alg: Algorithm,
}

/// The public half of an EC P-256 key as a JWK (RFC 7517), as a DPoP proof's header carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EcPublicJwk {
    kty: &'static str,
    crv: &'static str,
    x: String,
    y: String,
}

/// The fields of a JWS header this client sets.
#[derive(Serialize)]
pub struct Header<'a> {
    pub typ: &'a str,
    pub alg: Algorithm,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwk: Option<&'a EcPublicJwk>,
}

/// One PEM block's label and its DER bytes (wiped when dropped), or `None` if `pem` is not
/// PEM. Only the first block is read.
fn pem_block(pem: &str) -> Option<(String, Zeroizing<Vec<u8>>)> {
    let mut lines = pem.lines().map(str::trim).skip_while(|l| l.is_empty());
    let label = lines
        .next()?
        .strip_prefix("-----BEGIN ")?
        .strip_suffix("-----")?
        .to_owned();
    let end = format!("-----END {label}-----");
    let mut body = Zeroizing::new(String::new());
    for line in lines.by_ref() {
        if line == end {
            let der = Zeroizing::new(STANDARD.decode(body.as_bytes()).ok()?);
            return Some((label, der));
        }
        body.push_str(line);
    }
    None
}

/// A DER length.
fn der_length(len: usize, out: &mut Vec<u8>) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

/// A SEC1 `ECPrivateKey` (`BEGIN EC PRIVATE KEY`) wrapped as the PKCS#8 of a P-256 key, the
/// only form `ring` reads; `ring` then checks the curve and the key themselves.
fn sec1_to_pkcs8(sec1: &[u8]) -> Zeroizing<Vec<u8>> {
    // version 0, AlgorithmIdentifier { id-ecPublicKey, prime256v1 }
    const HEAD: &[u8] = &[
        0x02, 0x01, 0x00, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
        0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,
    ];
    let mut octets = Zeroizing::new(vec![0x04]);
    der_length(sec1.len(), &mut octets);
    octets.extend_from_slice(sec1);
    let mut out = Zeroizing::new(vec![0x30]);
    der_length(HEAD.len() + octets.len(), &mut out);
    out.extend_from_slice(HEAD);
    out.extend_from_slice(&octets);
    out
}

impl PrivateKey {
    /// Parses a PEM private key: RSA (PKCS#1 or PKCS#8) or EC P-256 (SEC1 or PKCS#8), and signs
    /// once with it, so that a key that parses but cannot sign is refused now rather than at the
    /// first run. The error never quotes the key.
    ///
    /// The PEM text is borrowed, never copied here: the loader holds it in a [`SecretString`]
    /// (read from a `*_file` through a buffer wiped after use) that wipes it when dropped, right
    /// after this returns. The base64 body and the DER decoded from it are wiped when dropped
    /// too. What is not wiped is `ring`'s own working copy of the key, made for each signature
    /// and dropped right after it.
    ///
    /// [`SecretString`]: secrecy::SecretString
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let (label, der) = pem_block(pem).ok_or(KeyError::NotAKey)?;
        let candidates: &[(Der, Algorithm)] = match label.as_str() {
            "PRIVATE KEY" => &[
                (Der::Pkcs8, Algorithm::RS256),
                (Der::Pkcs8, Algorithm::ES256),
            ],
            "RSA PRIVATE KEY" => &[(Der::Pkcs1, Algorithm::RS256)],
            "EC PRIVATE KEY" => &[(Der::Pkcs8, Algorithm::ES256)],
            _ => return Err(KeyError::NotAKey),
        };
        let der = if label == "EC PRIVATE KEY" {
            sec1_to_pkcs8(&der)
        } else {
            der
        };
        let key = candidates
            .iter()
            .map(|&(layout, alg)| PrivateKey {
                der: der.clone(),
                layout,
                alg,
            })
            .find(|key| key.check().is_ok())
            .ok_or(KeyError::NotAKey)?;
        key.sign(b"probe").map_err(KeyError::CannotSign)?;
        Ok(key)
    }

    /// A new P-256 key pair from the system's random source (the per-process DPoP key), and its
    /// public half as a JWK.
    pub fn generate_p256() -> Result<(Self, EcPublicJwk), SignError> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| SignError::Signer)?;
        let key = PrivateKey {
            der: Zeroizing::new(pkcs8.as_ref().to_vec()),
            layout: Der::Pkcs8,
            alg: Algorithm::ES256,
        };
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &key.der, &rng)
            .map_err(|e| SignError::Key(e.to_string()))?;
        let point = pair.public_key().as_ref();
        // Uncompressed: 0x04, then x and y, 32 bytes each.
        if point.len() != 65 || point[0] != 4 {
            return Err(SignError::Key(
                "unexpected P-256 public key encoding".into(),
            ));
        }
        let jwk = EcPublicJwk {
            kty: "EC",
            crv: "P-256",
            x: URL_SAFE_NO_PAD.encode(&point[1..33]),
            y: URL_SAFE_NO_PAD.encode(&point[33..65]),
        };
        Ok((key, jwk))
    }

    /// The JWT algorithm this key signs with: RS256 or ES256.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// Whether `ring` takes the DER as a key of this algorithm.
    fn check(&self) -> Result<(), SignError> {
        self.with_pair(|_| Ok(()))
    }

    /// Runs `f` with the key parsed for `ring`, then drops the parsed key.
    fn with_pair<T>(
        &self,
        f: impl FnOnce(Pair<'_>) -> Result<T, SignError>,
    ) -> Result<T, SignError> {
        let refused = |e: ring::error::KeyRejected| SignError::Key(e.to_string());
        match (self.alg, self.layout) {
            (Algorithm::RS256, Der::Pkcs8) => f(Pair::Rsa(
                &RsaKeyPair::from_pkcs8(&self.der).map_err(refused)?,
            )),
            (Algorithm::RS256, Der::Pkcs1) => f(Pair::Rsa(
                &RsaKeyPair::from_der(&self.der).map_err(refused)?,
            )),
            (Algorithm::ES256, _) => f(Pair::Ec(
                &EcdsaKeyPair::from_pkcs8(
                    &ECDSA_P256_SHA256_FIXED_SIGNING,
                    &self.der,
                    &SystemRandom::new(),
                )
                .map_err(refused)?,
            )),
        }
    }

    /// The signature of `message` (RS256: PKCS#1 v1.5; ES256: the fixed `r || s` form JWS
    /// wants).
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        let rng = SystemRandom::new();
        self.with_pair(|pair| match pair {
            Pair::Rsa(pair) => {
                let mut signature = vec![0; pair.public().modulus_len()];
                pair.sign(&RSA_PKCS1_SHA256, &rng, message, &mut signature)
                    .map_err(|_| SignError::Signer)?;
                Ok(signature)
            }
            Pair::Ec(pair) => pair
                .sign(&rng, message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| SignError::Signer),
        })
    }

    /// A compact JWS: `header.claims.signature`, each part base64url without padding. The
    /// header's `alg` must be this key's.
    pub fn jwt(&self, header: &Header<'_>, claims: &impl Serialize) -> Result<String, SignError> {
        if header.alg != self.alg {
            return Err(SignError::Key(format!(
                "the key signs {:?}, not {:?}",
                self.alg, header.alg
            )));
        }
        let header = serde_json::to_vec(header).map_err(SignError::Encode)?;
        let claims = serde_json::to_vec(claims).map_err(SignError::Encode)?;
        let mut jwt = URL_SAFE_NO_PAD.encode(header);
        jwt.push('.');
        jwt.push_str(&URL_SAFE_NO_PAD.encode(claims));
        let signature = self.sign(jwt.as_bytes())?;
        jwt.push('.');
        jwt.push_str(&URL_SAFE_NO_PAD.encode(signature));
        Ok(jwt)
    }
}

/// A key parsed for one signature.
enum Pair<'a> {
    Rsa(&'a RsaKeyPair),
    Ec(&'a EcdsaKeyPair),
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey({:?}, value not shown)", self.alg)
    }
}

/// 128 bits from the system's random source, in hex: for IDs that must never repeat nor be
/// guessed (a JWT's `jti`).
pub fn random_id() -> Result<String, RandomError> {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| RandomError)?;
    Ok(format!("{:032x}", u128::from_be_bytes(bytes)))
}

/// SHA-256 of `data`, base64url without padding (a DPoP proof's `ath`).
pub fn sha256_b64url(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA256, data))
}

#[cfg(test)]
mod tests {
    use super::*;
    use okta_pendo_testkit::keys;

    /// The base64 body of a PEM: what must never be shown.
    fn body(pem: &str) -> String {
        pem.lines().filter(|l| !l.starts_with("-----")).collect()
    }

    /// Every form of every test key, with the algorithm it signs.
    const ALL: [(&str, Algorithm); 4] = [
        (keys::RSA_PRIVATE_PEM, Algorithm::RS256),
        (keys::RSA_PRIVATE_PKCS1_PEM, Algorithm::RS256),
        (keys::EC_PRIVATE_PEM, Algorithm::ES256),
        (keys::EC_PRIVATE_SEC1_PEM, Algorithm::ES256),
    ];

    #[test]
    fn rsa_and_ec_keys_in_each_form_pick_their_algorithm() {
        for (pem, alg) in ALL {
            let key = PrivateKey::from_pem(pem).unwrap();
            assert_eq!(key.algorithm(), alg, "{pem}");
        }
    }

    #[test]
    fn the_forms_of_one_key_sign_alike() {
        // PKCS#1 v1.5 is deterministic: the PKCS#8 and PKCS#1 forms of one key sign alike.
        let a = PrivateKey::from_pem(keys::RSA_PRIVATE_PEM).unwrap();
        let b = PrivateKey::from_pem(keys::RSA_PRIVATE_PKCS1_PEM).unwrap();
        assert_eq!(a.sign(b"m").unwrap(), b.sign(b"m").unwrap());
        assert_eq!(a.sign(b"m").unwrap().len(), 256);
        // ECDSA is not: the SEC1 and PKCS#8 forms hold the same private scalar.
        let der = |pem| pem_block(pem).unwrap().1;
        let sec1 = der(keys::EC_PRIVATE_SEC1_PEM);
        assert_eq!(&sec1_to_pkcs8(&sec1)[29..], &sec1[..]);
        assert_eq!(
            &der(keys::EC_PRIVATE_PEM)[36..68],
            &sec1[7..39],
            "the same private key"
        );
        let ec = PrivateKey::from_pem(keys::EC_PRIVATE_SEC1_PEM).unwrap();
        assert_eq!(ec.sign(b"m").unwrap().len(), 64);
    }

    #[test]
    fn a_jwt_has_the_header_and_claims_given() {
        let key = PrivateKey::from_pem(keys::RSA_PRIVATE_PEM).unwrap();
        let header = Header {
            typ: "JWT",
            alg: Algorithm::RS256,
            kid: Some("k1"),
            jwk: None,
        };
        let jwt = key.jwt(&header, &serde_json::json!({"sub": "x"})).unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3, "{jwt}");
        let decode = |p: &str| -> serde_json::Value {
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap()
        };
        assert_eq!(
            decode(parts[0]),
            serde_json::json!({"typ": "JWT", "alg": "RS256", "kid": "k1"})
        );
        assert_eq!(decode(parts[1]), serde_json::json!({"sub": "x"}));
        assert_eq!(URL_SAFE_NO_PAD.decode(parts[2]).unwrap().len(), 256);
        // A header naming another algorithm is refused, not signed.
        let es = Header {
            alg: Algorithm::ES256,
            ..header
        };
        assert!(key.jwt(&es, &serde_json::json!({})).is_err());
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
        assert!(PrivateKey::from_pem(keys::EC_PUBLIC_PEM).is_err());
        // Each body under another form's label is refused.
        let relabel = |pem: &str, from: &str, to: &str| pem.replace(from, to);
        for pem in [
            relabel(keys::RSA_PRIVATE_PEM, "PRIVATE KEY", "EC PRIVATE KEY"),
            relabel(keys::EC_PRIVATE_PEM, "PRIVATE KEY", "RSA PRIVATE KEY"),
            relabel(keys::EC_PRIVATE_SEC1_PEM, "EC PRIVATE KEY", "PRIVATE KEY"),
            // Cut short: no END line.
            keys::RSA_PRIVATE_PEM
                .lines()
                .take(5)
                .collect::<Vec<_>>()
                .join("\n"),
        ] {
            assert!(PrivateKey::from_pem(&pem).is_err(), "{pem}");
        }
    }

    #[test]
    fn debug_shows_the_algorithm_only() {
        for (pem, _) in ALL {
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

    #[test]
    fn generated_keys_sign_and_show_a_public_jwk_only() {
        let (key, jwk) = PrivateKey::generate_p256().unwrap();
        assert_eq!(key.algorithm(), Algorithm::ES256);
        let jwk = serde_json::to_value(&jwk).unwrap();
        assert_eq!(jwk["kty"], "EC");
        assert_eq!(jwk["crv"], "P-256");
        assert_eq!(jwk["x"].as_str().unwrap().len(), 43);
        assert_eq!(jwk["y"].as_str().unwrap().len(), 43);
        assert!(jwk.get("d").is_none());
        assert_eq!(key.sign(b"m").unwrap().len(), 64);
    }

    #[test]
    fn random_ids_are_128_bits_in_hex_and_never_repeat() {
        let ids: std::collections::HashSet<String> =
            (0..1000).map(|_| random_id().unwrap()).collect();
        assert_eq!(ids.len(), 1000);
        for id in &ids {
            assert_eq!(id.len(), 32, "{id}");
            assert!(
                id.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
                "{id}"
            );
        }
    }

    #[test]
    fn sha256_is_the_standard_one() {
        // RFC 9449's example: the hash of an access token, as `ath`.
        assert_eq!(
            sha256_b64url(b"Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"),
            "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"
        );
    }
}

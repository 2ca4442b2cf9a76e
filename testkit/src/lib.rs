//! Local Okta and Pendo servers that speak the real wire formats, for the tests, the demo and
//! the benchmarks of okta-pendo-sync.
//!
//! * [`FakeOkta`] serves the Okta Users API (`/api/v1/users`, `/api/v1/users/{id or login}`,
//!   `/api/v1/groups/{id}/users`)
//!   shaped after real recorded Okta traffic (the HTTP recordings of Okta's own SDK tests): `SSWS` token
//!   check, pages linked by lowercase `link` headers with an opaque `after` cursor (as separate
//!   header lines or, like some proxies, one comma-joined line), `x-rate-limit-*` headers and a
//!   `date`, gzip bodies when asked, Okta error bodies, `filter` and `search` expressions
//!   (`and`/`or`/parentheses over the properties and operators Okta allows in each), users
//!   modifiable while it runs ([`FakeOkta::modify_user`], [`FakeOkta::touch_user`]),
//!   `DEPROVISIONED` users omitted from unfiltered listings as Okta does, an optional enforced
//!   request budget per window, and injected faults (error
//!   statuses, 429 with a reset, the concurrency-limit 429, a `next` link that leaves the org,
//!   malformed or non-array JSON, a wrong-typed user, a huge streamed body, a page of zeros, a
//!   page holding more users than its limit, a body cut mid-way, corrupt gzip, a body in an
//!   encoding not asked for, a request never answered), and
//!   an optional clock skew of the org.
//! * [`FakePendo`] serves Pendo's visitor metadata API (`POST
//!   /api/v1/metadata/visitor/{group}/value[?create=true]`, `GET
//!   /api/v1/metadata/schema/visitor`) with integration-key and content-type checks, Pendo's
//!   `{"total","updated","failed","missing","errors"}` accounting, injected faults (error
//!   statuses, `Retry-After`, 409 "Operation in progress", malformed JSON, a request never
//!   answered), a 408 for batches over a size, records it refuses or does not confirm, and
//!   optionally Pendo's refusal of fields its schema does not have.
//! * [`FakeWebhook`] is an incoming-webhook receiver (Slack's, or any JSON POST) on a secret
//!   path, recording what it gets, with injected error statuses or a receiver that stays down.
//! * [`users`] makes deterministic, realistic Okta users, fast enough to serve a million.
//! * [`OAuthOptions`] (in [`OktaOptions::oauth`]) turns the fake Okta into an org whose API is
//!   accessed by an OAuth 2.0 service app: client credentials with a `private_key_jwt` client
//!   assertion at `POST /oauth2/v1/token`, DPoP-bound (RFC 9449) or Bearer access tokens,
//!   server nonces, scopes and the admin role, all verified as Okta does, with injectable
//!   token-endpoint faults (see [`oauth`]).
//!   [`keys`] holds throwaway key pairs for it.
//!
//! Both servers bind 127.0.0.1 (port 0 by default), record what they receive for assertions,
//! and stop, closing every connection, when dropped. The `fake-saas` binary runs both in a
//! separate process for the demo and for measurements.
//!
//! ```no_run
//! # async fn demo() {
//! use okta_pendo_testkit::{FakeOkta, FakePendo, OktaOptions, PendoOptions, UserSource};
//! let okta = FakeOkta::start(OktaOptions { users: UserSource::Generated(450), ..Default::default() }).await;
//! let pendo = FakePendo::start(PendoOptions::default()).await;
//! println!("{} {}", okta.base_url(), pendo.base_url());
//! # }
//! ```

pub mod oauth;
pub mod okta;
pub mod pendo;
mod query;
mod server;
mod stream;
pub mod users;
pub mod webhook;

pub use oauth::{OAuthOptions, TokenRequest};
pub use okta::{
    FakeOkta, HANG_DURATION, LinkStyle, OktaFault, OktaOptions, RecordedRequest, UserSource,
};
pub use pendo::{ExistingVisitors, FakePendo, PendoFault, PendoOptions, ReceivedBatch};
pub use webhook::{FakeWebhook, ReceivedPost, WebhookOptions};

/// Throwaway key pairs for tests (see `testkit/keys/README.md`): they protect nothing and must
/// never be registered with a real Okta org.
pub mod keys {
    /// RSA 2048 private key, PKCS#8 PEM (`BEGIN PRIVATE KEY`): signs RS256 client assertions
    /// matching the default [`OAuthOptions::public_key_pem`](crate::OAuthOptions::public_key_pem).
    pub const RSA_PRIVATE_PEM: &str = include_str!("../keys/rsa-private.pem");
    /// The public key of [`RSA_PRIVATE_PEM`], SubjectPublicKeyInfo PEM (`BEGIN PUBLIC KEY`).
    pub const RSA_PUBLIC_PEM: &str = include_str!("../keys/rsa-public.pem");
    /// [`RSA_PRIVATE_PEM`] as PKCS#1 PEM (`BEGIN RSA PRIVATE KEY`).
    pub const RSA_PRIVATE_PKCS1_PEM: &str = include_str!("../keys/rsa-private-pkcs1.pem");
    /// EC P-256 private key, PKCS#8 PEM: signs ES256 client assertions.
    pub const EC_PRIVATE_PEM: &str = include_str!("../keys/ec-private.pem");
    /// [`EC_PRIVATE_PEM`] as SEC1 PEM (`BEGIN EC PRIVATE KEY`).
    pub const EC_PRIVATE_SEC1_PEM: &str = include_str!("../keys/ec-private-sec1.pem");
    /// The public key of [`EC_PRIVATE_PEM`], SubjectPublicKeyInfo PEM.
    pub const EC_PUBLIC_PEM: &str = include_str!("../keys/ec-public.pem");
    /// A second RSA 2048 private key (PKCS#8 PEM), registered nowhere: for "signed with the
    /// wrong key" tests.
    pub const RSA_OTHER_PRIVATE_PEM: &str = include_str!("../keys/rsa-other-private.pem");
}

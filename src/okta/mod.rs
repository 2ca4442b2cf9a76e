//! Reading users from the Okta Users API: the client ([`client`]), its authentication
//! ([`auth`]: SSWS, or OAuth with DPoP), the `Link` header ([`link`]), pacing by the
//! rate-limit headers ([`pacer`]) and reading only the needed attributes ([`projection`]).

pub mod auth;
pub mod client;
pub mod link;
pub mod pacer;
pub mod projection;

pub use auth::SetupError;
pub use client::{OktaClient, OktaError, Page};

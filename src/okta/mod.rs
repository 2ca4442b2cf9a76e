//! Reading users from the Okta Users API: the client ([`client`]), its authentication
//! ([`auth`]: SSWS, or OAuth with DPoP), the `Link` header ([`link`]) and pacing by the
//! rate-limit headers ([`pacer`]).

pub mod auth;
pub mod client;
pub mod link;
pub mod pacer;

pub use client::{OktaClient, OktaError, Page};

//! Reading users from the Okta Users API: the client ([`client`]), the `Link` header
//! ([`link`]) and pacing by the rate-limit headers ([`pacer`]).

pub mod client;
pub mod link;
pub mod pacer;

pub use client::{OktaClient, OktaError, Page};

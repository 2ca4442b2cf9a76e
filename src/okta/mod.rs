//! Reading users from the Okta Users API: the client ([`client`]) and the `Link` header
//! ([`link`]).

pub mod client;
pub mod link;

pub use client::{OktaClient, OktaError, Page};

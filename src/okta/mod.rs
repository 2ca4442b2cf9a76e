//! Reading users from the Okta Users API: the client ([`client`]), its authentication
//! ([`auth`]: SSWS, or OAuth with DPoP), the `Link` header ([`link`]), pacing by the
//! rate-limit headers ([`pacer`]), reading only the needed attributes ([`projection`], in one
//! pass over a page: `scan`) and reading listings in order with the next page already
//! requested ([`pages`]).

pub mod auth;
pub mod client;
pub mod link;
pub mod pacer;
pub mod pages;
pub mod projection;
mod scan;

pub use auth::SetupError;
pub use client::{Ahead, OktaClient, OktaError, Page};
pub use pages::Pages;

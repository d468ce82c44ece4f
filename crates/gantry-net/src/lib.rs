//! Outbound fetches a remote user can trigger must not reach the server's own network.
//!
//! A pipeline submitted to `gantry server` can name URL inputs, and the server fetches them.
//! Without a guard, a remote user could make the server fetch `http://169.254.169.254/`
//! (cloud credentials), `http://127.0.0.1:5432/` or any other service that trusts the
//! server's network position (server-side request forgery). This crate decides what a fetch
//! may reach and builds a reqwest client that sticks to the decision:
//!
//! - [`classify`] sorts an address into loopback, private, link-local, ... or global (pure);
//! - [`FetchPolicy`] allows global addresses plus an admin's allowlist ([`Allow`], parsed
//!   from `--allow-fetch` values), or everything for a local single-user run;
//! - [`FetchPolicy::check_url`] refuses other schemes and internal IP literals before any
//!   connection, and [`FetchPolicy::client`] checks the addresses names resolve to and every
//!   redirect hop;
//! - [`refusal`] and [`describe`] turn reqwest's wrapped errors back into our message;
//!   [`redact_url`] shows a secret-bearing URL (a webhook) without its secret.
//!
//! ```no_run
//! # async fn fetch(url: &str) -> Result<(), Box<dyn std::error::Error>> {
//! use gantry_net::FetchPolicy;
//! let policy = FetchPolicy::guarded(vec![FetchPolicy::parse_allow("10.0.0.0/8")?]);
//! let client = policy.client(reqwest::Client::builder())?;
//! let url = policy.check_url(url)?;
//! match client.get(url).send().await {
//!     Ok(response) => println!("{}", response.status()),
//!     Err(err) => eprintln!("{}", gantry_net::describe(&err)),
//! }
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]

mod allow;
mod class;
mod client;
mod error;
mod policy;

pub use allow::Allow;
pub use class::{AddrClass, classify};
pub use client::MAX_REDIRECTS;
pub use error::{ALLOW_FLAG, NetError, describe, redact_url, refusal};
pub use policy::FetchPolicy;

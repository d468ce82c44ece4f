//! A reqwest client that enforces a [`FetchPolicy`] on names and redirects.
//!
//! Three holes are closed here, each because checking the URL up front is not enough:
//! - **names**: a name can resolve to an internal address, or resolve to a public one for the
//!   check and an internal one for the connection (DNS rebinding). The client's resolver does
//!   the lookup itself and hands reqwest only the addresses that pass, so the address checked
//!   is the address connected to.
//! - **redirects**: a public server can answer `302 Location: http://169.254.169.254/`. Every
//!   hop's scheme and IP-literal host are checked before it is followed; a named hop goes
//!   through the resolver like any other name.
//! - **proxies**: a proxy resolves names itself, out of the guard's sight, so a guarded client
//!   uses none (`HTTP_PROXY` and friends are ignored).

use std::net::SocketAddr;
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::redirect;

use crate::error::NetError;
use crate::policy::FetchPolicy;

/// Hops a fetch follows before giving up, as reqwest's default policy does.
pub const MAX_REDIRECTS: usize = 10;

impl FetchPolicy {
    /// A client built from `builder` that enforces this policy on named hosts (through its
    /// resolver) and on every redirect hop (at most [`MAX_REDIRECTS`]).
    ///
    /// reqwest connects to an IP-literal host without asking any resolver, so a URL must go
    /// through [`FetchPolicy::check_url`] before it is handed to this client. `builder` must
    /// not carry `resolve`/`resolve_to_addrs` overrides: reqwest consults those before the
    /// resolver. Its redirect policy, resolver and (for a guarded policy) proxy settings are
    /// replaced. An unrestricted policy keeps the system resolver and the proxy settings,
    /// and checks only the scheme of redirects.
    pub fn client(&self, builder: reqwest::ClientBuilder) -> Result<reqwest::Client, NetError> {
        let policy = Arc::new(self.clone());
        let builder = builder.redirect(redirect_policy(Arc::clone(&policy)));
        let builder = if self.is_unrestricted() {
            builder
        } else {
            builder.no_proxy().dns_resolver(GuardedResolver { policy })
        };
        builder.build().map_err(|e| NetError::Client {
            why: crate::describe(&e),
        })
    }
}

fn redirect_policy(policy: Arc<FetchPolicy>) -> redirect::Policy {
    let limit = redirect::Policy::limited(MAX_REDIRECTS);
    redirect::Policy::custom(move |attempt| match policy.check_parsed(attempt.url()) {
        Ok(()) => limit.redirect(attempt),
        Err(refused) => attempt.error(refused),
    })
}

/// Resolves with the system resolver and keeps only the addresses the policy allows.
struct GuardedResolver {
    policy: Arc<FetchPolicy>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = Arc::clone(&self.policy);
        let host = name.as_str().to_owned();
        Box::pin(async move {
            // Port 0: reqwest puts the URL's port (or the scheme's) on every address.
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed = keep_allowed(&policy, &host, found)
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?;
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// The addresses of `found` the policy lets `host` connect to, or why there are none.
///
/// A name with both public and internal addresses is fetched from the public ones only:
/// dropping the rest keeps it working without the risk.
fn keep_allowed(
    policy: &FetchPolicy,
    host: &str,
    found: Vec<SocketAddr>,
) -> Result<Vec<SocketAddr>, NetError> {
    let mut allowed = Vec::with_capacity(found.len());
    let mut refused = None;
    for addr in found {
        match policy.check_addr(host, addr.ip()) {
            Ok(()) => allowed.push(addr),
            Err(err) => {
                refused.get_or_insert(err);
            }
        }
    }
    if allowed.is_empty() {
        return Err(refused.unwrap_or_else(|| NetError::NoAddress {
            host: host.to_owned(),
        }));
    }
    Ok(allowed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::class::AddrClass;

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter()
            .map(|a| a.parse().expect("test socket address parses"))
            .collect()
    }

    #[test]
    fn internal_addresses_of_a_name_are_dropped() {
        let policy = FetchPolicy::default();
        let found = addrs(&[
            "10.0.0.1:0",
            "93.184.216.34:0",
            "[::1]:0",
            "[2606:4700::1]:0",
        ]);
        let kept = keep_allowed(&policy, "mixed.example", found).expect("public ones remain");
        assert_eq!(kept, addrs(&["93.184.216.34:0", "[2606:4700::1]:0"]));
    }

    #[test]
    fn a_name_with_only_internal_addresses_is_refused_with_the_first() {
        let policy = FetchPolicy::default();
        let found = addrs(&["169.254.169.254:0", "127.0.0.1:0"]);
        match keep_allowed(&policy, "metadata.example", found) {
            Err(NetError::Refused {
                host, addr, class, ..
            }) => {
                assert_eq!(host, "metadata.example");
                assert_eq!(addr.to_string(), "169.254.169.254");
                assert_eq!(class, AddrClass::LinkLocal);
            }
            other => panic!("should be refused, got {other:?}"),
        }
        assert!(matches!(
            keep_allowed(&policy, "empty.example", Vec::new()),
            Err(NetError::NoAddress { .. })
        ));
    }

    #[test]
    fn allowlisted_names_keep_their_internal_addresses() {
        let allow = FetchPolicy::parse_allow("registry.internal").expect("entry parses");
        let policy = FetchPolicy::guarded(vec![allow]);
        let found = addrs(&["10.0.0.7:0"]);
        assert_eq!(
            keep_allowed(&policy, "Registry.Internal.", found.clone()).ok(),
            Some(found)
        );
    }
}

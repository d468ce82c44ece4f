//! The guard against real connections: loopback HTTP servers that count what reaches them.
//!
//! Every server listens on loopback only. "The server saw no connection" is established
//! without sleeping: after the refused fetch, one allowed fetch is made to the same server,
//! and since the server accepts connections in arrival order, it must have accepted exactly
//! one (a stray connection from the refused fetch would have arrived, and been counted,
//! first).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use gantry_net::{AddrClass, FetchPolicy, NetError, describe, refusal};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A loopback server that answers every request with one fixed response.
struct Server {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
}

impl Server {
    /// Listens on `ip` (a loopback address) at a free port and answers every request with
    /// `response`.
    async fn start(ip: &str, response: String) -> Server {
        let listener = TcpListener::bind((ip, 0))
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("listener address");
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&accepted);
        let response = Arc::new(response);
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                let response = Arc::clone(&response);
                // Answer on its own task, so a connection that never sends a request
                // cannot hold up the accept order the tests rely on.
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16384 {
                        match conn.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let _ = conn.write_all(response.as_bytes()).await;
                    let _ = conn.shutdown().await;
                });
            }
        });
        Server { addr, accepted }
    }

    async fn ok(ip: &str) -> Server {
        Server::start(ip, response("200 OK", "", "hello")).await
    }

    async fn redirect(ip: &str, location: &str) -> Server {
        let header = format!("Location: {location}\r\n");
        Server::start(ip, response("302 Found", &header, "")).await
    }

    fn url(&self, host: &str) -> String {
        format!("http://{host}:{}/", self.addr.port())
    }

    fn literal_url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// How many connections the server had accepted before one more, allowed, fetch.
    async fn connections_before_a_control_fetch(&self) -> usize {
        let body = fetch(&FetchPolicy::unrestricted(), &self.literal_url())
            .await
            .expect("the control fetch reaches the server");
        assert_eq!(body, "hello");
        self.accepted() - 1
    }
}

fn response(status: &str, headers: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// What a caller does: check the URL, fetch it with the policy's client, read the body.
async fn fetch(policy: &FetchPolicy, url: &str) -> Result<String, Failure> {
    let checked = policy.check_url(url).map_err(Failure::Checked)?;
    // No proxy from the environment for the unrestricted fetches either: the servers are
    // on loopback. (A guarded client never uses one.)
    let client = policy
        .client(reqwest::Client::builder().no_proxy())
        .expect("client builds");
    let response = client.get(checked).send().await.map_err(Failure::Sent)?;
    response.text().await.map_err(Failure::Sent)
}

/// Where a fetch failed: before connecting, or in reqwest.
#[derive(Debug)]
enum Failure {
    Checked(NetError),
    Sent(reqwest::Error),
}

impl Failure {
    /// The guard's refusal and the message a user would see.
    fn refusal(&self) -> (NetError, String) {
        match self {
            Failure::Checked(err) => (err.clone(), err.to_string()),
            Failure::Sent(err) => match refusal(err) {
                Some(ours) => (ours.clone(), describe(err)),
                None => panic!("expected a refusal, got {}", describe(err)),
            },
        }
    }
}

fn allow(entries: &[&str]) -> FetchPolicy {
    FetchPolicy::guarded(
        entries
            .iter()
            .map(|e| FetchPolicy::parse_allow(e).expect("entry parses"))
            .collect(),
    )
}

fn assert_refused_loopback(failure: &Failure) -> String {
    let (err, message) = failure.refusal();
    match err {
        NetError::Refused { class, .. } => assert_eq!(class, AddrClass::Loopback),
        other => panic!("expected a loopback refusal, got {other:?}"),
    }
    message
}

#[tokio::test]
async fn a_guarded_fetch_of_a_loopback_address_is_refused_before_connecting() {
    let server = Server::ok("127.0.0.1").await;
    let url = server.literal_url();
    let failure = fetch(&FetchPolicy::default(), &url)
        .await
        .expect_err("loopback is refused");
    assert!(matches!(failure, Failure::Checked(_)));
    let message = assert_refused_loopback(&failure);
    assert_eq!(
        message,
        format!(
            "refusing to fetch {url}: 127.0.0.1 is a loopback address; \
             an admin can allow it with --allow-fetch 127.0.0.1"
        )
    );
    assert_eq!(server.connections_before_a_control_fetch().await, 0);
}

#[tokio::test]
async fn a_guarded_client_refuses_a_name_that_resolves_to_loopback() {
    let server = Server::ok("127.0.0.1").await;
    let url = server.url("localhost");
    // check_url lets names through; the client's resolver is what refuses.
    assert!(FetchPolicy::default().check_url(&url).is_ok());
    let failure = fetch(&FetchPolicy::default(), &url)
        .await
        .expect_err("localhost is refused");
    assert!(matches!(failure, Failure::Sent(_)));
    let message = assert_refused_loopback(&failure);
    assert!(
        message.starts_with(&format!("refusing to fetch {url}: localhost resolves to ")),
        "{message}"
    );
    assert!(
        message.ends_with("a loopback address; an admin can allow it with --allow-fetch localhost"),
        "{message}"
    );
    assert_eq!(server.connections_before_a_control_fetch().await, 0);
}

#[tokio::test]
async fn an_allowlisted_address_is_fetched_by_literal_and_by_name() {
    let server = Server::ok("127.0.0.1").await;
    let policy = allow(&["127.0.0.1"]);
    let body = fetch(&policy, &server.literal_url())
        .await
        .expect("allowed");
    assert_eq!(body, "hello");
    // A range entry matches the resolved address, whatever name led there.
    let body = fetch(&policy, &server.url("localhost"))
        .await
        .expect("allowed");
    assert_eq!(body, "hello");
    assert_eq!(server.accepted(), 2);
}

#[tokio::test]
async fn an_allowlisted_name_is_fetched_but_its_address_stays_closed() {
    let server = Server::ok("127.0.0.1").await;
    let policy = allow(&["localhost"]);
    let body = fetch(&policy, &server.url("LOCALHOST"))
        .await
        .expect("allowed");
    assert_eq!(body, "hello");
    let failure = fetch(&policy, &server.literal_url())
        .await
        .expect_err("the literal is not the allowed name");
    assert_refused_loopback(&failure);
    assert_eq!(server.connections_before_a_control_fetch().await, 1);
}

#[tokio::test]
async fn a_redirect_to_a_loopback_address_is_refused_at_the_hop() {
    let target = Server::ok("127.0.0.1").await;
    let redirector = Server::redirect("127.0.0.2", &target.literal_url()).await;
    let policy = allow(&["127.0.0.2/32"]);
    let failure = fetch(&policy, &redirector.literal_url())
        .await
        .expect_err("the hop is refused");
    assert!(matches!(failure, Failure::Sent(_)));
    let message = assert_refused_loopback(&failure);
    assert_eq!(
        message,
        format!(
            "refusing to fetch {} (redirected from {}): 127.0.0.1 is a loopback address; \
             an admin can allow it with --allow-fetch 127.0.0.1",
            target.literal_url(),
            redirector.literal_url()
        )
    );
    assert_eq!(redirector.accepted(), 1);
    assert_eq!(target.connections_before_a_control_fetch().await, 0);
}

#[tokio::test]
async fn a_redirect_to_a_name_that_resolves_to_loopback_is_refused() {
    let target = Server::ok("127.0.0.1").await;
    let redirector = Server::redirect("127.0.0.2", &target.url("localhost")).await;
    let policy = allow(&["127.0.0.2/32"]);
    let failure = fetch(&policy, &redirector.literal_url())
        .await
        .expect_err("the hop is refused");
    let message = assert_refused_loopback(&failure);
    assert!(
        message.starts_with(&format!(
            "refusing to fetch from localhost (redirected from {}): localhost resolves to ",
            redirector.literal_url()
        )),
        "{message}"
    );
    assert_eq!(redirector.accepted(), 1);
    assert_eq!(target.connections_before_a_control_fetch().await, 0);
}

#[tokio::test]
async fn a_redirect_to_another_scheme_is_refused() {
    // (A `file:///` location is not even taken for a redirect: reqwest hands back the 302.)
    let redirector = Server::redirect("127.0.0.2", "ftp://127.0.0.1/etc/passwd").await;
    for policy in [allow(&["127.0.0.2"]), FetchPolicy::unrestricted()] {
        let failure = fetch(&policy, &redirector.literal_url())
            .await
            .expect_err("ftp:// is not followed");
        let Failure::Sent(err) = &failure else {
            panic!("the first URL is fine: {failure:?}");
        };
        assert!(
            matches!(refusal(err), Some(NetError::Scheme { scheme, .. }) if scheme == "ftp"),
            "{}",
            describe(err)
        );
    }
}

#[tokio::test]
async fn unrestricted_fetches_loopback_and_follows_redirects_to_it() {
    let target = Server::ok("127.0.0.1").await;
    let redirector = Server::redirect("127.0.0.2", &target.url("localhost")).await;
    let policy = FetchPolicy::unrestricted();
    assert_eq!(
        fetch(&policy, &target.literal_url())
            .await
            .expect("fetched"),
        "hello"
    );
    assert_eq!(
        fetch(&policy, &target.url("localhost"))
            .await
            .expect("fetched"),
        "hello"
    );
    assert_eq!(
        fetch(&policy, &redirector.literal_url())
            .await
            .expect("followed"),
        "hello"
    );
    assert_eq!(target.accepted(), 3);
}

#[tokio::test]
async fn a_redirect_loop_stops_and_is_not_called_a_refusal() {
    // The server redirects to itself: its own URL is only known once it listens, so it
    // redirects to a relative path instead.
    let looping = Server::redirect("127.0.0.1", "/again").await;
    let failure = fetch(&FetchPolicy::unrestricted(), &looping.literal_url())
        .await
        .expect_err("too many redirects");
    let Failure::Sent(err) = &failure else {
        panic!("the first URL is fine: {failure:?}");
    };
    assert!(refusal(err).is_none());
    assert!(err.is_redirect(), "{}", describe(err));
    assert_eq!(looping.accepted(), gantry_net::MAX_REDIRECTS + 1);
}

#[tokio::test]
async fn describe_joins_the_causes_of_other_failures() {
    // A port nothing listens on: bind one, then close it.
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        listener.local_addr().expect("address").port()
    };
    let failure = fetch(
        &FetchPolicy::unrestricted(),
        &format!("http://127.0.0.1:{port}/"),
    )
    .await
    .expect_err("nothing listens");
    let Failure::Sent(err) = &failure else {
        panic!("the URL is fine: {failure:?}");
    };
    assert!(refusal(err).is_none());
    let message = describe(err);
    assert!(message.starts_with("error sending request"), "{message}");
    assert!(message.contains("refused"), "{message}");
}

//! A real S3 API for tests: `moto_server` (Python's moto) on 127.0.0.1, one per test process.
//!
//! `GANTRY_TEST_MOTO_SERVER` names the `moto_server` executable (scripts/test.sh installs moto
//! into its venv and sets it); unset, the test is skipped, or fails under
//! `GANTRY_TEST_REQUIRE_ALL` (see `skip.rs`, which the including file must also include as
//! `mod skip`).

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const MOTO_ENV: &str = "GANTRY_TEST_MOTO_SERVER";

/// A running moto_server, killed on drop.
pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
    port: u16,
}

impl Moto {
    /// Starts moto_server, or None (after `skip::because`) when none is configured.
    pub fn start() -> Option<Moto> {
        let exe = crate::skip::unless_env(
            MOTO_ENV,
            "a moto_server executable (pip install 'moto[server]')",
        )?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let child = Command::new(&exe)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{MOTO_ENV}={exe} does not start: {e}"));
        let moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto_server did not listen on {} within 30 s",
                moto.endpoint
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(moto)
    }

    /// Creates a bucket (moto accepts the unsigned request).
    pub fn create_bucket(&self, bucket: &str) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to moto");
        write!(
            s,
            "PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )
        .expect("send");
        let mut answer = String::new();
        s.read_to_string(&mut answer).expect("read");
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "creating bucket {bucket}: {answer}"
        );
    }

    /// The environment an S3 client needs to reach this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ALLOW_HTTP", "true".into()),
        ]
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

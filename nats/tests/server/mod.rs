//! A real `nats-server` for the tests, on a free localhost port, stopped when
//! dropped. Under `CI` a missing server fails the test; elsewhere the test
//! says it was skipped, and why.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) struct Server {
    child: Child,
    pub(crate) port: u16,
}

impl Server {
    /// Starts a server, or `None` (outside CI) if `nats-server` is missing.
    pub(crate) fn start(test: &str) -> Option<Server> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        match Server::on(port) {
            Ok(server) => Some(server),
            Err(e) if std::env::var_os("CI").is_none() => {
                eprintln!(
                    "skipped {test}: cannot start nats-server ({e}); install it (Debian: apt-get install nats-server)"
                );
                None
            }
            Err(e) => panic!("{test}: cannot start nats-server under CI: {e}"),
        }
    }

    /// Starts a server on `port` and waits until it takes connections.
    pub(crate) fn on(port: u16) -> std::io::Result<Server> {
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let mut server = Server { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                let _ = server.child.kill();
                return Err(std::io::Error::other(
                    "nats-server did not listen within 10 s",
                ));
            }
            if let Some(status) = server.child.try_wait()? {
                return Err(std::io::Error::other(format!(
                    "nats-server exited: {status}"
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(server)
    }

    pub(crate) fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Freezes the server (`SIGSTOP`): its connections stay open, and it
    /// reads nothing from them until it is stopped.
    pub(crate) fn freeze(&self) {
        let status = Command::new("kill")
            .args(["-STOP", &self.child.id().to_string()])
            .status()
            .expect("kill -STOP");
        assert!(status.success(), "kill -STOP: {status}");
    }

    /// Stops the server (to restart it on the same port).
    pub(crate) fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Waits up to 30 s for `done`.
pub(crate) fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

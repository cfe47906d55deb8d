//! A real nats-server for integration tests: the binary named by `FEDENGINE_NATS_SERVER`
//! (set in `.cargo/config.toml` by `scripts/setup`), on a free port with JetStream and its
//! own store directory; killed on drop, restartable on the same port and store.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running (or stopped) nats-server.
#[derive(Debug)]
pub struct NatsServer {
    binary: PathBuf,
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// A configuration file passed with `-c` (command-line options still win).
    config: Option<PathBuf>,
}

impl NatsServer {
    /// Starts a server with JetStream on a free port; waits until it accepts connections.
    pub fn start() -> Self {
        let binary = std::env::var_os("FEDENGINE_NATS_SERVER")
            .map(PathBuf::from)
            .expect(
                "FEDENGINE_NATS_SERVER is not set: run scripts/setup (it installs nats-server and \
             names it in .cargo/config.toml [env]), or set it to a nats-server 2.10+ binary",
            );
        Self::start_binary(binary)
    }

    /// Like [`NatsServer::start`], with `config` (a nats-server configuration) in a file
    /// given with `-c`; address, port, JetStream and store directory come from the command
    /// line as usual.
    #[allow(dead_code)]
    pub fn start_with_config(config: &str) -> Self {
        let mut server = Self::start();
        server.stop();
        let path = server.dir.path().join("server.conf");
        std::fs::write(&path, config).expect("writing the server configuration");
        server.config = Some(path);
        server.restart();
        server
    }

    /// Starts the given nats-server binary like [`NatsServer::start`].
    pub fn start_binary(binary: PathBuf) -> Self {
        assert!(
            binary.is_file(),
            "nats-server binary {} is not a file",
            binary.display()
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut server = Self {
            binary,
            port,
            dir,
            child: None,
            config: None,
        };
        server.restart();
        server
    }

    /// The client URL.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server (its JetStream store stays).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again (or for the first time) on the same port and store directory.
    pub fn restart(&mut self) {
        self.stop();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("server log");
        let child = Command::new(&self.binary)
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(self.dir.path().join("store"))
            .args(
                self.config
                    .iter()
                    .flat_map(|c| [std::ffi::OsStr::new("-c"), c.as_os_str()]),
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.binary.display()));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("nats-server exited with {status}:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "nats-server does not accept connections on port {} after 20 s:\n{}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

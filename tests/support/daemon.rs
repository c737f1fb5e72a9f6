//! The real binary in a test: `calltap` with an API key, a free loopback port,
//! `calltap serve` started and stopped (SIGTERM) or killed (SIGKILL), a configuration
//! file, and the office morning replayed with its events into the outbox.
#![allow(dead_code)] // each test binary uses a part of it

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `calltap`, logging warnings only, with `key` as its API key.
pub fn calltap(key: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_calltap"));
    cmd.env("CALLTAP_LOG", "warn")
        .env("CALLTAP_SECRET_KEY", key);
    cmd
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("calltap.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `calltap replay --webhooks` of the project's office morning into `data`: its calls
/// stored, their events in the outbox.
pub fn replay_office_day(key: &str, config: &Path, data: &Path) {
    let out = calltap(key)
        .args(["replay", "-q", "--webhooks", "--config"])
        .arg(config)
        .arg("--data")
        .arg(data)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("pcaps/office-day.pcap"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `calltap serve` on a free port, listening.
pub struct Serve {
    child: Child,
    pub base: String,
}

impl Serve {
    pub fn start(key: &str, config: &Path, data: &Path) -> Serve {
        let port = free_port();
        let child = calltap(key)
            .args(["serve", "--config"])
            .arg(config)
            .arg("--data")
            .arg(data)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "calltap serve did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Serve {
            child,
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    /// SIGKILL: no chance to save anything more.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    pub fn stop(mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.child.wait().unwrap();
    }
}

//! Kamailio as a test proxy: a stateful, record-routing proxy on one loopback address,
//! no database, configured from a file written at test time and run in the foreground.
//!
//! Written against Kamailio 5.6 (Debian bookworm's `kamailio`). Each relayed request is
//! logged (`relay METHOD CALL-ID`), so a test can tell its calls went through the proxy.

use std::net::{Ipv4Addr, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Kamailio starts in about 100 ms here; the margin is for a loaded 2-core machine.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long SIGTERM may take before the process group is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// The modules the proxy's route uses.
const MODULES: [&str; 8] = [
    "tm", "sl", "rr", "pv", "maxfwd", "textops", "siputils", "xlog",
];

/// Where distributions put Kamailio's modules.
const MODULE_DIRS: [&str; 4] = [
    "/usr/lib/x86_64-linux-gnu/kamailio/modules",
    "/usr/lib/aarch64-linux-gnu/kamailio/modules",
    "/usr/lib/kamailio/modules",
    "/usr/local/lib64/kamailio/modules",
];

/// An installed Kamailio with the modules the proxy needs.
#[derive(Clone, Debug)]
pub struct Install {
    /// "kamailio 5.6.3 (x86_64/linux)"
    pub version: String,
    pub modules: PathBuf,
}

/// The installed Kamailio, or why there is none to run.
pub fn find() -> Result<Install, String> {
    let out = Command::new("kamailio")
        .arg("-v")
        .output()
        .map_err(|e| format!("kamailio not runnable ({e})"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text
        .lines()
        .find_map(|l| l.strip_prefix("version: "))
        .map(|v| v.trim().to_string())
        .ok_or("kamailio -v printed no version")?;
    let modules = MODULE_DIRS
        .iter()
        .map(PathBuf::from)
        .find(|d| MODULES.iter().all(|m| d.join(format!("{m}.so")).exists()))
        .ok_or_else(|| format!("no kamailio module folder with {MODULES:?}"))?;
    Ok(Install { version, modules })
}

/// The proxy's configuration: UDP on `ip:port` only, one worker.
pub fn config_text(modules: &Path, ip: Ipv4Addr, port: u16) -> String {
    let mut s = String::from("#!KAMAILIO\n");
    s += "debug=2\nlog_stderror=yes\nchildren=1\ndisable_tcp=yes\nauto_aliases=no\n";
    s += &format!("listen=udp:{ip}:{port}\n");
    s += &format!("mpath=\"{}/\"\n", modules.display());
    for m in MODULES {
        s += &format!("loadmodule \"{m}.so\"\n");
    }
    s += r#"
request_route {
    if (!mf_process_maxfwd_header("10")) {
        sl_send_reply("483", "Too Many Hops");
        exit;
    }
    # The readiness probe.
    if (is_method("OPTIONS") && uri == myself) {
        sl_send_reply("200", "Alive");
        exit;
    }
    # In-dialog: along the recorded route.
    if (has_totag()) {
        if (loose_route()) {
            xlog("L_NOTICE", "relay $rm $ci\n");
            t_relay();
            exit;
        }
        # The ACK of a non-2xx final belongs to the INVITE transaction.
        if (is_method("ACK") && t_check_trans()) {
            t_relay();
        }
        exit;
    }
    if (is_method("CANCEL")) {
        if (t_check_trans()) {
            xlog("L_NOTICE", "relay $rm $ci\n");
            t_relay();
        }
        exit;
    }
    t_check_trans();
    # The caller's outbound proxy Route names this proxy: drop it and go by the R-URI.
    remove_hf("Route");
    if (is_method("INVITE")) {
        record_route();
    }
    xlog("L_NOTICE", "relay $rm $ci\n");
    if (!t_relay()) {
        sl_reply_error();
    }
}
"#;
    s
}

/// A running Kamailio; SIGTERM to its process group when dropped.
pub struct Proxy {
    pub ip: Ipv4Addr,
    pub port: u16,
    child: Child,
    log: PathBuf,
}

impl Proxy {
    /// Writes the configuration under `dir` and starts Kamailio on it; returns once it
    /// answers an OPTIONS.
    pub fn start(install: &Install, dir: &Path, ip: Ipv4Addr, port: u16) -> Result<Proxy, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let cfg = dir.join("kamailio.cfg");
        std::fs::write(&cfg, config_text(&install.modules, ip, port)).map_err(|e| e.to_string())?;
        let log = dir.join("kamailio.log");
        let out = std::fs::File::create(&log).map_err(|e| e.to_string())?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        // -DD: stay in the foreground (the workers are still forked); -E: log to
        // stderr; -Y: a runtime folder of its own instead of /run/kamailio. Its own
        // process group, so stopping it reaches the workers too.
        let child = Command::new("kamailio")
            .arg("-f")
            .arg(&cfg)
            .args(["-DD", "-E", "-n", "1", "-m", "32", "-M", "4"])
            .arg("-Y")
            .arg(dir)
            .arg("-P")
            .arg(dir.join("kamailio.pid"))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot start kamailio: {e}"))?;
        let mut proxy = Proxy {
            ip,
            port,
            child,
            log,
        };
        proxy.wait_ready()?;
        Ok(proxy)
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let sock = UdpSocket::bind((self.ip, 0)).map_err(|e| e.to_string())?;
        let local = sock.local_addr().map_err(|e| e.to_string())?;
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .map_err(|e| e.to_string())?;
        let deadline = Instant::now() + START_TIMEOUT;
        let mut n = 0;
        loop {
            n += 1;
            let options = format!(
                "OPTIONS sip:{ip}:{port} SIP/2.0\r\n\
                 Via: SIP/2.0/UDP {local};branch=z9hG4bK-probe{n}\r\n\
                 Max-Forwards: 70\r\n\
                 From: <sip:probe@{ip}>;tag=probe\r\n\
                 To: <sip:{ip}:{port}>\r\n\
                 Call-ID: probe-{n}@{ip}\r\n\
                 CSeq: {n} OPTIONS\r\n\
                 Content-Length: 0\r\n\r\n",
                ip = self.ip,
                port = self.port,
            );
            let _ = sock.send_to(options.as_bytes(), (self.ip, self.port));
            let mut buf = [0u8; 2048];
            if let Ok(len) = sock.recv(&mut buf) {
                if buf[..len].starts_with(b"SIP/2.0 200") {
                    return Ok(());
                }
            }
            let exited = self.child.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() > deadline {
                return Err(format!(
                    "kamailio did not come up ({exited:?}):\n{}",
                    self.log()
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kamailio's own log, for a failure message and the relayed requests.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The requests relayed for one Call-ID, in order ("INVITE", "ACK", "BYE").
    pub fn relayed(&self, call_id: &str) -> Vec<String> {
        let suffix = format!(" {call_id}");
        self.log()
            .lines()
            .filter_map(|l| l.split_once("relay ").map(|(_, r)| r))
            .filter_map(|r| r.strip_suffix(&suffix))
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let Ok(pgid) = i32::try_from(self.child.id()) else {
            let _ = self.child.kill();
            let _ = self.child.wait();
            return;
        };
        // SAFETY: kill(2) on the process group this proxy's child leads.
        unsafe { libc::kill(-pgid, libc::SIGTERM) };
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            // The main process reaps its workers before it exits.
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        // SAFETY: as above.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

//! baresip as a test phone: one process per phone, its own config folder, bound to its
//! own loopback address, sending a sine tone from a WAV file, playing nothing, and driven
//! through its ctrl_tcp module (netstring-framed JSON commands, call events back).
//!
//! Written against baresip 1.0.0 (Debian bookworm's baresip-core). Its stdio module
//! does not load on a stdin of /dev/null (epoll refuses the descriptor) and reports calls
//! as free text, so commands go over ctrl_tcp, which also sends the call events the
//! scenarios wait on as JSON (CALL_INCOMING, CALL_RINGING, CALL_ESTABLISHED, CALL_CLOSED).

use std::fmt::Write as _;
use std::io::{BufReader, Read, Write};
use std::net::{Ipv4Addr, Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

/// How long a phone may take to come up, and a command or an awaited event to arrive.
/// baresip starts in about 50 ms here; the margin is for a loaded 2-core machine.
const START_TIMEOUT: Duration = Duration::from_secs(10);
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

/// A netstring longer than this is not ctrl_tcp talking: the largest event seen is
/// about 300 bytes.
const MAX_NETSTRING: usize = 64 * 1024;

/// The modules a phone loads; a distribution that splits them out of baresip-core
/// leaves the test skipped rather than failed.
const MODULES: [&str; 5] = ["g711", "aufile", "account", "menu", "ctrl_tcp"];

/// Where distributions put baresip's modules.
const MODULE_DIRS: [&str; 3] = [
    "/usr/lib/baresip/modules",
    "/usr/lib/x86_64-linux-gnu/baresip/modules",
    "/usr/local/lib/baresip/modules",
];

/// An installed baresip with the modules the phones need.
#[derive(Clone, Debug)]
pub struct Install {
    /// "baresip v1.0.0"
    pub version: String,
    pub modules: PathBuf,
}

/// The installed baresip, or why there is none to run.
pub fn find() -> Result<Install, String> {
    let out = Command::new("baresip")
        .arg("-h")
        .output()
        .map_err(|e| format!("baresip not runnable ({e})"))?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let version = text
        .lines()
        .find(|l| l.starts_with("baresip v"))
        .map(|l| l.split(" Copyright").next().unwrap_or(l).to_string())
        .ok_or("baresip -h printed no version")?;
    let modules = MODULE_DIRS
        .iter()
        .map(PathBuf::from)
        .find(|d| MODULES.iter().all(|m| d.join(format!("{m}.so")).exists()))
        .ok_or_else(|| format!("no baresip module folder with {MODULES:?}"))?;
    Ok(Install { version, modules })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnswerMode {
    /// Answers every call at once with 200.
    Auto,
    /// Rings (180) until `accept` or `hangup` (486).
    Manual,
}

#[derive(Clone, Debug)]
pub struct PhoneConfig {
    pub modules: PathBuf,
    pub name: String,
    /// The SIP user: an extension ("201") or a number ("+15550001001").
    pub user: String,
    pub display: Option<String>,
    pub ip: Ipv4Addr,
    pub sip_port: u16,
    /// ctrl_tcp listens on 127.0.0.1:ctrl_port.
    pub ctrl_port: u16,
    /// RTP (and RTCP, the next port) come from here: baresip binds them to every
    /// address, so each phone needs a range of its own.
    pub rtp_ports: (u16, u16),
    /// The tone this phone sends, in Hz.
    pub tone_hz: f64,
    /// Seconds of tone in its WAV file. baresip 1.0.0 hangs up when the file ends
    /// (AUDIO_ERROR "end of file", then BYE), so it must outlast the call.
    pub tone_secs: u32,
    pub answer: AnswerMode,
    /// An outbound proxy ("sip:127.0.0.1:5060;lr"): every request of the account,
    /// INVITE included, goes there with it as a pre-loaded Route.
    pub outbound: Option<String>,
}

impl PhoneConfig {
    pub fn uri(&self) -> String {
        format!("sip:{}@{}:{}", self.user, self.ip, self.sip_port)
    }
}

/// One call event, with when the test saw it.
#[derive(Clone, Debug)]
pub struct Event {
    pub kind: String,
    /// baresip's call id (the SIP Call-ID).
    pub call_id: String,
    pub at: Instant,
    pub wall: SystemTime,
}

#[derive(Default)]
struct Inbox {
    events: Vec<Event>,
    /// Which events `wait_event` has handed out already.
    taken: Vec<bool>,
    responses: Vec<(String, bool, String)>,
    closed: bool,
}

pub struct Phone {
    pub config: PhoneConfig,
    child: Child,
    ctrl: TcpStream,
    inbox: Arc<(Mutex<Inbox>, Condvar)>,
    next_token: Mutex<u32>,
    dir: PathBuf,
}

/// A mono 8 kHz 16-bit sine, the only input format baresip's aufile accepts for G.711.
pub fn write_tone(path: &Path, hz: f64, secs: u32) -> Result<(), String> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).map_err(|e| e.to_string())?;
    for n in 0..secs * 8000 {
        let t = f64::from(n) / 8000.0;
        // A third of full scale: loud, and far from G.711's clipping.
        let s = (std::f64::consts::TAU * hz * t).sin() * 10_000.0;
        w.write_sample(s as i16).map_err(|e| e.to_string())?;
    }
    w.finalize().map_err(|e| e.to_string())
}

fn config_text(c: &PhoneConfig, wav: &Path) -> String {
    let mut s = String::new();
    // Only what these calls need: G.711, a file as microphone, no audio player at all
    // (baresip skips playback when no player module is loaded), no STUN/ICE, no
    // registrar (the account has regint=0), and ctrl_tcp for control.
    let _ = writeln!(s, "poll_method\t\tepoll");
    let _ = writeln!(s, "sip_listen\t\t{}:{}", c.ip, c.sip_port);
    // The address baresip takes as its own (Contact, SDP); "lo" would give 127.0.0.1.
    let _ = writeln!(s, "net_interface\t\t{}", c.ip);
    let _ = writeln!(s, "call_local_timeout\t120");
    let _ = writeln!(s, "call_max_calls\t\t4");
    let _ = writeln!(s, "audio_source\t\taufile,{}", wav.display());
    let _ = writeln!(s, "ausrc_srate\t\t8000");
    let _ = writeln!(s, "ausrc_channels\t\t1");
    let _ = writeln!(s, "rtp_ports\t\t{}-{}", c.rtp_ports.0, c.rtp_ports.1);
    let _ = writeln!(s, "rtcp_mux\t\tno");
    let _ = writeln!(s, "module_path\t\t{}", c.modules.display());
    let _ = writeln!(s, "module\t\t\tg711.so");
    let _ = writeln!(s, "module\t\t\taufile.so");
    let _ = writeln!(s, "module_tmp\t\taccount.so");
    let _ = writeln!(s, "module_app\t\tmenu.so");
    let _ = writeln!(s, "module_app\t\tctrl_tcp.so");
    let _ = writeln!(s, "ctrl_tcp_listen\t\t127.0.0.1:{}", c.ctrl_port);
    s
}

fn account_text(c: &PhoneConfig) -> String {
    let display = c
        .display
        .as_ref()
        .map(|d| format!("\"{d}\" "))
        .unwrap_or_default();
    let mode = match c.answer {
        AnswerMode::Auto => "auto",
        AnswerMode::Manual => "manual",
    };
    let outbound = c
        .outbound
        .as_ref()
        .map(|o| format!(";outbound=\"{o}\""))
        .unwrap_or_default();
    format!(
        "{display}<sip:{}@{}>;regint=0;answermode={mode};audio_codecs=PCMU,PCMA{outbound}\n",
        c.user, c.ip
    )
}

/// Reads one netstring ("LEN:BYTES,"); None at the end of the stream.
fn read_netstring(r: &mut impl Read) -> Result<Option<Vec<u8>>, String> {
    let mut len = 0usize;
    let mut digits = 0;
    loop {
        let mut b = [0u8; 1];
        match r.read(&mut b) {
            Ok(0) if digits == 0 => return Ok(None),
            Ok(0) => return Err("ctrl_tcp: stream ended inside a netstring".into()),
            Ok(_) => {}
            Err(e) => return Err(format!("ctrl_tcp: {e}")),
        }
        match b[0] {
            b'0'..=b'9' => {
                len = len * 10 + usize::from(b[0] - b'0');
                digits += 1;
                if len > MAX_NETSTRING {
                    return Err(format!("ctrl_tcp: netstring of {len} bytes"));
                }
            }
            b':' if digits > 0 => break,
            // Some baresip builds put a newline between netstrings.
            b'\r' | b'\n' if digits == 0 => {}
            other => return Err(format!("ctrl_tcp: unexpected byte {other:#04x}")),
        }
    }
    let mut body = vec![0u8; len + 1];
    r.read_exact(&mut body)
        .map_err(|e| format!("ctrl_tcp: {e}"))?;
    if body.pop() != Some(b',') {
        return Err("ctrl_tcp: netstring without its closing comma".into());
    }
    Ok(Some(body))
}

fn reader(stream: TcpStream, inbox: Arc<(Mutex<Inbox>, Condvar)>) {
    let mut r = BufReader::new(stream);
    while let Ok(Some(msg)) = read_netstring(&mut r) {
        let Ok(json) = serde_json::from_slice::<serde_json::Value>(&msg) else {
            continue;
        };
        let text = |k: &str| json[k].as_str().unwrap_or_default().to_string();
        let (lock, cv) = &*inbox;
        let Ok(mut inbox) = lock.lock() else { break };
        if json["event"] == true {
            inbox.events.push(Event {
                kind: text("type"),
                call_id: text("id"),
                at: Instant::now(),
                wall: SystemTime::now(),
            });
            inbox.taken.push(false);
        } else if json["response"] == true {
            let ok = json["ok"] == true;
            inbox.responses.push((text("token"), ok, text("data")));
        }
        cv.notify_all();
    }
    let (lock, cv) = &*inbox;
    if let Ok(mut inbox) = lock.lock() {
        inbox.closed = true;
    }
    cv.notify_all();
}

impl Phone {
    /// Writes the phone's config folder under `root` and starts baresip on it; returns
    /// once ctrl_tcp answers.
    pub fn start(root: &Path, config: PhoneConfig) -> Result<Phone, String> {
        let dir = root.join(&config.name);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let wav = dir.join("tone.wav");
        write_tone(&wav, config.tone_hz, config.tone_secs)?;
        std::fs::write(dir.join("config"), config_text(&config, &wav))
            .map_err(|e| e.to_string())?;
        std::fs::write(dir.join("accounts"), account_text(&config)).map_err(|e| e.to_string())?;
        // An empty contacts file, so baresip does not write its sample contacts.
        std::fs::write(dir.join("contacts"), "").map_err(|e| e.to_string())?;
        let log = std::fs::File::create(dir.join("baresip.log")).map_err(|e| e.to_string())?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        let mut child = Command::new("baresip")
            .arg("-f")
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| format!("cannot start baresip: {e}"))?;
        let deadline = Instant::now() + START_TIMEOUT;
        let ctrl = loop {
            if let Ok(s) = TcpStream::connect(("127.0.0.1", config.ctrl_port)) {
                break s;
            }
            let exited = child.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{}: baresip did not come up ({exited:?}):\n{}",
                    config.name,
                    std::fs::read_to_string(dir.join("baresip.log")).unwrap_or_default()
                ));
            }
            thread::sleep(Duration::from_millis(20));
        };
        let inbox = Arc::new((Mutex::new(Inbox::default()), Condvar::new()));
        let read_half = ctrl.try_clone().map_err(|e| e.to_string())?;
        let inbox2 = Arc::clone(&inbox);
        thread::spawn(move || reader(read_half, inbox2));
        Ok(Phone {
            config,
            child,
            ctrl,
            inbox,
            next_token: Mutex::new(0),
            dir,
        })
    }

    /// baresip's own log, for a failure message.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("baresip.log")).unwrap_or_default()
    }

    /// Sends one ctrl_tcp command and waits for its answer.
    pub fn command(&self, command: &str, params: &str) -> Result<String, String> {
        let token = {
            let mut n = self.next_token.lock().map_err(|e| e.to_string())?;
            *n += 1;
            format!("t{n}")
        };
        let body =
            serde_json::json!({"command": command, "params": params, "token": token}).to_string();
        let frame = format!("{}:{body},", body.len());
        (&self.ctrl)
            .write_all(frame.as_bytes())
            .map_err(|e| format!("{}: {command}: {e}", self.config.name))?;
        let (lock, cv) = &*self.inbox;
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        let mut inbox = lock.lock().map_err(|e| e.to_string())?;
        loop {
            if let Some(i) = inbox.responses.iter().position(|r| r.0 == token) {
                let (_, ok, data) = inbox.responses.remove(i);
                return if ok {
                    Ok(data)
                } else {
                    Err(format!("{}: {command} {params}: {data}", self.config.name))
                };
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || inbox.closed {
                return Err(format!("{}: no answer to {command}", self.config.name));
            }
            inbox = cv.wait_timeout(inbox, left).map_err(|e| e.to_string())?.0;
        }
    }

    /// Waits for the next event of this kind not handed out before.
    pub fn wait_event(&self, kind: &str, timeout: Duration) -> Result<Event, String> {
        let (lock, cv) = &*self.inbox;
        let deadline = Instant::now() + timeout;
        let mut inbox = lock.lock().map_err(|e| e.to_string())?;
        loop {
            let found =
                (0..inbox.events.len()).find(|&i| !inbox.taken[i] && inbox.events[i].kind == kind);
            if let Some(i) = found {
                inbox.taken[i] = true;
                return Ok(inbox.events[i].clone());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || inbox.closed {
                let seen: Vec<&str> = inbox.events.iter().map(|e| e.kind.as_str()).collect();
                return Err(format!(
                    "{}: no {kind} within {timeout:?} (events: {seen:?})",
                    self.config.name
                ));
            }
            inbox = cv.wait_timeout(inbox, left).map_err(|e| e.to_string())?.0;
        }
    }

    pub fn dial(&self, uri: &str) -> Result<(), String> {
        self.command("dial", uri).map(drop)
    }

    /// Ends the current call: BYE when established, CANCEL while ringing out, and
    /// 486 for an incoming call not yet answered.
    pub fn hangup(&self) -> Result<(), String> {
        self.command("hangup", "").map(drop)
    }
}

impl Drop for Phone {
    fn drop(&mut self) {
        let _ = self.ctrl.shutdown(Shutdown::Both);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

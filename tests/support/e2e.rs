//! What the end-to-end tests with real SIP software share: the capture-privilege check,
//! child processes that end with the test, a clean stop, and the tone detector that
//! tells the recording's channels apart.
#![allow(dead_code)] // each test binary uses a part of it

use std::process::Child;
use std::thread;
use std::time::{Duration, Instant};

/// The recordings' sample rate: the phones speak G.711.
pub const RATE: u32 = 8000;

/// Whether this process may open an AF_PACKET socket (root or CAP_NET_RAW).
pub fn af_packet_allowed() -> bool {
    let proto = i32::from((libc::ETH_P_ALL as u16).to_be());
    // SAFETY: socket(2) with constant arguments; the descriptor is closed at once.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, proto) };
    if fd < 0 {
        return false;
    }
    // SAFETY: fd was returned by socket(2) above and is closed once.
    unsafe { libc::close(fd) };
    true
}

/// A child process that ends with the test, passed or failed.
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn sigterm(child: &Child) {
    let pid = i32::try_from(child.id()).expect("pid fits");
    // SAFETY: kill(2) on a child this test started and has not yet reaped.
    unsafe { libc::kill(pid, libc::SIGTERM) };
}

/// Waits for a child to exit, up to `limit`; the time it took.
pub fn wait_exit(child: &mut Child, limit: Duration) -> Result<Duration, String> {
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(started.elapsed()),
            Ok(Some(status)) => return Err(format!("exited with {status}")),
            Ok(None) if started.elapsed() > limit => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("still running {limit:?} after SIGTERM"));
            }
            Ok(None) => thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Goertzel power of one frequency in a block of samples.
pub fn tone_power(samples: &[f64], hz: f64) -> f64 {
    let w = std::f64::consts::TAU * hz / f64::from(RATE);
    let c = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0, 0.0);
    for &x in samples {
        let s0 = x + c * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    s1 * s1 + s2 * s2 - c * s1 * s2
}

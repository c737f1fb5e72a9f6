//! Datagrams on a call's media ports -> `MediaTable`: the RTP entry point. A call is
//! described (PCMU, G.722, G.726-32 static and G.726-24 and AAL2-G726-40 dynamic
//! offered, telephone-event) and answered, then each input
//! chunk arrives as a datagram, in either direction, with recording on; the call ends
//! and its WAV must be written without a panic, whatever the bytes.

use std::net::SocketAddr;
use std::sync::OnceLock;

use calltap::call::Party;
use calltap::capture::Timestamp;
use calltap::media::{MediaOptions, MediaTable};
use calltap::net::{Datagram, Transport};
use calltap::sip::SessionDescription;

fn sdp(port: u16) -> SessionDescription {
    let body = format!(
        "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.{}\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0 9 2 96 97 101\r\na=rtpmap:96 G726-24/8000\r\n\
         a=rtpmap:97 AAL2-G726-40/8000\r\na=rtpmap:101 telephone-event/8000\r\n",
        port / 1000
    );
    SessionDescription::parse(body.as_bytes()).expect("a valid SDP")
}

fn recordings() -> &'static std::path::Path {
    static DIR: OnceLock<std::path::PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join("calltap-fuzz-rtp");
        let _ = std::fs::create_dir_all(&dir);
        dir
    })
}

/// One input through the target.
pub fn run(data: &[u8]) {
    let mut media = MediaTable::new(MediaOptions {
        recordings_dir: recordings().to_path_buf(),
        ..MediaOptions::default()
    });
    let t0 = Timestamp::from_nanos(1_700_000_000_000_000_000);
    media.describe("c", t0, Party::Caller, &sdp(4000));
    media.describe("c", t0, Party::Callee, &sdp(6000));
    media.answered("c", t0, Party::Caller);
    let caller: SocketAddr = "10.0.0.4:4000".parse().expect("addr");
    let callee: SocketAddr = "10.0.0.6:6000".parse().expect("addr");
    // Chunks: a length byte (low bit: direction), then that many bytes.
    let mut rest = data;
    let mut time = t0;
    while let Some((&head, tail)) = rest.split_first() {
        let len = usize::from(head >> 1).min(tail.len());
        let (payload, next) = tail.split_at(len);
        rest = next;
        time = time.saturating_add(std::time::Duration::from_millis(20));
        let (src, dst) = if head & 1 == 0 {
            (caller, callee)
        } else {
            (callee, caller)
        };
        media.datagram(&Datagram {
            time,
            src,
            dst,
            transport: Transport::Udp,
            payload,
        });
    }
    if let Some(summary) = media.ended("c", time) {
        if let Some(rec) = summary.recording {
            let _ = std::fs::remove_file(rec.path);
        }
    }
}

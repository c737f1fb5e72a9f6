//! What both agents share: sockets, RTP ports, and turning a received SIP message back
//! into the `pcapgen` builder's types so replies are built by the same code that writes
//! the generated captures.

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

use crate::capture::Timestamp;
use crate::pcapgen::scenario::{Msg, Origin, Tx, Ua};
use crate::pcapgen::Party;
use crate::sip::{self, SipMessage};

/// Receive buffer of a SIP socket: 4 MB holds a burst of several thousand messages when
/// a load starts, so no response is lost to an overflow on loopback.
pub const SIP_RCVBUF: usize = 4 << 20;
/// Receive buffer of an RTP socket. Nobody reads the peer's RTP (only the last packets,
/// to see that media arrived), so the kernel's minimum keeps 4,000 sockets from holding
/// ~200 KB each (800 MB of kernel memory at the default size).
pub const RTP_RCVBUF: usize = 2048;
/// The user agent both agents put in User-Agent and Server.
pub const USER_AGENT: &str = "calltap-loadgen";

/// A UDP socket bound to `addr` with the given receive buffer.
pub fn bind_udp(addr: SocketAddr, rcvbuf: usize) -> io::Result<UdpSocket> {
    let s = UdpSocket::bind(addr)?;
    set_rcvbuf(&s, rcvbuf)?;
    Ok(s)
}

/// A non-blocking SIP socket for an agent's loop: [`wait_readable`] waits, then the
/// agent reads until `WouldBlock`, two syscalls per message at most.
pub fn bind_sip(addr: SocketAddr) -> io::Result<UdpSocket> {
    let s = bind_udp(addr, SIP_RCVBUF)?;
    s.set_nonblocking(true)?;
    Ok(s)
}

/// Waits up to `timeout` (whole milliseconds, at least 1) for `s` to be readable.
pub fn wait_readable(s: &UdpSocket, timeout: std::time::Duration) -> bool {
    let mut fds = libc::pollfd {
        fd: s.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_millis().clamp(1, i32::MAX as u128) as libc::c_int;
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut fds, 1, ms) > 0 }
}

fn set_rcvbuf(s: &UdpSocket, bytes: usize) -> io::Result<()> {
    let v = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: a valid socket descriptor and a c_int option of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Raises the open-file limit to its hard maximum: every call holds two RTP sockets, so
/// 2,000 calls need 4,000 descriptors where the usual soft limit is 1,024.
pub fn raise_fd_limit() -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid rlimit struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return Err(io::Error::last_os_error());
        }
        if lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    Ok(lim.rlim_cur)
}

/// CPU time (user, system) in microseconds, of the process (`thread` false) or of the
/// calling thread.
pub fn cpu_us(thread: bool) -> (u64, u64) {
    let who = if thread {
        libc::RUSAGE_THREAD
    } else {
        libc::RUSAGE_SELF
    };
    // SAFETY: an all-zero rusage is valid, and getrusage fills it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to an rusage.
    if unsafe { libc::getrusage(who, &mut ru) } != 0 {
        return (0, 0);
    }
    let us = |t: libc::timeval| (t.tv_sec as u64) * 1_000_000 + t.tv_usec as u64;
    (us(ru.ru_utime), us(ru.ru_stime))
}

/// RTP ports of one agent: even ports of a range handed out round robin. A port still
/// bound (a call that has not ended, or a socket the media thread keeps a little after
/// its stream) is skipped, so no free list has to travel between threads.
pub struct PortPool {
    ip: IpAddr,
    first: u16,
    /// Even ports in the range.
    slots: u32,
    next: u32,
}

impl PortPool {
    pub fn new(ip: IpAddr, first: u16, last: u16) -> Self {
        let first = first + first % 2;
        let slots = (u32::from(last.max(first)) - u32::from(first)) / 2 + 1;
        PortPool {
            ip,
            first,
            slots,
            next: 0,
        }
    }

    /// A socket on the next free even port.
    pub fn bind(&mut self) -> io::Result<(UdpSocket, u16)> {
        for _ in 0..self.slots {
            let port = self.first + (self.next * 2) as u16;
            self.next = (self.next + 1) % self.slots;
            match bind_udp(SocketAddr::new(self.ip, port), RTP_RCVBUF) {
                Ok(s) => return Ok((s, port)),
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => continue,
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("every RTP port of {} is in use", self.ip),
        ))
    }
}

/// The builder's capture time is not used live (messages go out as they are made), but
/// a real one keeps the builder's records honest.
pub fn stamp() -> Timestamp {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp::from_duration(d)
}

/// A received message in the builder's shape: start line, headers (compact names
/// expanded, so the builder finds `Via` in `v:`), body.
pub fn to_msg(m: &SipMessage<'_>) -> Msg {
    let raw = m.as_bytes();
    let end = memchr::memchr(b'\r', raw)
        .or_else(|| memchr::memchr(b'\n', raw))
        .unwrap_or(raw.len());
    let headers = m
        .headers()
        .filter(|(n, _)| !sip::header_name_eq(n, b"Content-Length"))
        .filter(|(n, _)| !sip::header_name_eq(n, b"Content-Type"))
        .map(|(n, v)| {
            let name = match (n.len(), n.first()) {
                (1, Some(&c)) => sip::expand_compact(c)
                    .map(str::to_string)
                    .unwrap_or_else(|| sip::lossy(n).into_owned()),
                _ => sip::lossy(n).into_owned(),
            };
            (name, sip::lossy(v).into_owned())
        })
        .collect();
    let body = m.header("Content-Type").map(|ct| {
        (
            sip::lossy(ct).into_owned(),
            sip::lossy(m.body()).into_owned(),
        )
    });
    Msg {
        start: sip::lossy(&raw[..end]).into_owned(),
        headers,
        body: body.filter(|(_, b)| !b.is_empty()),
    }
}

/// A received request as a transaction the builder can answer (`sender` sent it).
pub fn to_tx(m: &SipMessage<'_>, sender: Party) -> Tx {
    let cseq = m.cseq();
    Tx {
        method: sip::lossy(m.method_bytes().unwrap_or_default()).into_owned(),
        cseq: cseq.number,
        branch: m
            .top_via()
            .and_then(|v| v.branch())
            .map(|b| sip::lossy(b).into_owned())
            .unwrap_or_default(),
        origin: Origin::Party(sender),
        request: to_msg(m),
    }
}

/// The far party as a builder `Ua`: its address of record from `name_addr` (From or To),
/// its SIP address from the Contact (else where the message came from).
pub fn peer_ua(m: &SipMessage<'_>, name_addr: &sip::NameAddr<'_>, src: SocketAddr) -> Ua {
    let aor = name_addr.uri_parts();
    let user = aor
        .and_then(|u| u.user)
        .map(|u| sip::lossy(u).into_owned())
        .unwrap_or_default();
    let domain = aor
        .map(|u| sip::lossy(u.host).into_owned())
        .filter(|h| !h.is_empty());
    let contact = m.contact().and_then(|c| {
        let p = c.uri_parts()?;
        let ip: IpAddr = std::str::from_utf8(p.host).ok()?.parse().ok()?;
        Some(SocketAddr::new(ip, p.port.unwrap_or(5060)))
    });
    let at = contact.unwrap_or(src);
    let mut ua = Ua::new(&user, at.ip())
        .port(at.port())
        .user_agent(USER_AGENT);
    if let Some(d) = domain {
        ua = ua.domain(&d);
    }
    if let Some(d) = name_addr.display_name_lossy() {
        ua = ua.display(&d);
    }
    ua
}

/// Where the audio of an SDP body wants its RTP.
pub fn sdp_rtp_addr(m: &SipMessage<'_>) -> Option<SocketAddr> {
    let body = m.sdp()?;
    sip::SessionDescription::parse(body).ok()?.audio_rtp_addr()
}

//! Live capture on this host's loopback and in network namespaces the tests make.
//!
//! Needs CAP_NET_RAW (root in CI); without it each test is listed as skipped.
//! Every test sends from its own 127.x.0.0/16 addresses and looks only at datagrams to
//! or from them, since other tests (and other programs) use loopback at the same time.

#[path = "support/skip.rs"]
mod skip;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use calltap::capture::live::{InterfaceState, LiveCapture, LiveError, LiveOptions};
use calltap::capture::{LinkType, Timestamp};
use calltap::config::PortRange;
use calltap::net::filter::PreFilter;
use calltap::net::{Decoder, DecoderOptions, Transport};

const SIP: u16 = 25_060;
const RTP: PortRange = PortRange::new(40_000, 40_100);
/// Long enough for a loaded 2-core machine; a passing test returns as soon as it sees
/// what it waits for.
const PATIENCE: Duration = Duration::from_secs(10);

fn options(interfaces: &[&str]) -> LiveOptions {
    let filter = Arc::new(PreFilter::new(&[SIP], RTP.start..=RTP.end));
    let interfaces = interfaces.iter().map(|s| s.to_string()).collect();
    let mut o = LiveOptions::new(interfaces, filter);
    // Small rings and short timeouts: tests send a handful of packets and wait for them.
    o.ring_bytes = 4 << 20;
    o.block_timeout = Duration::from_millis(10);
    o.retry_interval = Duration::from_millis(100);
    o
}

/// Opens, or says why the test cannot run here.
fn open(options: &LiveOptions) -> Option<LiveCapture> {
    capture_logs();
    match LiveCapture::open(options) {
        Ok(capture) => Some(capture),
        Err(LiveError::Permission { .. }) => {
            skip::skip("live capture tests need CAP_NET_RAW; skipped");
            None
        }
        Err(LiveError::Unsupported { .. }) => {
            skip::skip("this kernel has no AF_PACKET sockets; live capture test skipped");
            None
        }
        Err(e) => panic!("opening live capture: {e}"),
    }
}

/// A datagram decoded from a delivered frame.
#[derive(Clone, Debug)]
struct Got {
    time: Timestamp,
    link: LinkType,
    src: SocketAddr,
    dst: SocketAddr,
    transport: Transport,
    payload: Vec<u8>,
}

struct Watch {
    decoder: Decoder,
    got: Vec<Got>,
}

impl Watch {
    fn new() -> Self {
        Watch {
            decoder: Decoder::new(&DecoderOptions {
                sip_ports: vec![SIP],
                ..DecoderOptions::default()
            }),
            got: Vec::new(),
        }
    }

    /// Polls until `done` holds for what was seen so far, or `PATIENCE` runs out.
    fn until(
        &mut self,
        capture: &mut LiveCapture,
        mut done: impl FnMut(&LiveCapture, &[Got]) -> bool,
    ) -> bool {
        let end = Instant::now() + PATIENCE;
        while Instant::now() < end {
            self.poll(capture, Duration::from_millis(20));
            if done(capture, &self.got) {
                return true;
            }
        }
        false
    }

    fn poll(&mut self, capture: &mut LiveCapture, timeout: Duration) {
        let (decoder, got) = (&mut self.decoder, &mut self.got);
        capture
            .poll(timeout, &mut |frame| {
                let link = frame.link;
                decoder.decode(frame, &mut |d| {
                    got.push(Got {
                        time: d.time,
                        link,
                        src: d.src,
                        dst: d.dst,
                        transport: d.transport,
                        payload: d.payload.to_vec(),
                    })
                });
            })
            .expect("poll");
    }

    /// Polls a little longer, so a duplicate delivered late would be seen.
    fn settle(&mut self, capture: &mut LiveCapture) {
        let end = Instant::now() + Duration::from_millis(200);
        while Instant::now() < end {
            self.poll(capture, Duration::from_millis(20));
        }
    }

    fn to_or_from(&self, host: IpAddr) -> Vec<Got> {
        self.got
            .iter()
            .filter(|g| g.src.ip() == host || g.dst.ip() == host)
            .cloned()
            .collect()
    }
}

fn now() -> Timestamp {
    Timestamp::from_duration(SystemTime::now().duration_since(UNIX_EPOCH).expect("clock"))
}

/// What one test sends: (destination port, payload), in order.
fn traffic(tag: &str) -> Vec<(u16, Vec<u8>)> {
    let p = |kind: &str, n: u8| format!("{tag} {kind} {n}").into_bytes();
    vec![
        (SIP, p("sip", 1)),
        (40_000, p("rtp", 1)),
        (39_999, p("out-of-range", 1)),
        (40_002, p("rtp", 2)),
        (50_000, p("out-of-range", 2)),
        (40_101, p("rtcp", 1)),
        (SIP, p("sip", 2)),
    ]
}

fn wanted(port: u16) -> bool {
    port == SIP || (RTP.start..=RTP.end + 1).contains(&port)
}

/// The senders' port: fixed, because an ephemeral one can fall in the RTP range and
/// make an "out-of-range" datagram one the filter rightly passes.
const SENDER_PORT: u16 = 30_000;

fn send_all(from: Ipv4Addr, to: Ipv4Addr, packets: &[(u16, Vec<u8>)]) -> SocketAddr {
    let socket = UdpSocket::bind((from, SENDER_PORT)).expect("bind sender");
    for (port, payload) in packets {
        socket.send_to(payload, (to, *port)).expect("send");
    }
    socket.local_addr().expect("sender address")
}

/// Asserts that exactly the wanted datagrams arrived, once each, in order, with their
/// payloads, sane capture times, and the expected link type.
fn assert_delivered_once(
    got: &[Got],
    sender: SocketAddr,
    to: Ipv4Addr,
    sent: &[(u16, Vec<u8>)],
    link: LinkType,
) {
    let expected: Vec<_> = sent.iter().filter(|(port, _)| wanted(*port)).collect();
    let seen: Vec<_> = got
        .iter()
        .map(|g| {
            (
                g.dst.port(),
                String::from_utf8_lossy(&g.payload).into_owned(),
            )
        })
        .collect();
    assert_eq!(got.len(), expected.len(), "delivered: {seen:?}");
    let start = now().as_nanos() - 60_000_000_000;
    for (g, (port, payload)) in got.iter().zip(&expected) {
        assert_eq!(g.src, sender);
        assert_eq!(g.dst, SocketAddr::from((to, *port)));
        assert_eq!(g.transport, Transport::Udp);
        assert_eq!(&g.payload, payload);
        assert_eq!(g.link, link);
        assert!(
            g.time.as_nanos() > start && g.time <= now(),
            "capture time {:?} is not recent",
            g.time
        );
    }
    assert!(
        got.windows(2).all(|w| w[0].time <= w[1].time),
        "capture times go backwards"
    );
}

#[test]
fn live_capture_is_send() {
    fn send<T: Send>() {}
    send::<LiveCapture>();
}

#[test]
fn loopback_delivers_sip_and_rtp_once_and_filters_the_rest() {
    let Some(mut capture) = open(&options(&["lo"])) else {
        return;
    };
    let (from, to) = (Ipv4Addr::new(127, 61, 0, 1), Ipv4Addr::new(127, 61, 0, 2));
    let sent = traffic("lo");
    let sender = send_all(from, to, &sent);
    let mut watch = Watch::new();
    let want = sent.iter().filter(|(port, _)| wanted(*port)).count();
    let complete = watch.until(&mut capture, |_, got| {
        got.iter().filter(|g| g.dst.ip() == IpAddr::V4(to)).count() >= want
    });
    assert!(complete, "only {:?}", watch.to_or_from(IpAddr::V4(to)));
    watch.settle(&mut capture);
    let got = watch.to_or_from(IpAddr::V4(to));
    assert_delivered_once(&got, sender, to, &sent, LinkType::Ethernet);

    let stats = capture.stats();
    let lo = &stats.interfaces["lo"];
    assert_eq!(lo.state, InterfaceState::Open);
    assert!(lo.open);
    let c = &lo.counters;
    assert!(
        c.filtered >= 2,
        "the two out-of-range datagrams are filtered: {c:?}"
    );
    // Each datagram passed the tap twice on loopback; the outgoing copy is skipped.
    assert!(c.loopback_duplicates >= sent.len() as u64, "{c:?}");
    assert!(
        c.kernel_packets >= 2 * sent.len() as u64,
        "kernel counters are read: {c:?}"
    );
    assert_eq!(c.kernel_drops, 0, "{c:?}");
    assert_eq!(c.bad_blocks, 0, "{c:?}");
    assert_eq!(
        c.packets,
        c.delivered + c.filtered + c.loopback_duplicates,
        "{c:?}"
    );
    assert_eq!(stats.total, *c);
}

#[test]
fn any_delivers_cooked_frames_once() {
    let Some(mut capture) = open(&options(&["any"])) else {
        return;
    };
    let (from, to) = (Ipv4Addr::new(127, 63, 0, 1), Ipv4Addr::new(127, 63, 0, 2));
    let sent = traffic("any");
    let sender = send_all(from, to, &sent);
    let mut watch = Watch::new();
    let want = sent.iter().filter(|(port, _)| wanted(*port)).count();
    let complete = watch.until(&mut capture, |_, got| {
        got.iter().filter(|g| g.dst.ip() == IpAddr::V4(to)).count() >= want
    });
    assert!(complete, "only {:?}", watch.to_or_from(IpAddr::V4(to)));
    watch.settle(&mut capture);
    let got = watch.to_or_from(IpAddr::V4(to));
    assert_delivered_once(&got, sender, to, &sent, LinkType::LinuxSll);
    let any = &capture.stats().interfaces["any"];
    assert_eq!(any.state, InterfaceState::Open);
    assert!(any.counters.loopback_duplicates >= sent.len() as u64);
}

thread_local! {
    static LOG: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Where log lines go: the emitting thread's own buffer, so each test reads its own.
struct ThreadLog;

impl std::io::Write for ThreadLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOG.with(|log| log.borrow_mut().extend_from_slice(buf));
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One global subscriber for the whole test binary, installed before any capture code
/// runs: tracing caches per call site whether anyone listens, so a subscriber set for
/// one thread only would miss events whose call site another test thread hit first.
fn capture_logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_writer(|| ThreadLog)
            .with_ansi(false)
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
    });
}

/// Lines this thread logged that hold `needle`.
fn logged(needle: &str) -> usize {
    LOG.with(|log| {
        let log = log.borrow();
        String::from_utf8_lossy(&log)
            .lines()
            .filter(|l| l.contains(needle))
            .count()
    })
}

#[test]
fn a_missing_interface_is_not_fatal_and_the_others_flow() {
    let Some(mut capture) = open(&options(&["ct-missing0", "lo"])) else {
        return;
    };
    let stats = capture.stats();
    assert_eq!(
        stats.interfaces["ct-missing0"].state,
        InterfaceState::Missing
    );
    assert!(!stats.interfaces["ct-missing0"].open);
    assert_eq!(stats.interfaces["lo"].state, InterfaceState::Open);

    let (from, to) = (Ipv4Addr::new(127, 62, 0, 1), Ipv4Addr::new(127, 62, 0, 2));
    let sent = traffic("missing");
    let sender = send_all(from, to, &sent);
    let mut watch = Watch::new();
    let want = sent.iter().filter(|(port, _)| wanted(*port)).count();
    // Past a few retries (every 100 ms) of the missing interface.
    let start = Instant::now();
    let complete = watch.until(&mut capture, |_, got| {
        start.elapsed() > Duration::from_millis(450)
            && got.iter().filter(|g| g.dst.ip() == IpAddr::V4(to)).count() >= want
    });
    assert!(complete, "only {:?}", watch.to_or_from(IpAddr::V4(to)));
    watch.settle(&mut capture);
    assert_delivered_once(
        &watch.to_or_from(IpAddr::V4(to)),
        sender,
        to,
        &sent,
        LinkType::Ethernet,
    );
    let stats = capture.stats();
    let missing = &stats.interfaces["ct-missing0"];
    assert_eq!(missing.state, InterfaceState::Missing);
    assert_eq!(missing.counters.packets, 0);
    // Said once, however many times it was looked for.
    assert_eq!(logged("interface ct-missing0 not found"), 1);
    assert_eq!(logged("WARN"), 1);
    assert_eq!(logged("capturing on lo"), 1);
}

#[test]
fn a_full_ring_counts_kernel_drops() {
    // Two 256 KiB blocks hold a few thousand small frames; send far more before polling.
    let mut o = options(&["lo"]);
    o.ring_bytes = 512 << 10;
    let Some(mut capture) = open(&o) else {
        return;
    };
    let (from, to) = (Ipv4Addr::new(127, 65, 0, 1), Ipv4Addr::new(127, 65, 0, 2));
    let burst: Vec<_> = (0..20_000u32)
        .map(|i| (40_000, i.to_be_bytes().to_vec()))
        .collect();
    send_all(from, to, &burst);
    let mut watch = Watch::new();
    let drained = watch.until(&mut capture, |c, _| {
        let c = c.stats().total;
        c.kernel_drops > 0 && c.kernel_packets >= c.packets + c.kernel_drops && c.packets > 0
    });
    assert!(drained, "{:?}", capture.stats().total);
    watch.settle(&mut capture);
    let c = capture.stats().total;
    assert!(c.kernel_freezes > 0, "{c:?}");
    let ours = watch.to_or_from(IpAddr::V4(to)).len() as u64;
    assert!(ours > 0 && ours < 20_000, "{ours} delivered");
    // Every frame the kernel offered was either put in the ring and read, or dropped.
    assert!(c.kernel_packets >= 2 * 20_000, "{c:?}");
}

#[test]
fn options_a_restart_cannot_fix_fail_at_open() {
    // Longer than IFNAMSIZ allows: no interface can ever have this name.
    match LiveCapture::open(&options(&["calltap-nonexistent0"])) {
        Err(LiveError::BadOptions(why)) => {
            assert!(why.contains("longer than Linux allows"), "{why}")
        }
        Err(e) => panic!("expected bad options, got {e}"),
        Ok(_) => panic!("an impossible interface name was accepted"),
    }
}

// --- capabilities: per thread on Linux, so one test thread can drop its own -----------

const CAP_NET_ADMIN: u32 = 12;
const CAP_NET_RAW: u32 = 13;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Drops `cap` from the calling thread's effective set (the raw syscall acts on this
/// thread only, unlike libc wrappers that change every thread).
fn drop_effective(cap: u32) -> std::io::Result<()> {
    let mut header = CapHeader {
        version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: capget writes two CapData (version 3) for the calling thread.
    if unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    data[(cap / 32) as usize].effective &= !(1 << (cap % 32));
    // SAFETY: capset reads the header and two CapData, both live.
    if unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[test]
fn without_cap_net_raw_open_names_the_capability() {
    let result = std::thread::spawn(|| {
        drop_effective(CAP_NET_RAW).map(|()| LiveCapture::open(&options(&["lo"])).map(drop))
    })
    .join()
    .expect("thread");
    match result {
        Err(e) => skip::skip(format!("cannot drop a capability here ({e})")),
        Ok(Ok(())) => panic!("live capture opened without CAP_NET_RAW"),
        Ok(Err(e)) => {
            let text = e.to_string();
            assert!(matches!(e, LiveError::Permission { .. }), "{text}");
            assert!(text.contains("CAP_NET_RAW"), "{text}");
            assert!(text.contains("AmbientCapabilities=CAP_NET_RAW"), "{text}");
        }
    }
}

// --- an interface that appears after open, in a namespace of the test's own ----------

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Addresses the veth pair and brings it up; 10.77.0.2 gets a fixed neighbour entry so
/// datagrams to it leave at once, without waiting on ARP.
fn bring_up(name: &str) {
    ip(&["addr", "add", "10.77.0.1/24", "dev", name]);
    ip(&["link", "set", "ct-peer0", "up"]);
    ip(&["link", "set", name, "up"]);
    ip(&[
        "neigh",
        "replace",
        "10.77.0.2",
        "lladdr",
        "02:00:00:00:00:02",
        "dev",
        name,
    ]);
}

/// The interface's promiscuity count. Promiscuity taken through a packet socket shows
/// here, not among `ip link`'s flags (those show only what SIOCSIFFLAGS set).
fn promiscuity(name: &str) -> u32 {
    let out = Command::new("ip")
        .args(["-d", "link", "show", name])
        .output()
        .expect("run ip");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut words = text.split_whitespace();
    words
        .find(|&w| w == "promiscuity")
        .and_then(|_| words.next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no promiscuity in {text}"))
}

#[test]
fn an_interface_that_appears_later_is_picked_up() {
    if Command::new("ip").arg("-V").output().is_err() {
        skip::skip("`ip` (iproute2) is absent; interface hot-plug test skipped");
        return;
    }
    std::thread::spawn(appearing_interface)
        .join()
        .expect("namespace thread");
}

/// Runs on its own thread: the network namespace and the dropped capability stay there.
fn appearing_interface() {
    // SAFETY: unshare(2) with a constant flag; it moves only this thread into a new,
    // empty network namespace (gone when the thread and its sockets end).
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        skip::skip(format!(
            "cannot make a network namespace ({}); hot-plug test skipped",
            std::io::Error::last_os_error()
        ));
        return;
    }
    // Promiscuous mode through PACKET_ADD_MEMBERSHIP needs CAP_NET_RAW only: prove it by
    // capturing without CAP_NET_ADMIN. `ip`, run as a new process, keeps root's set.
    drop_effective(CAP_NET_ADMIN).expect("drop CAP_NET_ADMIN");
    let name = "ct-veth0";
    let mut o = options(&[name]);
    o.promiscuous = true;
    let Some(mut capture) = open(&o) else {
        return;
    };
    let state = |c: &LiveCapture| c.stats().interfaces[name].state;
    assert_eq!(state(&capture), InterfaceState::Missing);

    let mut watch = Watch::new();
    ip(&[
        "link", "add", name, "type", "veth", "peer", "name", "ct-peer0",
    ]);
    assert!(watch.until(&mut capture, |c, _| state(c) == InterfaceState::Down));
    bring_up(name);
    assert!(watch.until(&mut capture, |c, _| state(c) == InterfaceState::Open));
    assert_eq!(promiscuity(name), 1, "promiscuous without CAP_NET_ADMIN");

    // What this host sends out of the interface is captured (PACKET_OUTGOING).
    let (from, to) = (Ipv4Addr::new(10, 77, 0, 1), Ipv4Addr::new(10, 77, 0, 2));
    let sent = traffic("veth");
    let sender = send_all(from, to, &sent);
    let want = sent.iter().filter(|(port, _)| wanted(*port)).count();
    assert!(
        watch.until(&mut capture, |_, got| got.len() >= want),
        "{:?}",
        watch.got
    );
    watch.settle(&mut capture);
    assert_delivered_once(
        &watch.to_or_from(IpAddr::V4(to)),
        sender,
        to,
        &sent,
        LinkType::Ethernet,
    );

    // Down and up again: the socket is kept, and frames flow again once it is up.
    ip(&["link", "set", name, "down"]);
    assert!(watch.until(&mut capture, |c, _| state(c) == InterfaceState::Down));
    ip(&["link", "set", name, "up"]);
    ip(&[
        "neigh",
        "replace",
        "10.77.0.2",
        "lladdr",
        "02:00:00:00:00:02",
        "dev",
        name,
    ]);
    assert!(watch.until(&mut capture, |c, _| state(c) == InterfaceState::Open));
    watch.got.clear();
    let sender = send_all(from, to, &sent);
    assert!(
        watch.until(&mut capture, |_, got| got.len() >= want),
        "{:?}",
        watch.got
    );
    watch.settle(&mut capture);
    assert_delivered_once(
        &watch.to_or_from(IpAddr::V4(to)),
        sender,
        to,
        &sent,
        LinkType::Ethernet,
    );

    // Deleted, then made again (a new ifindex): the old socket is closed, a new one opened.
    ip(&["link", "del", name]);
    assert!(watch.until(&mut capture, |c, _| state(c) == InterfaceState::Missing));
    ip(&[
        "link", "add", name, "type", "veth", "peer", "name", "ct-peer0",
    ]);
    bring_up(name);
    assert!(watch.until(&mut capture, |c, _| state(c) == InterfaceState::Open));
    watch.got.clear();
    let sender = send_all(from, to, &sent);
    assert!(
        watch.until(&mut capture, |_, got| got.len() >= want),
        "{:?}",
        watch.got
    );
    watch.settle(&mut capture);
    assert_delivered_once(
        &watch.to_or_from(IpAddr::V4(to)),
        sender,
        to,
        &sent,
        LinkType::Ethernet,
    );
    let stats = capture.stats();
    assert_eq!(stats.interfaces[name].counters.kernel_drops, 0);

    // Closing the socket ends promiscuous mode: the kernel counts it per socket.
    drop(capture);
    assert_eq!(promiscuity(name), 0);
}

#[test]
fn a_device_without_ethernet_framing_is_captured_cooked() {
    if Command::new("ip").arg("-V").output().is_err() {
        skip::skip("`ip` (iproute2) is absent; tun capture test skipped");
        return;
    }
    std::thread::spawn(tun_device)
        .join()
        .expect("namespace thread");
}

/// A tun device (no link header, ARPHRD_NONE, as WireGuard and OpenVPN present) in a
/// namespace of its own: frames come cooked, with an SLL header calltap builds.
fn tun_device() {
    // SAFETY: as in `appearing_interface`.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        skip::skip("cannot make a network namespace; tun capture test skipped");
        return;
    }
    let Ok(tun) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
    else {
        skip::skip("/dev/net/tun cannot be opened; tun capture test skipped");
        return;
    };
    let name = "ct-tun0";
    // SAFETY: ifreq is plain data; all zeroes is valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    req.ifr_ifru.ifru_flags = (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short;
    // SAFETY: TUNSETIFF reads and writes one ifreq, which is live and exclusive.
    let rc = unsafe {
        libc::ioctl(
            std::os::fd::AsRawFd::as_raw_fd(&tun),
            libc::TUNSETIFF,
            &mut req,
        )
    };
    assert_eq!(rc, 0, "TUNSETIFF: {}", std::io::Error::last_os_error());
    ip(&["addr", "add", "10.78.0.1/24", "dev", name]);
    ip(&["link", "set", name, "up"]);
    let Some(mut capture) = open(&options(&[name])) else {
        return;
    };
    assert_eq!(capture.stats().interfaces[name].state, InterfaceState::Open);
    let (from, to) = (Ipv4Addr::new(10, 78, 0, 1), Ipv4Addr::new(10, 78, 0, 2));
    let sent = traffic("tun");
    let sender = send_all(from, to, &sent);
    let want = sent.iter().filter(|(port, _)| wanted(*port)).count();
    let mut watch = Watch::new();
    assert!(
        watch.until(&mut capture, |_, got| got.len() >= want),
        "{:?}",
        watch.got
    );
    watch.settle(&mut capture);
    assert_delivered_once(
        &watch.to_or_from(IpAddr::V4(to)),
        sender,
        to,
        &sent,
        LinkType::LinuxSll,
    );
    drop(tun);
}

// --- measurement -------------------------------------------------------------------

/// Frames per second the ring delivers on loopback under a flood from one sender, the
/// kernel's drops at that rate, and the capture thread's CPU time. Not a pass/fail test:
/// `cargo test --release --test live_capture -- --ignored --nocapture flood`; with
/// CALLTAP_FLOOD_DECODE=1 the capture thread also runs each frame through net::Decoder.
#[test]
#[ignore]
fn flood() {
    const COUNT: usize = 200_000;
    let mut o = options(&["lo"]);
    o.ring_bytes = calltap::capture::live::DEFAULT_RING_BYTES;
    o.block_timeout = calltap::capture::live::DEFAULT_BLOCK_TIMEOUT;
    let Some(mut capture) = open(&o) else {
        return;
    };
    let (from, to) = (Ipv4Addr::new(127, 64, 0, 1), Ipv4Addr::new(127, 64, 0, 2));
    // A bound receiver, so no ICMP port-unreachable is made per datagram.
    let _sink = UdpSocket::bind((to, 40_000)).expect("bind sink");
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let decode = std::env::var_os("CALLTAP_FLOOD_DECODE").is_some();
    let capturing = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut decoder = Decoder::new(&DecoderOptions::default());
            let mut datagrams = 0u64;
            let cpu_start = thread_cpu();
            let mut ours = 0usize;
            let mut first: Option<Instant> = None;
            let mut last = Instant::now();
            let mut idle_after_done = 0;
            loop {
                let n = capture
                    .poll(Duration::from_millis(50), &mut |f| {
                        // 42 bytes of Ethernet/IP/UDP headers, then the payload.
                        if f.data.len() > 33 && f.data[30..34] == [127, 64, 0, 2] {
                            ours += 1;
                        }
                        if decode {
                            decoder.decode(f, &mut |_| datagrams += 1);
                        }
                    })
                    .expect("poll");
                if n > 0 {
                    first.get_or_insert_with(Instant::now);
                    last = Instant::now();
                    idle_after_done = 0;
                } else if done.load(std::sync::atomic::Ordering::Acquire) {
                    idle_after_done += 1;
                    if idle_after_done > 4 {
                        break;
                    }
                }
            }
            let cpu = thread_cpu() - cpu_start;
            let span = last - first.unwrap_or(last);
            assert!(!decode || datagrams >= ours as u64);
            (ours, span, cpu, capture.stats())
        })
    };
    std::thread::sleep(Duration::from_millis(100));
    let socket = UdpSocket::bind((from, SENDER_PORT)).expect("bind sender");
    let payload = [0x80u8; 172]; // an RTP header and 160 bytes of G.711
    let sending = Instant::now();
    for _ in 0..COUNT {
        socket.send_to(&payload, (to, 40_000)).expect("send");
    }
    let send_time = sending.elapsed();
    done.store(true, std::sync::atomic::Ordering::Release);
    let (ours, span, cpu, stats) = capturing.join().expect("capture thread");
    let lo = &stats.interfaces["lo"].counters;
    println!(
        "flood: sent {COUNT} in {send_time:?} ({:.0}/s); delivered {ours} of them in {span:?} \
         ({:.0} frames/s); kernel drops {}, freezes {}; capture thread CPU {cpu:?} \
         ({:.0} ns/frame over {} frames read)",
        COUNT as f64 / send_time.as_secs_f64(),
        ours as f64 / span.as_secs_f64().max(1e-9),
        lo.kernel_drops,
        lo.kernel_freezes,
        cpu.as_nanos() as f64 / lo.packets.max(1) as f64,
        lo.packets,
    );
}

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

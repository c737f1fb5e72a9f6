//! Live capture from Linux interfaces: one AF_PACKET socket per interface, each with a
//! memory-mapped TPACKET_V3 receive ring, so the kernel writes frames straight into
//! memory calltap reads, a block of frames per wake-up, with no copy and no libpcap.
//!
//! - Named interfaces with Ethernet framing (`eth1`, and `lo`, whose frames carry an
//!   Ethernet header with zero addresses) are opened SOCK_RAW and delivered as
//!   [`LinkType::Ethernet`], tags and all.
//! - `any`, and interfaces without an Ethernet header (WireGuard, tun, GRE devices),
//!   are opened SOCK_DGRAM ("cooked": the kernel strips the link header and describes
//!   it in a `sockaddr_ll`). calltap builds a Linux cooked (SLL) header from that, in
//!   place, and delivers [`LinkType::LinuxSll`]: it keeps what raw IP would lose (a VLAN
//!   or PPPoE ethertype, the direction), and it is what `tcpdump -i any` writes.
//! - On loopback every packet passes the packet tap twice, once as it is sent
//!   (PACKET_OUTGOING) and once as it is received (PACKET_HOST). Like libpcap, calltap
//!   skips the outgoing copy on loopback devices only (counted as
//!   `loopback_duplicates`), so each packet is delivered once; PACKET_IGNORE_OUTGOING
//!   would also drop what a PBX host sends on its real interfaces.
//! - A VLAN tag the NIC strips on receive (rx-vlan offload) arrives beside the frame, in
//!   tp_vlan_tci, and is not put back: calltap uses no VLAN ids, and the IP packet is
//!   the same. Tags the NIC leaves (QinQ inner tags, mirror ports) are walked as usual.
//! - A missing or down interface is not an error: it is logged once, looked at again
//!   every `retry_interval`, and captured once it is there. A socket bound to a down
//!   interface is kept (the kernel resumes delivery when it comes up); one whose
//!   interface went away is closed and opened afresh when the name reappears.
//! - Promiscuous mode uses PACKET_ADD_MEMBERSHIP/PACKET_MR_PROMISC, which needs no
//!   capability beyond the CAP_NET_RAW the socket already took (IFF_PROMISC through
//!   SIOCSIFFLAGS would need CAP_NET_ADMIN) and is undone by the kernel when the socket
//!   closes, even after a crash.

mod block;
mod ring;

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use serde::Serialize;

use std::sync::Arc;

use super::{Frame, FrameFilter, LinkType};
use ring::{Control, PacketRing, RingShape, SetupError};

/// The interface name that captures every interface.
pub const ANY: &str = "any";

/// Ring block size. Large enough for the biggest frame the kernel hands over (64 KiB
/// GRO/GSO aggregates, loopback's 64 KiB MTU), small enough that a quiet line, where
/// each block leaves after `block_timeout` holding a few frames, still has many blocks:
/// 256 blocks of a 64 MiB ring at 100 ms each ride out a 25 s stall of the consumer.
const BLOCK_SIZE: usize = 256 << 10;

/// Default ring per interface (`[capture] ring_size`): 64 MiB. A G.711 RTP packet takes about 320 bytes of ring
/// (214 on the wire plus the frame header and alignment), so 64 MiB holds about 200,000
/// packets: 2 s of 100,000 packets/s, which is 1,000 concurrent calls both ways at
/// 50 packets/s, while the engine is busy (a store flush, a burst of call ends).
pub const DEFAULT_RING_BYTES: usize = 64 << 20;

/// Default block timeout: the longest a frame waits in a block that is not full. The
/// engine cares about order and capture time, not about 100 ms of latency, and fewer
/// half-empty blocks leave more of the ring for bursts.
pub const DEFAULT_BLOCK_TIMEOUT: Duration = Duration::from_millis(100);

/// How often missing and down interfaces are looked at again.
pub const DEFAULT_RETRY_INTERVAL: Duration = Duration::from_secs(2);

/// Longest block timeout accepted: beyond it a quiet line looks dead.
const MAX_BLOCK_TIMEOUT: Duration = Duration::from_secs(60);

/// Linux interface names are at most 15 bytes (IFNAMSIZ less the NUL).
const MAX_INTERFACE_NAME: usize = 15;

/// What to capture and how.
#[derive(Clone, Debug)]
pub struct LiveOptions {
    /// Interface names; `"any"` alone captures every interface.
    pub interfaces: Vec<String>,
    pub promiscuous: bool,
    /// Which frames are handed on (the packet layer's pre-filter).
    pub filter: Arc<dyn FrameFilter>,
    /// Receive ring size per interface, rounded down to whole 256 KiB blocks.
    pub ring_bytes: usize,
    /// The kernel hands over a block not yet full after this long (1 ms to 60 s).
    pub block_timeout: Duration,
    /// How often missing and down interfaces are looked at again.
    pub retry_interval: Duration,
}

impl LiveOptions {
    /// Capture on `interfaces`, `filter` deciding what is kept, with the defaults for
    /// the rest (not promiscuous, a 64 MiB ring). The drivers map `[capture]` onto these
    /// (`run::live_options`).
    pub fn new(interfaces: Vec<String>, filter: Arc<dyn FrameFilter>) -> LiveOptions {
        LiveOptions {
            interfaces,
            promiscuous: false,
            filter,
            ring_bytes: DEFAULT_RING_BYTES,
            block_timeout: DEFAULT_BLOCK_TIMEOUT,
            retry_interval: DEFAULT_RETRY_INTERVAL,
        }
    }

    fn check(&self) -> Result<RingShape, LiveError> {
        let bad = |why: String| Err::<RingShape, _>(LiveError::BadOptions(why));
        if self.interfaces.is_empty() {
            return bad(
                "no interface to capture on: list them in [capture] interfaces, \
                 e.g. [\"eth1\"], or [\"any\"] for every interface"
                    .into(),
            );
        }
        let mut seen = BTreeSet::new();
        for name in &self.interfaces {
            if let Err(why) = check_interface_name(name) {
                return bad(why);
            }
            if !seen.insert(name.as_str()) {
                return bad(format!("interface {name:?} is listed twice"));
            }
        }
        if seen.contains(ANY) && seen.len() > 1 {
            return bad(format!(
                "\"{ANY}\" already captures every interface: list either \"{ANY}\" or named interfaces"
            ));
        }
        if self.ring_bytes < BLOCK_SIZE {
            return bad(format!(
                "ring of {} bytes is smaller than one block ({BLOCK_SIZE} bytes)",
                self.ring_bytes
            ));
        }
        if self.block_timeout < Duration::from_millis(1) || self.block_timeout > MAX_BLOCK_TIMEOUT {
            return bad(format!(
                "block timeout {:?} is outside 1 ms to {MAX_BLOCK_TIMEOUT:?}",
                self.block_timeout
            ));
        }
        if self.retry_interval.is_zero() {
            return bad("the interface retry interval must not be zero".into());
        }
        Ok(RingShape {
            block_size: BLOCK_SIZE,
            block_count: self.ring_bytes / BLOCK_SIZE,
            block_timeout: self.block_timeout,
        })
    }
}

/// The kernel's rules for a device name (dev_valid_name), so a name that can never
/// exist is reported at start rather than waited for.
fn check_interface_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name == "." || name == ".." {
        return Err(format!("{name:?} is not an interface name"));
    }
    if name.len() > MAX_INTERFACE_NAME {
        return Err(format!(
            "interface name {name:?} is longer than Linux allows ({MAX_INTERFACE_NAME} bytes)"
        ));
    }
    if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        return Err(format!(
            "interface name {name:?} holds a character Linux does not allow ('/', ':' or a space)"
        ));
    }
    Ok(())
}

/// What stops live capture from starting (or, for `Poll`, from going on).
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error(
        "live capture is not permitted ({source}): AF_PACKET sockets need the CAP_NET_RAW \
         capability. Run calltap as root, or grant CAP_NET_RAW: AmbientCapabilities=CAP_NET_RAW \
         in the systemd unit, or `setcap cap_net_raw=ep` on the calltap binary"
    )]
    Permission { source: io::Error },
    #[error("live capture is not available: this kernel has no AF_PACKET sockets ({source})")]
    Unsupported { source: io::Error },
    #[error("live capture options: {0}")]
    BadOptions(String),
    #[error("interface {interface}: {step} failed: {source}")]
    Interface {
        interface: String,
        step: &'static str,
        source: io::Error,
    },
    #[error("live capture: {what} failed: {source}")]
    System {
        what: &'static str,
        source: io::Error,
    },
    #[error("waiting for packets failed: {0}")]
    Poll(io::Error),
}

impl LiveError {
    /// The error for a failed socket set-up step (`interface` empty: not one interface's):
    /// missing privilege and a kernel without AF_PACKET get their own, actionable messages.
    fn setup(interface: &str, e: SetupError) -> LiveError {
        match e.source.raw_os_error() {
            Some(libc::EPERM) | Some(libc::EACCES) => LiveError::Permission { source: e.source },
            Some(libc::EAFNOSUPPORT) => LiveError::Unsupported { source: e.source },
            _ if interface.is_empty() => LiveError::System {
                what: e.step,
                source: e.source,
            },
            _ => LiveError::Interface {
                interface: interface.to_string(),
                step: e.step,
                source: e.source,
            },
        }
    }
}

/// Where an interface stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InterfaceState {
    /// Capturing.
    Open,
    /// The interface exists but is down; its socket waits for it to come up.
    Down,
    /// No interface of that name (yet).
    #[default]
    Missing,
    /// Opening it failed for another reason (logged); retried like a missing one.
    Failed,
}

/// Counters of one interface, or their sum.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LiveCounters {
    /// Frames read from the ring.
    pub packets: u64,
    /// Frames handed on.
    pub delivered: u64,
    /// Frames the pre-filter dropped (not SIP, RTP or a tunnel of them).
    pub filtered: u64,
    /// Loopback's outgoing copies, skipped so each packet is delivered once.
    pub loopback_duplicates: u64,
    /// Frames the kernel cut to fit a ring block (still delivered).
    pub truncated: u64,
    /// Ring blocks whose layout was wrong; their remaining frames were skipped.
    pub bad_blocks: u64,
    /// Packets the kernel offered the socket, dropped ones included (PACKET_STATISTICS).
    pub kernel_packets: u64,
    /// Packets the kernel dropped because the ring was full.
    pub kernel_drops: u64,
    /// Times the ring filled up and the kernel froze it (tp_freeze_q_cnt).
    pub kernel_freezes: u64,
}

impl LiveCounters {
    fn add(&mut self, o: &LiveCounters) {
        self.packets += o.packets;
        self.delivered += o.delivered;
        self.filtered += o.filtered;
        self.loopback_duplicates += o.loopback_duplicates;
        self.truncated += o.truncated;
        self.bad_blocks += o.bad_blocks;
        self.kernel_packets += o.kernel_packets;
        self.kernel_drops += o.kernel_drops;
        self.kernel_freezes += o.kernel_freezes;
    }
}

/// One interface in [`LiveStats`].
#[derive(Clone, Debug, Default, Serialize)]
pub struct InterfaceStats {
    pub name: String,
    pub state: InterfaceState,
    /// `state == Open`, as a number for /metrics (strings are not exported there).
    pub open: bool,
    #[serde(flatten)]
    pub counters: LiveCounters,
}

/// Live capture statistics: per interface (keyed by name, so /metrics names each
/// interface) and summed. Kernel counters are as of the last `poll`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LiveStats {
    pub interfaces: BTreeMap<String, InterfaceStats>,
    pub total: LiveCounters,
}

struct Interface {
    name: String,
    /// `None` until first looked at, so the first state is logged too.
    state: Option<InterfaceState>,
    ring: Option<PacketRing>,
    /// How the open ring's frames are framed.
    link: LinkType,
    counters: LiveCounters,
}

impl Interface {
    fn set_state(&mut self, state: InterfaceState, retry: Duration, detail: &str) {
        let before = self.state.replace(state);
        if before == Some(state) {
            return;
        }
        let name = &self.name;
        match (state, before) {
            (InterfaceState::Open, None) => tracing::info!("capturing on {name}{detail}"),
            (InterfaceState::Open, Some(InterfaceState::Down)) => {
                tracing::info!("interface {name} is up: capturing")
            }
            (InterfaceState::Open, Some(_)) => {
                tracing::info!("interface {name} is there now: capturing{detail}")
            }
            (InterfaceState::Down, _) => tracing::warn!(
                "interface {name} is down: capture starts when it comes up (checked every {retry:?})"
            ),
            (InterfaceState::Missing, _) => tracing::warn!(
                "interface {name} not found: calltap looks for it every {retry:?} and captures once it appears"
            ),
            (InterfaceState::Failed, _) => tracing::warn!(
                "interface {name} cannot be captured{detail}: retrying every {retry:?}"
            ),
        }
    }

    /// Reads the kernel's counters (which resets them) into ours.
    fn harvest(&mut self) {
        if let Some(Ok(k)) = self.ring.as_ref().map(PacketRing::take_stats) {
            self.counters.kernel_packets += u64::from(k.packets);
            self.counters.kernel_drops += u64::from(k.drops);
            self.counters.kernel_freezes += u64::from(k.freezes);
        }
    }

    /// Hands on every frame in the blocks the kernel has retired.
    fn drain(&mut self, filter: &dyn FrameFilter, on_frame: &mut dyn FnMut(&Frame<'_>)) -> usize {
        let Some(ring) = self.ring.as_mut() else {
            return 0;
        };
        let (link, c) = (self.link, &mut self.counters);
        let cooked = link == LinkType::LinuxSll;
        let before = c.delivered;
        // At most one lap, so a flood on one interface cannot starve the others.
        for _ in 0..ring.block_count() {
            let walked = ring.next_block(|block| {
                block::walk(block, cooked, &mut |p| {
                    c.packets += 1;
                    if p.is_loopback_copy() {
                        c.loopback_duplicates += 1;
                        return;
                    }
                    if (p.data.len() as u64) < u64::from(p.orig_len) {
                        c.truncated += 1;
                    }
                    if filter.wants(link, p.data) {
                        c.delivered += 1;
                        on_frame(&Frame {
                            time: p.time,
                            link,
                            data: p.data,
                            orig_len: p.orig_len,
                        });
                    } else {
                        c.filtered += 1;
                    }
                })
            });
            match walked {
                None => break,
                Some(Ok(())) => {}
                Some(Err(block::BadBlock)) => c.bad_blocks += 1,
            }
        }
        (c.delivered - before) as usize
    }

    fn close(&mut self, filter: &dyn FrameFilter, on_frame: &mut dyn FnMut(&Frame<'_>)) -> usize {
        let delivered = self.drain(filter, on_frame);
        self.harvest();
        self.ring = None;
        delivered
    }
}

/// Live capture on the configured interfaces.
pub struct LiveCapture {
    interfaces: Vec<Interface>,
    filter: Arc<dyn FrameFilter>,
    control: Control,
    shape: RingShape,
    promiscuous: bool,
    retry_interval: Duration,
    next_check: Instant,
    // Reused poll(2) buffers.
    fds: Vec<RawFd>,
    owners: Vec<usize>,
    pollfds: Vec<libc::pollfd>,
    errors: Vec<bool>,
}

impl LiveCapture {
    /// Opens every interface. Fails on what a restart cannot fix: no permission (the
    /// message names CAP_NET_RAW and how to grant it), no AF_PACKET in the kernel, bad
    /// options, or a ring the kernel refuses. A missing or down interface is not fatal:
    /// it is logged once, retried inside [`poll`](Self::poll), and picked up when it
    /// appears or comes up.
    ///
    /// Sockets live in the network namespace of the thread that calls `open` (and, for
    /// interfaces that appear later, of the thread that calls `poll`).
    pub fn open(options: &LiveOptions) -> Result<LiveCapture, LiveError> {
        let shape = options.check()?;
        ring::probe().map_err(|source| {
            LiveError::setup(
                "",
                SetupError {
                    step: "socket(AF_PACKET)",
                    source,
                },
            )
        })?;
        let control = Control::new().map_err(|source| LiveError::System {
            what: "a socket for interface look-ups",
            source,
        })?;
        let mut capture = LiveCapture {
            interfaces: options
                .interfaces
                .iter()
                .map(|name| Interface {
                    name: name.clone(),
                    state: None,
                    ring: None,
                    link: LinkType::Ethernet,
                    counters: LiveCounters::default(),
                })
                .collect(),
            filter: Arc::clone(&options.filter),
            control,
            shape,
            promiscuous: options.promiscuous,
            retry_interval: options.retry_interval,
            next_check: Instant::now() + options.retry_interval,
            fds: Vec::new(),
            owners: Vec::new(),
            pollfds: Vec::new(),
            errors: Vec::new(),
        };
        for i in 0..capture.interfaces.len() {
            capture.refresh(i, true, &mut |_| {})?;
        }
        Ok(capture)
    }

    /// Waits up to `timeout` for ring blocks and hands every frame that passes the
    /// pre-filter to `on_frame`, stamped with the kernel's receive time. Returns the
    /// frames delivered (0 after a timeout or a signal). Also the place where missing
    /// and down interfaces are retried and kernel counters are read.
    pub fn poll(
        &mut self,
        timeout: Duration,
        on_frame: &mut dyn FnMut(&Frame<'_>),
    ) -> Result<usize, LiveError> {
        let mut delivered = 0;
        let now = Instant::now();
        if now >= self.next_check {
            delivered += self.check_interfaces(on_frame);
        }
        delivered += self.drain_all(on_frame);
        if delivered == 0 {
            self.fds.clear();
            self.owners.clear();
            for (i, iface) in self.interfaces.iter().enumerate() {
                if let Some(ring) = &iface.ring {
                    self.fds.push(ring.fd());
                    self.owners.push(i);
                }
            }
            let wait = timeout.min(self.next_check.saturating_duration_since(now));
            ring::wait(&self.fds, wait, &mut self.pollfds, &mut self.errors)
                .map_err(LiveError::Poll)?;
            let mut errored = false;
            for (k, &error) in self.errors.iter().enumerate() {
                if error {
                    if let Some(ring) = &self.interfaces[self.owners[k]].ring {
                        // Reading the error clears it, or poll would keep reporting it.
                        let _ = ring.take_error();
                    }
                    errored = true;
                }
            }
            if errored {
                // The interface went down or away: look now rather than at the next retry.
                delivered += self.check_interfaces(on_frame);
            }
            delivered += self.drain_all(on_frame);
        }
        for iface in &mut self.interfaces {
            iface.harvest();
        }
        Ok(delivered)
    }

    /// Counters per interface and in total.
    pub fn stats(&self) -> LiveStats {
        let mut stats = LiveStats::default();
        for iface in &self.interfaces {
            let state = iface.state.unwrap_or_default();
            stats.total.add(&iface.counters);
            stats.interfaces.insert(
                iface.name.clone(),
                InterfaceStats {
                    name: iface.name.clone(),
                    state,
                    open: state == InterfaceState::Open,
                    counters: iface.counters,
                },
            );
        }
        stats
    }

    fn drain_all(&mut self, on_frame: &mut dyn FnMut(&Frame<'_>)) -> usize {
        let filter = &*self.filter;
        self.interfaces
            .iter_mut()
            .map(|iface| iface.drain(filter, on_frame))
            .sum()
    }

    fn check_interfaces(&mut self, on_frame: &mut dyn FnMut(&Frame<'_>)) -> usize {
        let mut delivered = 0;
        for i in 0..self.interfaces.len() {
            // Not at start-up, so nothing here is fatal: failures become state Failed.
            if let Ok(n) = self.refresh(i, false, on_frame) {
                delivered += n;
            }
        }
        self.next_check = Instant::now() + self.retry_interval;
        delivered
    }

    /// Brings interface `i`'s socket in line with the interface: opens it when the
    /// interface is there, closes it when it went away. At start-up (`fatal`), a failure
    /// to open an interface that exists is an error; later it is a logged state.
    fn refresh(
        &mut self,
        i: usize,
        fatal: bool,
        on_frame: &mut dyn FnMut(&Frame<'_>),
    ) -> Result<usize, LiveError> {
        let retry = self.retry_interval;
        let iface = &mut self.interfaces[i];
        if iface.name == ANY {
            if iface.ring.is_none() {
                if self.promiscuous {
                    tracing::warn!(
                        "promiscuous mode cannot be set on \"{ANY}\": list the interfaces to make promiscuous by name"
                    );
                }
                match PacketRing::open(0, true, false, self.shape) {
                    Ok(ring) => {
                        iface.ring = Some(ring);
                        iface.link = LinkType::LinuxSll;
                        iface.set_state(InterfaceState::Open, retry, " (every interface)");
                    }
                    Err(e) => return self.open_failed(i, fatal, e),
                }
            }
            return Ok(0);
        }
        let info = match self.control.lookup(&iface.name) {
            Ok(info) => info,
            Err(e) => {
                let step = "interface look-up";
                return self.open_failed(i, fatal, SetupError { step, source: e });
            }
        };
        let mut delivered = 0;
        let iface = &mut self.interfaces[i];
        if let Some(ring) = &iface.ring {
            match info {
                Some(info) if info.index == ring.ifindex => {
                    let state = if info.up {
                        InterfaceState::Open
                    } else {
                        InterfaceState::Down
                    };
                    iface.set_state(state, retry, "");
                    return Ok(0);
                }
                // Gone, or deleted and made again under a new index.
                _ => delivered += iface.close(&*self.filter, on_frame),
            }
        }
        let Some(info) = info else {
            iface.set_state(InterfaceState::Missing, retry, "");
            return Ok(delivered);
        };
        // Ethernet framing (loopback's too) is delivered as is; anything else cooked.
        let ethernet = matches!(
            info.hardware_type,
            libc::ARPHRD_ETHER | libc::ARPHRD_LOOPBACK
        );
        match PacketRing::open(info.index, !ethernet, self.promiscuous, self.shape) {
            Ok(ring) => {
                // Binding to a down interface leaves ENETDOWN pending: clear it now.
                let _ = ring.take_error();
                iface.ring = Some(ring);
                iface.link = if ethernet {
                    LinkType::Ethernet
                } else {
                    LinkType::LinuxSll
                };
                let state = if info.up {
                    InterfaceState::Open
                } else {
                    InterfaceState::Down
                };
                iface.set_state(state, retry, "");
                Ok(delivered)
            }
            Err(e) => self.open_failed(i, fatal, e).map(|_| delivered),
        }
    }

    fn open_failed(&mut self, i: usize, fatal: bool, e: SetupError) -> Result<usize, LiveError> {
        let iface = &mut self.interfaces[i];
        if fatal {
            return Err(LiveError::setup(&iface.name, e));
        }
        let detail = format!(" ({} failed: {})", e.step, e.source);
        iface.set_state(InterfaceState::Failed, self.retry_interval, &detail);
        Ok(0)
    }
}

/// A retired ring block of arbitrary bytes through the same walk, loopback rule and
/// pre-filter as a live one: for the fuzzer (fuzz/fuzz_targets/live_block.rs), since the
/// walk trusts nothing the kernel wrote. Returns false when the block was refused as
/// damaged (the frames before the damage were handed on).
#[doc(hidden)]
pub fn walk_block_untrusted(
    block: &mut [u8],
    cooked: bool,
    filter: &dyn FrameFilter,
    on_frame: &mut dyn FnMut(&Frame<'_>),
) -> bool {
    let link = if cooked {
        LinkType::LinuxSll
    } else {
        LinkType::Ethernet
    };
    block::walk(block, cooked, &mut |p| {
        if !p.is_loopback_copy() && filter.wants(link, p.data) {
            on_frame(&Frame {
                time: p.time,
                link,
                data: p.data,
                orig_len: p.orig_len,
            });
        }
    })
    .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keeps every frame: these tests are about options, not filtering.
    #[derive(Debug)]
    struct Everything;

    impl FrameFilter for Everything {
        fn wants(&self, _: LinkType, _: &[u8]) -> bool {
            true
        }
    }

    fn options(interfaces: &[&str]) -> LiveOptions {
        let interfaces = interfaces.iter().map(|s| s.to_string()).collect();
        LiveOptions::new(interfaces, Arc::new(Everything))
    }

    fn refused(o: &LiveOptions) -> String {
        match o.check() {
            Err(LiveError::BadOptions(why)) => why,
            other => panic!("expected bad options, got {other:?}"),
        }
    }

    #[test]
    fn defaults_come_from_the_configuration() {
        let mut config = crate::config::Config::default();
        config.capture.interfaces = vec!["eth1".into()];
        config.capture.promiscuous = true;
        let o = crate::run::live_options(&config);
        assert_eq!(o.interfaces, ["eth1"]);
        assert!(o.promiscuous);
        assert_eq!(
            o.ring_bytes, DEFAULT_RING_BYTES,
            "[capture] ring_size's default"
        );
        let shape = o.check().expect("defaults are valid");
        assert_eq!(shape.block_count * shape.block_size, 64 << 20);
    }

    #[test]
    fn the_ring_size_comes_from_the_configuration() {
        let config = crate::config::Config::from_toml(
            "[capture]\ninterfaces = [\"lo\"]\nring_size = \"256MiB\"\n",
            "test",
        )
        .expect("valid");
        let o = crate::run::live_options(&config);
        assert_eq!(o.ring_bytes, 256 << 20);
        let shape = o.check().expect("valid");
        assert_eq!(shape.block_count * shape.block_size, 256 << 20);
    }

    #[test]
    fn options_a_restart_cannot_fix_are_refused() {
        assert!(refused(&options(&[])).contains("[capture] interfaces"));
        assert!(refused(&options(&["calltap-nonexistent0"])).contains("longer than Linux allows"));
        assert!(refused(&options(&["eth 1"])).contains("does not allow"));
        assert!(refused(&options(&["eth0:1"])).contains("does not allow"));
        assert!(refused(&options(&[""])).contains("not an interface name"));
        assert!(refused(&options(&["eth1", "eth1"])).contains("twice"));
        assert!(refused(&options(&["any", "eth1"])).contains("every interface"));
        let mut small = options(&["eth1"]);
        small.ring_bytes = 4096;
        assert!(refused(&small).contains("smaller than one block"));
        let mut slow = options(&["eth1"]);
        slow.block_timeout = Duration::from_secs(120);
        assert!(refused(&slow).contains("block timeout"));
        slow.block_timeout = Duration::ZERO;
        assert!(refused(&slow).contains("block timeout"));
        let mut eager = options(&["eth1"]);
        eager.retry_interval = Duration::ZERO;
        assert!(refused(&eager).contains("retry interval"));
        assert!(options(&["any"]).check().is_ok());
        assert!(options(&["lo", "eth0.100", "wg0"]).check().is_ok());
    }

    #[test]
    fn permission_errors_name_the_capability_and_how_to_grant_it() {
        for errno in [libc::EPERM, libc::EACCES] {
            let e = LiveError::setup(
                "eth1",
                SetupError {
                    step: "socket(AF_PACKET)",
                    source: io::Error::from_raw_os_error(errno),
                },
            );
            let text = e.to_string();
            assert!(matches!(e, LiveError::Permission { .. }), "{text}");
            assert!(text.contains("CAP_NET_RAW"), "{text}");
            assert!(text.contains("AmbientCapabilities=CAP_NET_RAW"), "{text}");
            assert!(text.contains("root"), "{text}");
        }
        let e = LiveError::setup(
            "eth1",
            SetupError {
                step: "PACKET_RX_RING",
                source: io::Error::from_raw_os_error(libc::ENOMEM),
            },
        );
        assert!(matches!(e, LiveError::Interface { .. }));
        assert!(e
            .to_string()
            .starts_with("interface eth1: PACKET_RX_RING failed"));
        let e = LiveError::setup(
            "",
            SetupError {
                step: "socket(AF_PACKET)",
                source: io::Error::from_raw_os_error(libc::EAFNOSUPPORT),
            },
        );
        assert!(e.to_string().contains("no AF_PACKET"), "{e}");
        let e = LiveError::setup(
            "",
            SetupError {
                step: "socket(AF_PACKET)",
                source: io::Error::from_raw_os_error(libc::EMFILE),
            },
        );
        assert!(
            e.to_string()
                .starts_with("live capture: socket(AF_PACKET) failed"),
            "{e}"
        );
    }

    #[test]
    fn stats_serialise_to_plain_numbers_per_interface() {
        let mut stats = LiveStats::default();
        let mut eth = InterfaceStats {
            name: "eth1".into(),
            state: InterfaceState::Down,
            ..Default::default()
        };
        eth.counters.kernel_drops = 3;
        stats.interfaces.insert("eth1".into(), eth);
        let json = serde_json::to_value(&stats).expect("serialises");
        assert_eq!(json["interfaces"]["eth1"]["state"], "down");
        assert_eq!(json["interfaces"]["eth1"]["open"], false);
        assert_eq!(json["interfaces"]["eth1"]["kernel_drops"], 3);
        assert_eq!(json["total"]["delivered"], 0);
        let mut metrics = String::new();
        crate::api::prometheus_from_json("calltap_live", &json, &mut metrics);
        assert!(
            metrics.contains("calltap_live_interfaces_eth1_kernel_drops 3\n"),
            "{metrics}"
        );
        assert!(
            metrics.contains("calltap_live_interfaces_eth1_open 0\n"),
            "{metrics}"
        );
    }
}

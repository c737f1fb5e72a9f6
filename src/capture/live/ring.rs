//! The system-call layer of live capture: an AF_PACKET socket with a TPACKET_V3 receive
//! ring mapped into memory, interface look-ups, and poll(2). Every `unsafe` block of
//! live capture is in this file; the block and packet layout is read by safe code in
//! `block.rs` from the `&mut [u8]` this file hands out.

use std::io;
use std::mem::{size_of, MaybeUninit};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::block::BLOCK_STATUS_OFFSET;

/// Where setting up a ring failed, for the error message.
#[derive(Debug)]
pub(super) struct SetupError {
    pub step: &'static str,
    pub source: io::Error,
}

fn step(step: &'static str) -> impl FnOnce(io::Error) -> SetupError {
    move |source| SetupError { step, source }
}

/// The shape of a receive ring.
#[derive(Clone, Copy, Debug)]
pub(super) struct RingShape {
    pub block_size: usize,
    pub block_count: usize,
    /// The kernel hands a block over after this long even when it is not full.
    pub block_timeout: Duration,
}

/// TPACKET_V3 packs frames of any length into a block; `tp_frame_size` only has to
/// divide the block and hold a header, so any such value works.
const FRAME_SIZE: usize = 2048;

/// What the kernel says about an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct InterfaceInfo {
    pub index: i32,
    /// IFF_UP: administratively up (the kernel delivers packets only then).
    pub up: bool,
    /// ARPHRD_* hardware type: Ethernet and loopback frames have an Ethernet header.
    pub hardware_type: u16,
}

/// A socket for interface ioctls. Made once, in the network namespace live capture was
/// opened in, so look-ups keep answering for that namespace on any thread.
pub(super) struct Control(UnixDatagram);

impl Control {
    pub fn new() -> io::Result<Control> {
        UnixDatagram::unbound().map(Control)
    }

    /// The interface called `name`, or `None` when there is none (yet).
    pub fn lookup(&self, name: &str) -> io::Result<Option<InterfaceInfo>> {
        let missing = |e: io::Error| match e.raw_os_error() {
            Some(libc::ENODEV) | Some(libc::ENXIO) => Ok(None),
            _ => Err(e),
        };
        let mut req = ifreq(name)?;
        match self.ioctl(libc::SIOCGIFINDEX, &mut req) {
            Ok(()) => {}
            Err(e) => return missing(e),
        }
        // SAFETY: SIOCGIFINDEX filled the union's ifindex member.
        let index = unsafe { req.ifr_ifru.ifru_ifindex };
        if let Err(e) = self.ioctl(libc::SIOCGIFFLAGS, &mut req) {
            return missing(e);
        }
        // SAFETY: SIOCGIFFLAGS filled the union's flags member.
        let flags = unsafe { req.ifr_ifru.ifru_flags };
        if let Err(e) = self.ioctl(libc::SIOCGIFHWADDR, &mut req) {
            return missing(e);
        }
        // SAFETY: SIOCGIFHWADDR filled the union's hwaddr member (a sockaddr).
        let hardware_type = unsafe { req.ifr_ifru.ifru_hwaddr.sa_family };
        Ok(Some(InterfaceInfo {
            index,
            up: i32::from(flags) & libc::IFF_UP != 0,
            hardware_type,
        }))
    }

    fn ioctl(&self, request: libc::c_ulong, req: &mut libc::ifreq) -> io::Result<()> {
        // SAFETY: the three SIOCGIF* requests used here read the name from and write one
        // union member of an `ifreq` the kernel knows the size of; `req` is a live,
        // exclusively borrowed `ifreq`.
        let rc = unsafe { libc::ioctl(self.0.as_raw_fd(), request as _, req as *mut libc::ifreq) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

fn ifreq(name: &str) -> io::Result<libc::ifreq> {
    // SAFETY: ifreq is plain old data (a name array and a union of integers, sockaddrs
    // and one pointer); all zeroes is a valid value of each.
    let mut req: libc::ifreq = unsafe { MaybeUninit::zeroed().assume_init() };
    if name.len() >= req.ifr_name.len() {
        return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
    }
    for (dst, &src) in req.ifr_name.iter_mut().zip(name.as_bytes()) {
        *dst = src as libc::c_char;
    }
    Ok(req)
}

/// Checks that this process may open packet sockets at all, before any interface is
/// looked at: a missing capability must stop start-up even when every configured
/// interface is missing. A socket with protocol 0 receives nothing.
pub(super) fn probe() -> io::Result<()> {
    packet_socket(libc::SOCK_RAW).map(drop)
}

fn packet_socket(kind: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: socket(2) with constant arguments; it returns a new descriptor or -1.
    // Protocol 0: nothing is queued until bind() names ETH_P_ALL and an interface, so
    // the ring never holds frames from other interfaces taken before the bind.
    let fd = unsafe { libc::socket(libc::AF_PACKET, kind | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket(2) and is owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn setsockopt<T>(fd: &OwnedFd, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: `value` points to a live `T` of the size passed; the kernel only reads it.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Reads an option into `value`: only for integers and structs of integers, which any
/// bytes the kernel writes leave valid.
fn getsockopt<T: Copy>(
    fd: &OwnedFd,
    level: libc::c_int,
    name: libc::c_int,
    value: &mut T,
) -> io::Result<()> {
    let mut len = size_of::<T>() as libc::socklen_t;
    // SAFETY: `value` is a live, exclusively borrowed `T` and `len` its size; the kernel
    // writes at most `len` bytes into it.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (value as *mut T).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Kernel counters of one socket since the previous read (reading resets them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct KernelStats {
    /// Packets the socket was offered, dropped ones included.
    pub packets: u32,
    /// Packets dropped because every block was still held by calltap.
    pub drops: u32,
    /// Times the ring filled up and the kernel froze the queue.
    pub freezes: u32,
}

/// An AF_PACKET socket bound to one interface (or all), with its mapped ring.
pub(super) struct PacketRing {
    fd: OwnedFd,
    map: NonNull<u8>,
    shape: RingShape,
    /// The block to look at next; the kernel fills blocks in order.
    next: usize,
    /// The interface bound (0: every interface).
    pub ifindex: i32,
}

// SAFETY: the mapping is owned by this value alone (no other pointer into it exists
// outside a `next_block` call, which borrows `self` mutably), and the kernel side is
// synchronised through each block's status word, so moving the ring to another thread
// is sound.
unsafe impl Send for PacketRing {}

impl PacketRing {
    /// A socket on interface `ifindex` (0: all) with a ring of `shape`. `cooked` asks
    /// for SOCK_DGRAM (the link header removed, described by the sockaddr_ll instead).
    pub fn open(
        ifindex: i32,
        cooked: bool,
        promiscuous: bool,
        shape: RingShape,
    ) -> Result<PacketRing, SetupError> {
        let kind = if cooked {
            libc::SOCK_DGRAM
        } else {
            libc::SOCK_RAW
        };
        let fd = packet_socket(kind).map_err(step("socket(AF_PACKET)"))?;
        let version = libc::tpacket_versions::TPACKET_V3 as libc::c_int;
        setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_VERSION, &version)
            .map_err(step("PACKET_VERSION TPACKET_V3"))?;
        let invalid = |what: &str| SetupError {
            step: "ring size",
            source: io::Error::new(io::ErrorKind::InvalidInput, what.to_string()),
        };
        let block_size = u32::try_from(shape.block_size).map_err(|_| invalid("block too big"))?;
        let block_count =
            u32::try_from(shape.block_count).map_err(|_| invalid("too many blocks"))?;
        let frames = u32::try_from(shape.block_size / FRAME_SIZE * shape.block_count)
            .map_err(|_| invalid("too many frames"))?;
        let timeout_ms = u32::try_from(shape.block_timeout.as_millis())
            .map_err(|_| invalid("block timeout too long"))?;
        let req = libc::tpacket_req3 {
            tp_block_size: block_size,
            tp_block_nr: block_count,
            tp_frame_size: FRAME_SIZE as u32,
            tp_frame_nr: frames,
            tp_retire_blk_tov: timeout_ms.max(1),
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_RX_RING, &req)
            .map_err(step("PACKET_RX_RING"))?;
        let len = shape.block_size * shape.block_count;
        // SAFETY: a fresh shared mapping of the ring just configured on `fd`, of exactly
        // its size; the kernel checks both. Nothing else maps or aliases it.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(SetupError {
                step: "mmap of the ring",
                source: io::Error::last_os_error(),
            });
        }
        let map = NonNull::new(addr.cast::<u8>()).ok_or_else(|| invalid("mmap returned null"))?;
        // From here on `ring` owns the mapping and unmaps it on every error path.
        let ring = PacketRing {
            fd,
            map,
            shape,
            next: 0,
            ifindex,
        };
        let addr = libc::sockaddr_ll {
            sll_family: libc::AF_PACKET as u16,
            sll_protocol: (libc::ETH_P_ALL as u16).to_be(),
            sll_ifindex: ifindex,
            sll_hatype: 0,
            sll_pkttype: 0,
            sll_halen: 0,
            sll_addr: [0; 8],
        };
        // SAFETY: `addr` is a live sockaddr_ll and the length passed is its size.
        let rc = unsafe {
            libc::bind(
                ring.fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_ll).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(SetupError {
                step: "bind",
                source: io::Error::last_os_error(),
            });
        }
        if promiscuous && ifindex != 0 {
            // Reference-counted by the kernel and undone when the socket closes, unlike
            // setting IFF_PROMISC (which also needs CAP_NET_ADMIN).
            let mreq = libc::packet_mreq {
                mr_ifindex: ifindex,
                mr_type: libc::PACKET_MR_PROMISC as u16,
                mr_alen: 0,
                mr_address: [0; 8],
            };
            setsockopt(
                &ring.fd,
                libc::SOL_PACKET,
                libc::PACKET_ADD_MEMBERSHIP,
                &mreq,
            )
            .map_err(step("PACKET_ADD_MEMBERSHIP promiscuous"))?;
        }
        Ok(ring)
    }

    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    pub fn block_count(&self) -> usize {
        self.shape.block_count
    }

    fn status(&self, block: usize) -> &AtomicU32 {
        debug_assert!(block < self.shape.block_count);
        // SAFETY: `block < block_count`, so the word lies inside the mapping; blocks
        // start on page boundaries and the status word sits at offset 8, so it is
        // 4-byte aligned. The kernel accesses it atomically (READ_ONCE/WRITE_ONCE with
        // barriers), and calltap only through this atomic.
        unsafe {
            AtomicU32::from_ptr(
                self.map
                    .as_ptr()
                    .add(block * self.shape.block_size + BLOCK_STATUS_OFFSET)
                    .cast::<u32>(),
            )
        }
    }

    /// Hands the next block to `f` if the kernel has retired it, then returns it to the
    /// kernel; `None` when the kernel still fills it.
    pub fn next_block<R>(&mut self, f: impl FnOnce(&mut [u8]) -> R) -> Option<R> {
        let block = self.next;
        // Acquire pairs with the kernel's barrier before it sets TP_STATUS_USER, so the
        // packets it wrote are visible once the status says the block is ours.
        if self.status(block).load(Ordering::Acquire) & libc::TP_STATUS_USER == 0 {
            return None;
        }
        let result = {
            // SAFETY: the block is inside the mapping (`block < block_count`). While its
            // status is TP_STATUS_USER the kernel neither reads nor writes it, and no
            // other reference into it exists (`self` is borrowed mutably and the status
            // atomic above is no longer used), so an exclusive slice is sound until the
            // status is handed back below, after the slice is gone.
            let bytes = unsafe {
                std::slice::from_raw_parts_mut(
                    self.map.as_ptr().add(block * self.shape.block_size),
                    self.shape.block_size,
                )
            };
            f(bytes)
        };
        // Release: every read of the block happens before the kernel may refill it.
        self.status(block)
            .store(libc::TP_STATUS_KERNEL, Ordering::Release);
        self.next = (block + 1) % self.shape.block_count;
        Some(result)
    }

    /// The kernel's counters since the last call: PACKET_STATISTICS resets them.
    pub fn take_stats(&self) -> io::Result<KernelStats> {
        let mut st = libc::tpacket_stats_v3 {
            tp_packets: 0,
            tp_drops: 0,
            tp_freeze_q_cnt: 0,
        };
        getsockopt(&self.fd, libc::SOL_PACKET, libc::PACKET_STATISTICS, &mut st)?;
        Ok(KernelStats {
            packets: st.tp_packets,
            drops: st.tp_drops,
            freezes: st.tp_freeze_q_cnt,
        })
    }

    /// The socket's pending error (reading clears it): ENETDOWN after the interface
    /// went down or away.
    pub fn take_error(&self) -> io::Result<i32> {
        let mut error: libc::c_int = 0;
        getsockopt(&self.fd, libc::SOL_SOCKET, libc::SO_ERROR, &mut error)?;
        Ok(error)
    }
}

impl Drop for PacketRing {
    fn drop(&mut self) {
        // SAFETY: `map` is the mapping made in `open`, of this length, and no slice
        // into it outlives `next_block`. The descriptor closes after this (OwnedFd).
        unsafe {
            libc::munmap(
                self.map.as_ptr().cast(),
                self.shape.block_size * self.shape.block_count,
            );
        }
    }
}

/// poll(2) on the descriptors for up to `timeout`; sets `errors[i]` when descriptor `i`
/// has an error pending (POLLERR: its interface went down or away). A signal ends the
/// wait early, like a timeout, so the caller can look at its shutdown flag.
pub(super) fn wait(
    fds: &[RawFd],
    timeout: Duration,
    pollfds: &mut Vec<libc::pollfd>,
    errors: &mut Vec<bool>,
) -> io::Result<()> {
    pollfds.clear();
    pollfds.extend(fds.iter().map(|&fd| libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }));
    // Round up so a sub-millisecond timeout still waits rather than spinning.
    let ms = timeout.as_micros().div_ceil(1000);
    let ms = libc::c_int::try_from(ms).unwrap_or(libc::c_int::MAX);
    // SAFETY: `pollfds` is a live array of `len` pollfd entries that poll(2) may write
    // `revents` into; with zero entries it only sleeps.
    let rc = unsafe { libc::poll(pollfds.as_mut_ptr(), pollfds.len() as libc::nfds_t, ms) };
    errors.clear();
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EINTR) {
            errors.resize(fds.len(), false);
            return Ok(());
        }
        return Err(e);
    }
    errors.extend(
        pollfds
            .iter()
            .map(|p| p.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0),
    );
    Ok(())
}

//! Capture time, the engine's only clock.

use std::time::Duration;

/// Capture time: nanoseconds since the Unix epoch, as stamped by the capturing host.
///
/// The engine's only clock. Nanoseconds in a `u64` reach the year 2554, and every
/// capture format calltap reads (pcap micro/nano, pcapng any resolution) fits.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(u64);

impl Timestamp {
    pub const fn from_nanos(nanos: u64) -> Self {
        Timestamp(nanos)
    }

    /// Saturates instead of wrapping for absurd stamps (seen in real captures).
    pub fn from_duration(since_epoch: Duration) -> Self {
        Timestamp(u64::try_from(since_epoch.as_nanos()).unwrap_or(u64::MAX))
    }

    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    pub const fn unix_secs(self) -> u64 {
        self.0 / 1_000_000_000
    }

    pub fn saturating_add(self, d: Duration) -> Self {
        Timestamp(
            self.0
                .saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
        )
    }

    /// Time elapsed from `earlier` to `self`; zero when `earlier` is later (captures
    /// merged from several interfaces are not strictly ordered).
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

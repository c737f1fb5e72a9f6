//! Quality figures: RFC 3550 interarrival jitter and an E-model MOS estimate.
//!
//! The E-model (ITU-T G.107) simplified the usual way for passive monitors (Cole and
//! Rosenbluth, "Voice over IP performance monitoring", 2001; G.113 Appendix I for the
//! codec figures):
//!
//! - R = 93.2 - Id - Ie_eff (93.2 is G.107's default R0 - Is with every other input at
//!   its default; A = 0).
//! - Id, the delay impairment, from a one-way mouth-to-ear delay estimate d in ms:
//!   Id = 0.024 d + 0.11 (d - 177.3) H(d - 177.3). A passive recorder cannot measure d;
//!   we take d = ptime (20) + a jitter buffer of 2 x jitter + 40 ms of network and codec
//!   delay, a LAN/PBX default.
//! - Ie_eff = Ie + (95 - Ie) Ppl / (Ppl / BurstR + Bpl), Ppl the loss in %, BurstR = 1
//!   (random loss assumed). Ie and Bpl per codec from G.113 Appendix I: G.711 0 and 25.1
//!   (with packet-loss concealment, which phones have); G.729A 11 and 19; G.722 is given
//!   G.711's figures (the narrow-band E-model has no scale for wide-band gain).
//! - MOS = 1 + 0.035 R + 7e-6 R (R - 60) (100 - R), 1 for R < 0, 4.5 for R > 100.

use serde::{Deserialize, Serialize};

/// One direction's figures (what one party sent, as seen on the wire).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DirectionQuality {
    /// Packets the sequence numbers say were sent (highest - first + 1, per source).
    pub expected: u64,
    /// Distinct packets received (duplicates not counted).
    pub received: u64,
    /// expected - received (never negative).
    pub lost: u64,
    pub duplicates: u64,
    /// Arrived after a later sequence number.
    pub reordered: u64,
    /// Arrived too late to be placed in the recording (beyond the reorder window).
    pub late: u64,
    /// RFC 3550 interarrival jitter, in milliseconds, at the end of the call.
    pub jitter_ms: f64,
    /// Confirmed changes of the sending source (SSRC).
    pub ssrc_changes: u32,
    /// Times the stream was re-synchronised to capture time (hold, timestamp jumps).
    pub resyncs: u32,
    /// One-millisecond steps taken to follow a sender clock running at another rate
    /// than the capture clock (silence added, or audio dropped, at a packet boundary).
    #[serde(default)]
    pub clock_slips: u32,
    /// Estimated MOS of this direction (None without packets).
    pub mos: Option<f64>,
}

impl DirectionQuality {
    pub fn loss_percent(&self) -> f64 {
        if self.expected == 0 {
            0.0
        } else {
            100.0 * self.lost as f64 / self.expected as f64
        }
    }
}

/// Codec figures for the E-model: equipment impairment Ie and packet-loss robustness Bpl.
#[derive(Clone, Copy, Debug)]
pub struct CodecImpairment {
    pub ie: f64,
    pub bpl: f64,
}

pub const G711: CodecImpairment = CodecImpairment { ie: 0.0, bpl: 25.1 };
pub const G729: CodecImpairment = CodecImpairment {
    ie: 11.0,
    bpl: 19.0,
};

/// The estimated MOS for a loss percentage, jitter and packet time.
pub fn mos(loss_percent: f64, jitter_ms: f64, ptime_ms: f64, codec: CodecImpairment) -> f64 {
    let d = ptime_ms + 2.0 * jitter_ms + 40.0;
    let id = 0.024 * d + if d > 177.3 { 0.11 * (d - 177.3) } else { 0.0 };
    let ppl = loss_percent.clamp(0.0, 100.0);
    let ie_eff = codec.ie + (95.0 - codec.ie) * ppl / (ppl + codec.bpl);
    let r = 93.2 - id - ie_eff;
    let m = if r < 0.0 {
        1.0
    } else if r > 100.0 {
        4.5
    } else {
        1.0 + 0.035 * r + 7e-6 * r * (r - 60.0) * (100.0 - r)
    };
    (m.clamp(1.0, 4.5) * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_g711_on_a_lan_is_near_4_4() {
        let m = mos(0.0, 0.5, 20.0, G711);
        assert!((4.35..=4.45).contains(&m), "{m}");
    }

    #[test]
    fn loss_and_jitter_lower_the_score() {
        let clean = mos(0.0, 1.0, 20.0, G711);
        let lossy = mos(5.0, 1.0, 20.0, G711);
        let jittery = mos(0.0, 120.0, 20.0, G711);
        assert!(lossy < clean && jittery < clean);
        assert!(mos(5.0, 1.0, 20.0, G729) < lossy);
        assert_eq!(mos(100.0, 500.0, 20.0, G711), 1.0);
    }
}

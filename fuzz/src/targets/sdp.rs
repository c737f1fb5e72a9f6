//! Bytes -> `SessionDescription::parse`, then every query the dialog and media layers
//! make of it.

use calltap::sip::SessionDescription;
use std::hint::black_box;

/// One input through the target.
pub fn run(data: &[u8]) {
    let Ok(sdp) = SessionDescription::parse(data) else {
        return;
    };
    black_box((sdp.audio_rtp_addr(), sdp.audio_direction()));
    black_box((sdp.is_on_hold(), sdp.is_encrypted()));
    for m in &sdp.media {
        black_box((sdp.connection_of(m), sdp.direction_of(m)));
        black_box((m.is_encrypted(), m.is_declined(), m.payload_type_of("PCMA")));
        for &pt in &m.payload_types {
            black_box((m.codec_name(pt), m.clock_rate(pt), m.fmtp(pt)));
        }
    }
    if let Some(a) = sdp.audio() {
        black_box(a.codec_name(0));
    }
}

//! A recording's two channels drawn as SVG on the server: the peaks (lowest and highest
//! sample) of each of [`BUCKETS`] slices of the call, operator (left channel) above,
//! client (right channel) below.
//!
//! hound reads and checks the header; the samples are then read in large blocks and
//! decoded here, since a one-hour call is 57.6 million samples and a per-sample reader
//! takes several times longer over them (benches/ui.rs).

use std::fmt::Write as _;
use std::io::Read;
use std::path::Path;

/// Slices drawn: one per pixel of the drawing's width.
pub(crate) const BUCKETS: usize = 600;
/// Height of one channel's band, px.
const BAND: usize = 70;
/// Bytes read at a time (a whole number of stereo frames).
const BLOCK: usize = 4 << 20;

/// The peaks of each channel per slice: (lowest, highest).
#[derive(Debug, PartialEq)]
pub(crate) struct Peaks {
    pub(crate) channels: Vec<Vec<(i16, i16)>>,
}

/// The peaks of the 16-bit PCM WAV at `path`.
pub(crate) fn peaks(path: &Path) -> Result<Peaks, String> {
    let reader = hound::WavReader::open(path).map_err(|e| format!("cannot read the WAV: {e}"))?;
    let spec = reader.spec();
    if spec.sample_format != hound::SampleFormat::Int || spec.bits_per_sample != 16 {
        return Err(format!(
            "the WAV holds {}-bit {:?} samples; the waveform is drawn from 16-bit PCM",
            spec.bits_per_sample, spec.sample_format
        ));
    }
    let channels = usize::from(spec.channels.clamp(1, 2));
    let frame_bytes = usize::from(spec.channels) * 2;
    let frames = reader.duration() as usize;
    let per_bucket = frames.div_ceil(BUCKETS).max(1);
    let buckets = frames.div_ceil(per_bucket).min(BUCKETS);
    let mut out = vec![Vec::with_capacity(buckets); channels];
    let mut data = reader.into_inner().take((frames * frame_bytes) as u64);
    let mut block = vec![0u8; BLOCK];
    let mut carry = 0usize;
    // The slice being read: its peaks per channel, and the frames it still takes.
    let mut peak = [(0i16, 0i16); 2];
    let mut left = per_bucket;
    loop {
        let n = data
            .read(&mut block[carry..])
            .map_err(|e| format!("cannot read the WAV's samples: {e}"))?;
        let have = carry + n;
        let whole = have / frame_bytes * frame_bytes;
        for frame in block[..whole].chunks_exact(frame_bytes) {
            for (ch, p) in peak.iter_mut().enumerate().take(channels) {
                let v = i16::from_le_bytes([frame[2 * ch], frame[2 * ch + 1]]);
                p.0 = p.0.min(v);
                p.1 = p.1.max(v);
            }
            left -= 1;
            if left == 0 {
                for (ch, slices) in out.iter_mut().enumerate() {
                    slices.push(peak[ch]);
                }
                peak = [(0, 0); 2];
                left = per_bucket;
            }
        }
        block.copy_within(whole..have, 0);
        carry = have - whole;
        if n == 0 {
            break;
        }
    }
    if left < per_bucket {
        for (ch, slices) in out.iter_mut().enumerate() {
            slices.push(peak[ch]);
        }
    }
    for slices in &mut out {
        slices.truncate(BUCKETS);
    }
    Ok(Peaks { channels: out })
}

/// The SVG of `peaks`, with the channels named by `names`.
pub(crate) fn svg(peaks: &Peaks, names: [&str; 2]) -> String {
    let bands = peaks.channels.len();
    let height = BAND * bands;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {BUCKETS} {height}\" \
         preserveAspectRatio=\"none\" width=\"100%\" height=\"{height}\" role=\"img\" \
         aria-label=\"waveform: {} above, {} below\">\
         <style>path{{stroke:#2b6cb0;stroke-width:1}}.c1 path{{stroke:#c05621}}\
         text{{font:11px sans-serif;fill:#555}}line{{stroke:#ccc}}</style>",
        names[0], names[1]
    );
    for (c, slots) in peaks.channels.iter().enumerate() {
        let mid = (BAND * c + BAND / 2) as f64;
        let scale = (BAND / 2 - 2) as f64 / 32768.0;
        let _ = write!(out, "<g class=\"c{c}\"><line x1=\"0\" y1=\"{mid}\" x2=\"{BUCKETS}\" y2=\"{mid}\"/><path d=\"");
        for (x, &(low, high)) in slots.iter().enumerate() {
            let top = mid - f64::from(high) * scale;
            let bottom = (mid - f64::from(low) * scale).max(top + 0.5);
            let _ = write!(out, "M{x}.5 {top:.1}V{bottom:.1}");
        }
        let name = names.get(c).copied().unwrap_or("");
        let _ = write!(
            out,
            "\"/><text x=\"4\" y=\"{}\">{name}</text></g>",
            BAND * c + 12
        );
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_channel_keeps_its_own_peaks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.wav");
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&path, spec).unwrap();
        // 1,200 frames: two per slice. Left loud in the first half, right in the second.
        for i in 0..1200i32 {
            let (l, r) = if i < 600 { (1000, 0) } else { (0, -2000) };
            let sign = if i % 2 == 0 { 1 } else { -1 };
            w.write_sample((l * sign) as i16).unwrap();
            w.write_sample((r * sign) as i16).unwrap();
        }
        w.finalize().unwrap();
        let p = peaks(&path).unwrap();
        assert_eq!(p.channels.len(), 2);
        assert_eq!(p.channels[0].len(), BUCKETS);
        assert_eq!(p.channels[0][0], (-1000, 1000));
        assert_eq!(p.channels[0][599], (0, 0));
        assert_eq!(p.channels[1][0], (0, 0));
        assert_eq!(p.channels[1][599], (-2000, 2000));
        let svg = svg(&p, ["operator", "client"]);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert_eq!(svg.matches("<path").count(), 2, "one path a channel");
    }

    #[test]
    fn a_file_that_is_no_wav_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.wav");
        std::fs::write(&path, b"not a wav at all").unwrap();
        assert!(peaks(&path).is_err());
    }
}

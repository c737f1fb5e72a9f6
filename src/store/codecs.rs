//! The lossy encoder of stored recordings: a stereo 16-bit WAV to MP3, held in memory
//! (a tenth of the PCM or less), never the PCM; `convert` writes it out.
//!
//! Not Opus: opus-rs's encoder (the pure-Rust one calltap decodes RTP Opus with) makes
//! streams that libopus, what players use, decodes with loud artefacts on two-tone
//! speech-like signals (measured: bursts at 4x the source's level), and libopus itself
//! needs cmake to build.

use std::fs::File;
use std::io::{self, BufReader};

type Wav = hound::WavReader<BufReader<File>>;

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// Reads the WAV's interleaved frames a block at a time: `block` frames each (the last
/// zero-padded), with how many of them are real. A WAV cut inside a frame loses the
/// part frame; a read error fails the encode (the WAV is kept).
fn blocks(
    reader: Wav,
    block: usize,
    mut each: impl FnMut(&[i16], usize) -> io::Result<()>,
) -> io::Result<()> {
    let channels = usize::from(reader.spec().channels);
    let mut buf = Vec::with_capacity(block * channels);
    let mut samples = reader.into_samples::<i16>();
    loop {
        buf.clear();
        for s in samples.by_ref().take(block * channels) {
            buf.push(s.map_err(|e| invalid(format!("read the WAV: {e}")))?);
        }
        let frames = buf.len() / channels;
        if frames == 0 {
            return Ok(());
        }
        buf.resize(block * channels, 0);
        each(&buf, frames)?;
        if frames < block {
            return Ok(());
        }
    }
}

/// MP3 of a stereo WAV: LAME, plain stereo (joint stereo would code the parties as mid
/// and side), `bitrate` bits a second, no VBR tag (a constant rate seeks by arithmetic).
#[cfg(feature = "mp3")]
pub fn mp3(reader: Wav, bitrate: u32) -> io::Result<Vec<u8>> {
    use mp3lame_encoder::{Bitrate, Builder, DualPcm, FlushNoGap, Mode, Quality};
    let spec = reader.spec();
    if spec.channels != 2 {
        return Err(invalid(format!("{} channels, not 2", spec.channels)));
    }
    let lame = |e: mp3lame_encoder::BuildError| invalid(format!("LAME: {e:?}"));
    let rate = match bitrate / 1000 {
        16 => Bitrate::Kbps16,
        24 => Bitrate::Kbps24,
        32 => Bitrate::Kbps32,
        40 => Bitrate::Kbps40,
        48 => Bitrate::Kbps48,
        64 => Bitrate::Kbps64,
        other => return Err(invalid(format!("{other} kbit/s is not an MP3 rate here"))),
    };
    let mut b = Builder::new().ok_or_else(|| invalid("LAME: no memory".into()))?;
    b.set_num_channels(2).map_err(lame)?;
    b.set_sample_rate(spec.sample_rate).map_err(lame)?;
    b.set_brate(rate).map_err(lame)?;
    b.set_mode(Mode::Stereo).map_err(lame)?;
    b.set_quality(Quality::Good).map_err(lame)?;
    b.set_to_write_vbr_tag(false).map_err(lame)?;
    let mut encoder = b.build().map_err(lame)?;
    let mut out = Vec::new();
    let block = 4096;
    let (mut left, mut right) = (Vec::with_capacity(block), Vec::with_capacity(block));
    blocks(reader, block, |pcm, real| {
        left.clear();
        right.clear();
        for f in pcm.chunks_exact(2).take(real) {
            left.push(f[0]);
            right.push(f[1]);
        }
        out.reserve(mp3lame_encoder::max_required_buffer_size(real));
        encoder
            .encode_to_vec(
                DualPcm {
                    left: &left,
                    right: &right,
                },
                &mut out,
            )
            .map_err(|e| invalid(format!("LAME encode: {e:?}")))?;
        Ok(())
    })?;
    out.reserve(7200);
    encoder
        .flush_to_vec::<FlushNoGap>(&mut out)
        .map_err(|e| invalid(format!("LAME flush: {e:?}")))?;
    Ok(out)
}

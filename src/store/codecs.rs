//! The lossy encoders of stored recordings: a stereo 16-bit WAV to Ogg Opus (RFC 7845)
//! or MP3. Each holds the encoded file in memory (a tenth of the PCM or less), never
//! the PCM; `convert` writes it out.

use std::fs::File;
use std::io::{self, BufReader};

use ogg::writing::PacketWriteEndInfo;

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

/// Opus's encoder delay at 48 kHz for the rates a recording has (8 and 16 kHz):
/// libopus's lookahead, 2.5 ms + 4 ms, which a player skips (OpusHead's pre-skip).
const PRE_SKIP_48K: u16 = 312;
/// Packets an Ogg page holds: one second of 20 ms packets.
const PACKETS_PER_PAGE: usize = 50;

/// Ogg Opus of a stereo WAV at 8 or 16 kHz: 20 ms packets, VoIP tuning, `bitrate` bits
/// a second; the channels stay the two parties (stereo coding, kept apart at 24 kbit/s
/// and above: src/config/mod.rs).
pub fn ogg_opus(reader: Wav, bitrate: u32) -> io::Result<Vec<u8>> {
    let spec = reader.spec();
    if spec.channels != 2 {
        return Err(invalid(format!("{} channels, not 2", spec.channels)));
    }
    let rate = spec.sample_rate;
    let mut encoder = opus_rs::OpusEncoder::new(
        i32::try_from(rate).map_err(|_| invalid(format!("rate {rate}")))?,
        2,
        opus_rs::Application::Voip,
    )
    .map_err(|e| invalid(format!("Opus encoder at {rate} Hz: {e}")))?;
    encoder.bitrate_bps = i32::try_from(bitrate).unwrap_or(i32::MAX);
    let frame = rate as usize / 50;
    let to_48k = 48_000 / u64::from(rate);

    let mut out = Vec::new();
    let mut w = ogg::PacketWriter::new(&mut out);
    // One logical stream per file; the serial only has to be unique within it.
    let serial = 0x6361_6c6c;
    let mut head = Vec::with_capacity(19);
    head.extend_from_slice(b"OpusHead");
    head.push(1);
    head.push(2);
    head.extend_from_slice(&PRE_SKIP_48K.to_le_bytes());
    head.extend_from_slice(&rate.to_le_bytes());
    head.extend_from_slice(&0i16.to_le_bytes());
    head.push(0);
    w.write_packet(head, serial, PacketWriteEndInfo::EndPage, 0)?;
    let vendor = concat!("calltap ", env!("CARGO_PKG_VERSION"));
    let mut tags = b"OpusTags".to_vec();
    tags.extend_from_slice(&(vendor.len() as u32).to_le_bytes());
    tags.extend_from_slice(vendor.as_bytes());
    tags.extend_from_slice(&0u32.to_le_bytes());
    w.write_packet(tags, serial, PacketWriteEndInfo::EndPage, 0)?;

    // Packets are written one behind, so the last can end the stream with the exact
    // length as its granule position (a player drops the padding after it).
    let mut held: Option<Vec<u8>> = None;
    let (mut frames_done, mut packets) = (0u64, 0usize);
    let mut packet = [0u8; 1500];
    blocks(reader, frame, |pcm, real| {
        let n = encoder
            .encode_i16(pcm, frame, &mut packet)
            .map_err(|e| invalid(format!("Opus encode: {e}")))?;
        if let Some(prev) = held.take() {
            packets += 1;
            let end = if packets % PACKETS_PER_PAGE == 0 {
                PacketWriteEndInfo::EndPage
            } else {
                PacketWriteEndInfo::NormalPacket
            };
            let granule = u64::from(PRE_SKIP_48K) + frames_done * to_48k;
            w.write_packet(prev, serial, end, granule)?;
        }
        frames_done += real as u64;
        held = Some(packet[..n].to_vec());
        Ok(())
    })?;
    let last = match held {
        Some(p) => p,
        // An empty WAV: one packet of silence, so the stream is a valid Opus stream.
        None => {
            let n = encoder
                .encode_i16(&vec![0; 2 * frame], frame, &mut packet)
                .map_err(|e| invalid(format!("Opus encode: {e}")))?;
            packet[..n].to_vec()
        }
    };
    let granule = u64::from(PRE_SKIP_48K) + frames_done * to_48k;
    w.write_packet(last, serial, PacketWriteEndInfo::EndStream, granule)?;
    drop(w);
    Ok(out)
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

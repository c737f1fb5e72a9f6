//! The lossy encoders of stored recordings: a stereo 16-bit WAV to Ogg Opus (RFC 7845)
//! or MP3, held in memory (a tenth of the PCM or less), never the PCM; `convert` writes
//! it out.

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

/// An Opus frame length as RFC 6716 3.2.1 writes it: one octet below 252, else two.
fn push_length(out: &mut Vec<u8>, len: usize) -> io::Result<()> {
    if len < 252 {
        out.push(len as u8);
    } else if len <= 1275 {
        let first = 252 + (len & 3);
        out.push(first as u8);
        out.push(((len - first) / 4) as u8);
    } else {
        return Err(invalid(format!("Opus frame of {len} octets")));
    }
    Ok(())
}

/// `packet` in self-delimiting framing (RFC 6716 Appendix B), as every stream but the
/// last of a multistream packet carries it: the last frame's length written out. The
/// encoder here makes one 20 ms frame a packet (code 0), or two (codes 1 and 2).
fn self_delimited(packet: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
    let Some((&toc, rest)) = packet.split_first() else {
        return Err(invalid("empty Opus packet".into()));
    };
    out.push(toc);
    match toc & 3 {
        0 => push_length(out, rest.len())?,
        1 => push_length(out, rest.len() / 2)?,
        2 => {
            // N1 is there already (one or two octets); N2 is what is left after frame 1.
            let (n1, n1_octets) = match rest {
                [a, ..] if *a < 252 => (usize::from(*a), 1),
                [a, b, ..] => (usize::from(*b) * 4 + usize::from(*a), 2),
                _ => return Err(invalid("Opus packet cut in its length".into())),
            };
            let n2 = rest
                .len()
                .checked_sub(n1_octets + n1)
                .ok_or_else(|| invalid("Opus packet shorter than its first frame".into()))?;
            out.extend_from_slice(&rest[..n1_octets]);
            push_length(out, n2)?;
            out.extend_from_slice(&rest[n1_octets..]);
            return Ok(());
        }
        _ => return Err(invalid("Opus packet of code 3 from the encoder".into())),
    }
    out.extend_from_slice(rest);
    Ok(())
}

/// Ogg Opus of a stereo WAV at 8 or 16 kHz, 20 ms packets, VoIP tuning, `bitrate` bits
/// a second. Each party is its own mono Opus stream (channel mapping family 1: two
/// streams, none coupled), so the two are never coded together: coupled stereo leaks
/// one party into the other's channel at speech rates (-4.7 dB at 16 kbit/s, measured
/// on speech against silence).
pub fn ogg_opus(reader: Wav, bitrate: u32) -> io::Result<Vec<u8>> {
    let spec = reader.spec();
    if spec.channels != 2 {
        return Err(invalid(format!("{} channels, not 2", spec.channels)));
    }
    let rate = spec.sample_rate;
    let new_encoder = || {
        let mut e = opus_rs::OpusEncoder::new(
            i32::try_from(rate).map_err(|_| invalid(format!("rate {rate}")))?,
            1,
            opus_rs::Application::Voip,
        )
        .map_err(|e| invalid(format!("Opus encoder at {rate} Hz: {e}")))?;
        e.bitrate_bps = i32::try_from(bitrate / 2).unwrap_or(i32::MAX);
        Ok::<_, io::Error>(e)
    };
    let mut encoders = [new_encoder()?, new_encoder()?];
    let frame = rate as usize / 50;
    let to_48k = 48_000 / u64::from(rate);

    let mut out = Vec::new();
    let mut w = ogg::PacketWriter::new(&mut out);
    // One logical stream per file; the serial only has to be unique within it.
    let serial = 0x6361_6c6c;
    let mut head = Vec::with_capacity(23);
    head.extend_from_slice(b"OpusHead");
    head.push(1);
    head.push(2);
    head.extend_from_slice(&PRE_SKIP_48K.to_le_bytes());
    head.extend_from_slice(&rate.to_le_bytes());
    head.extend_from_slice(&0i16.to_le_bytes());
    // Mapping family 1: two streams, none coupled; channel 0 from stream 0, 1 from 1.
    head.extend_from_slice(&[1, 2, 0, 0, 1]);
    w.write_packet(head, serial, PacketWriteEndInfo::EndPage, 0)?;
    let vendor = concat!("calltap ", env!("CARGO_PKG_VERSION"));
    let mut tags = b"OpusTags".to_vec();
    tags.extend_from_slice(&(vendor.len() as u32).to_le_bytes());
    tags.extend_from_slice(vendor.as_bytes());
    tags.extend_from_slice(&0u32.to_le_bytes());
    w.write_packet(tags, serial, PacketWriteEndInfo::EndPage, 0)?;

    let mut mono = vec![0i16; frame];
    let mut packet = [0u8; 1500];
    let mut encode = |pcm: &[i16]| -> io::Result<Vec<u8>> {
        let mut multi = Vec::with_capacity(256);
        for (ch, encoder) in encoders.iter_mut().enumerate() {
            for (m, f) in mono.iter_mut().zip(pcm.chunks_exact(2)) {
                *m = f[ch];
            }
            let n = encoder
                .encode_i16(&mono, frame, &mut packet)
                .map_err(|e| invalid(format!("Opus encode: {e}")))?;
            if ch == 0 {
                self_delimited(&packet[..n], &mut multi)?;
            } else {
                multi.extend_from_slice(&packet[..n]);
            }
        }
        Ok(multi)
    };

    // RFC 7845 4: a page's granule position counts decoded samples at 48 kHz from the
    // stream's start, pre-skip included; the last one is pre-skip plus the audio's
    // length, and the decoder drops what lies beyond. Packets are written one behind so
    // that the last can carry it; silent packets follow the audio until the encoder's
    // delay is out too.
    let mut held: Option<Vec<u8>> = None;
    let (mut frames_done, mut packets) = (0u64, 0u64);
    let write = |w: &mut ogg::PacketWriter<&mut Vec<u8>>, packet: Vec<u8>, packets: u64| {
        let end = if packets % PACKETS_PER_PAGE as u64 == 0 {
            PacketWriteEndInfo::EndPage
        } else {
            PacketWriteEndInfo::NormalPacket
        };
        w.write_packet(packet, serial, end, packets * frame as u64 * to_48k)
    };
    blocks(reader, frame, |pcm, real| {
        let packet = encode(pcm)?;
        if let Some(prev) = held.replace(packet) {
            packets += 1;
            write(&mut w, prev, packets)?;
        }
        frames_done += real as u64;
        Ok(())
    })?;
    let pre_skip_frames = u64::from(PRE_SKIP_48K) / to_48k;
    let silence = vec![0; 2 * frame];
    while held.is_none() || (packets + 1) * (frame as u64) < frames_done + pre_skip_frames {
        let packet = encode(&silence)?;
        if let Some(prev) = held.replace(packet) {
            packets += 1;
            write(&mut w, prev, packets)?;
        }
    }
    let granule = u64::from(PRE_SKIP_48K) + frames_done * to_48k;
    if let Some(last) = held {
        w.write_packet(last, serial, PacketWriteEndInfo::EndStream, granule)?;
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_delimiting_framing_writes_the_last_frames_length() {
        let mut out = Vec::new();
        self_delimited(&[0b0000_1000, 1, 2, 3], &mut out).expect("code 0");
        assert_eq!(out, [0b0000_1000, 3, 1, 2, 3]);
        out.clear();
        let mut packet = vec![0b0000_1000];
        packet.extend_from_slice(&[7u8; 300]);
        self_delimited(&packet, &mut out).expect("code 0, long");
        // 300 = 252 + 0 + 4 * 12.
        assert_eq!(&out[..3], [0b0000_1000, 252, 12]);
        out.clear();
        self_delimited(&[0b0000_1010, 2, 9, 9, 5, 5, 5], &mut out).expect("code 2");
        assert_eq!(out, [0b0000_1010, 2, 3, 9, 9, 5, 5, 5]);
        assert!(self_delimited(&[0b0000_1011, 1], &mut Vec::new()).is_err());
        assert!(self_delimited(&[], &mut Vec::new()).is_err());
    }
}

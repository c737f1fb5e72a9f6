//! Capture file bytes -> `CaptureReader`, every frame read. The source hands out the
//! bytes in reads of a size the first byte picks, so the buffer refill and resync paths
//! see records split at every point.

use std::io::{self, Read};

use super::super::touch;
use calltap::capture::file::CaptureReader;

struct Dribble<'a> {
    data: &'a [u8],
    chunk: usize,
}

impl Read for Dribble<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.chunk).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

fn read_all<R: Read>(source: R, len: usize) {
    let Ok(mut reader) = CaptureReader::new("fuzz", source) else {
        return;
    };
    let mut results = 0usize;
    while let Some(next) = reader.next_frame() {
        match next {
            Ok(frame) => {
                assert!(frame.data.len() <= 262_144, "frame over MAX_FRAME_LEN");
                std::hint::black_box(touch(frame.data));
            }
            Err(e) => {
                // Errors name the file and a byte offset inside it.
                assert!(
                    e.offset <= len as u64,
                    "offset {} past the end {len}",
                    e.offset
                );
                std::hint::black_box(e.to_string());
            }
        }
        results += 1;
        // Every result consumes at least a record header: a loop that does not is a hang.
        assert!(
            results <= len / 12 + 2,
            "more results than the input has records"
        );
        assert!(reader.position() <= len as u64);
    }
}

/// One input through the target.
pub fn run(data: &[u8]) {
    read_all(data, data.len());
    if let Some((&first, rest)) = data.split_first() {
        let chunk = usize::from(first % 64) + 1;
        read_all(Dribble { data: rest, chunk }, rest.len());
    }
}

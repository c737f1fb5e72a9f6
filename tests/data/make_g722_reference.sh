#!/bin/sh
# Makes the G.722 reference pair tests/media.rs checks the decoder against:
#   g722_chirp.g722      2 s of a 16 kHz chirp (100 Hz -> 7 kHz, amplitude 8000, then
#                        speech-like amplitude steps), encoded by ffmpeg's G.722 encoder
#   g722_chirp.ffmpeg.s16 the same bitstream decoded by ffmpeg (16 kHz s16le mono)
# Needs python3 and ffmpeg (Debian: apt-get install ffmpeg). Run from this folder.
set -eu
python3 - <<'PY'
import math, struct
rate, secs = 16000, 2.0
n = int(rate * secs)
out = bytearray()
phase = 0.0
for i in range(n):
    t = i / rate
    f = 100 + (7000 - 100) * (t / secs)
    phase += 2 * math.pi * f / rate
    amp = 8000 * (1.0 if int(t * 5) % 3 else 0.3)
    out += struct.pack('<h', int(round(amp * math.sin(phase))))
open('g722_chirp.src.s16', 'wb').write(out)
PY
ffmpeg -loglevel error -y -f s16le -ar 16000 -ac 1 -i g722_chirp.src.s16 -c:a g722 -f g722 g722_chirp.g722
ffmpeg -loglevel error -y -f g722 -i g722_chirp.g722 -f s16le -ar 16000 -ac 1 g722_chirp.ffmpeg.s16
rm g722_chirp.src.s16

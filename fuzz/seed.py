#!/usr/bin/env python3
"""Seeds fuzz/corpus/<target>/ from captures and SIP messages on disk, at run time.

Sources: the project's pcaps/ and, when present, ../shared/pcaps and
../shared/sip-torture (the shared files are read, never copied into the repository:
corpus/ is git-ignored). Usage, from anywhere:

    python3 fuzz/seed.py [--shared DIR]

Writes the inputs each target expects (see fuzz/src/lib.rs for the record formats).
"""
import argparse
import hashlib
import re
import struct
from pathlib import Path

FUZZ = Path(__file__).resolve().parent
REPO = FUZZ.parent
# LINKS in src/lib.rs: the record's low nibble is the index of the link type.
LINKS = [1, 0, 108, 101, 228, 229, 113, 276]
CAPTURE_CAP = 64 * 1024  # libFuzzer runs faster on small inputs; a prefix is still a capture
FRAMES_PER_SEED = 16
SEEDS_PER_CAPTURE = 24
START = re.compile(
    rb"(?:INVITE|ACK|BYE|CANCEL|OPTIONS|REGISTER|PRACK|UPDATE|REFER|NOTIFY|SUBSCRIBE|"
    rb"MESSAGE|INFO|PUBLISH) [^\r\n ]+ SIP/2\.0\r?\n|SIP/2\.0 [1-6][0-9][0-9] "
)


def frames(path):
    """(linktype, bytes) of each frame of a pcap or pcapng file; stops at damage."""
    data = path.read_bytes()
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        e = "<" if magic[0] in (0xD4, 0x4D) else ">"
        link = struct.unpack(e + "I", data[20:24])[0]
        pos = 24
        while pos + 16 <= len(data):
            incl = struct.unpack(e + "I", data[pos + 8 : pos + 12])[0]
            if incl > 262144 or pos + 16 + incl > len(data):
                return
            yield link, data[pos + 16 : pos + 16 + incl]
            pos += 16 + incl
    elif magic == b"\x0a\x0d\x0d\x0a":
        e, links, pos = "<", [], 0
        while pos + 12 <= len(data):
            if data[pos : pos + 4] == b"\x0a\x0d\x0d\x0a":
                e = "<" if data[pos + 8 : pos + 12] == b"\x4d\x3c\x2b\x1a" else ">"
                links = []
            btype, blen = struct.unpack(e + "II", data[pos : pos + 8])
            if blen < 12 or pos + blen > len(data):
                return
            body = data[pos + 8 : pos + blen - 4]
            if btype == 1 and len(body) >= 2:
                links.append(struct.unpack(e + "H", body[:2])[0])
            elif btype == 6 and len(body) >= 20:
                iface, _, _, cap = struct.unpack(e + "IIII", body[:16])
                if iface < len(links):
                    yield links[iface], body[20 : 20 + cap]
            pos += blen


def ring_block(ethernet_frames, cooked):
    """A retired TPACKET_V3 block as the kernel lays it out (x86-64): the block header,
    then per packet a tpacket3_hdr, a sockaddr_ll and the frame at tp_mac, chained by
    tp_next_offset. Cooked blocks carry the frame without its Ethernet header."""
    mac, packets = 96, []
    for f in ethernet_frames:
        data = f[14:] if cooked else f
        head = bytearray(mac)
        struct.pack_into("<IIIII", head, 0, 0, 1772600000, 5000, len(data), len(data))
        struct.pack_into("<H", head, 24, mac)
        # sockaddr_ll: AF_PACKET, ETH_P_IP, ifindex 1, ARPHRD_ETHER, PACKET_HOST, halen 6.
        struct.pack_into("<HHiHBB", head, 48, 17, 0x0008, 1, 1, 0, 6)
        p = bytes(head) + data
        packets.append(p + b"\0" * (-len(p) % 16))
    body = b"".join(
        struct.pack("<I", len(p) if i + 1 < len(packets) else 0) + p[4:] for i, p in enumerate(packets)
    )
    first = 48
    head = bytearray(first)
    struct.pack_into("<IIIII", head, 0, 3, 0, 1, len(packets), first)
    return bytes(head) + body


def frame_record(link, data, step=1):
    nibble = LINKS.index(link) if link in LINKS else 8
    data = data[:65535]
    return bytes([(step << 4) | nibble]) + struct.pack("<H", len(data)) + data


def udp_sip_record(payload, reverse=False, step=1):
    payload = payload[:65535]
    return bytes([0x80 | (step << 4) | int(reverse)]) + struct.pack("<H", len(payload)) + payload


def segment_records(messages):
    """A SYN, then each message in segments of at most 255 bytes, on a SIP port."""
    out = bytearray([0x80 | 0x04, 0, 0, 0])
    for m in messages:
        for i in range(0, len(m), 255):
            part = m[i : i + 255]
            out += bytes([0x80 | 0x20, 0, 0, len(part)]) + part
    return bytes(out)


class Corpus:
    def __init__(self):
        self.counts = {}

    def add(self, target, data):
        if not data:
            return
        d = FUZZ / "corpus" / target
        d.mkdir(parents=True, exist_ok=True)
        f = d / hashlib.sha1(data).hexdigest()
        if not f.exists():
            f.write_bytes(data)
            self.counts[target] = self.counts.get(target, 0) + 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=REPO.parent / "shared")
    args = ap.parse_args()
    captures = sorted((REPO / "pcaps").glob("*.pcap*"))
    if (args.shared / "pcaps").is_dir():
        captures += sorted(p for p in (args.shared / "pcaps").iterdir() if p.suffix in (".pcap", ".pcapng", ".cap"))
    corpus = Corpus()
    sip_messages = []
    for path in captures:
        raw = path.read_bytes()
        corpus.add("capture_file", raw[:CAPTURE_CAP])
        corpus.add("engine", raw[:CAPTURE_CAP])
        group, seeds, found = [], 0, []
        for link, data in frames(path):
            m = START.search(data)
            if m:
                found.append(data[m.start() :])
            if seeds < SEEDS_PER_CAPTURE:
                group.append(frame_record(link, data))
                if len(group) == FRAMES_PER_SEED:
                    corpus.add("frame_decoder", b"".join(group))
                    group, seeds = [], seeds + 1
        if group:
            corpus.add("frame_decoder", b"".join(group))
        ethernet = [d for link, d in frames(path) if link == 1][:6]
        if ethernet:
            # The first byte picks the socket kind: 0 raw, 1 cooked.
            corpus.add("live_block", b"\x00" + ring_block(ethernet, cooked=False))
            corpus.add("live_block", b"\x01" + ring_block(ethernet, cooked=True))
        sip_messages += found[:200]
    torture = args.shared / "sip-torture"
    if torture.is_dir():
        sip_messages += [p.read_bytes() for p in sorted(torture.glob("*.dat"))]
    for m in sip_messages:
        corpus.add("sip_message", m)
        i = m.find(b"\nv=0")
        if i >= 0:
            corpus.add("sdp", m[i + 1 :])
    # Dialog-shaped sequences: the SIP messages of each capture, in order, as UDP
    # records between the two SIP ports, and as TCP segments.
    for i in range(0, len(sip_messages), 8):
        batch = sip_messages[i : i + 8]
        corpus.add("engine", b"".join(udp_sip_record(m, reverse=(j % 2 == 1)) for j, m in enumerate(batch)))
        corpus.add("frame_decoder", b"".join(udp_sip_record(m) for m in batch[:2]))
        corpus.add("tcp_streams", segment_records(batch[:3]))
    for target, n in sorted(corpus.counts.items()):
        print(f"{target:14} {n:5} seeds")


if __name__ == "__main__":
    main()

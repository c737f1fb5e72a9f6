//! Conversations through a back-to-back user agent (Asterisk, FreeSWITCH): each one is
//! several dialogs with their own Call-IDs, the way a recorder beside such a PBX sees
//! them (test_voip.pcap.pcapng in ../shared/pcaps is a real one). The PBX re-originates
//! every call: an inbound leg (trunk or phone -> PBX) and the legs it places for it
//! (PBX -> phone, one per ringing phone of a queue; PBX -> trunk).
//!
//! The builders here write the scenarios the correlation tests replay; each is a
//! [`Scenario`], so it is also a file one can open in Wireshark.

use std::net::IpAddr;
use std::time::Duration;

use crate::capture::Timestamp;

use super::call::{Party, DEFAULT_START};
use super::scenario::{Dialog, Reply, Req, Scenario, Tx, Ua};

/// The PBX of every scenario here.
pub const PBX_ADDR: &str = "10.0.0.5";
/// The SIP provider.
pub const TRUNK_ADDR: &str = "203.0.113.10";
/// The company's public number, dialled by clients (the DID).
pub const DID: &str = "+15551230000";
/// The client of the scenarios.
pub const CLIENT: &str = "+15551230199";

/// The configuration the scenarios are written for.
pub const CONFIG: &str = r#"
[network]
pbx = ["10.0.0.5"]
trunks = ["203.0.113.0/24"]
internal = ["10.0.0.0/16"]
"#;

/// Capture time `ms` milliseconds after the scenarios' start.
pub fn at(ms: u64) -> Timestamp {
    DEFAULT_START.saturating_add(Duration::from_millis(ms))
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("an address")
}

/// The trunk, presenting `number` as the caller (or called) party.
pub fn trunk(number: &str) -> Ua {
    Ua::new(number, ip(TRUNK_ADDR))
        .rtp_port(30_000)
        .user_agent("Carrier SBC 4.2")
}

/// The PBX, naming the party it presents as `user`.
pub fn pbx(user: &str) -> Ua {
    Ua::new(user, ip(PBX_ADDR)).user_agent("Asterisk PBX 20.5.0")
}

/// An operator's phone, extension `ext` (200..299).
pub fn phone(ext: &str) -> Ua {
    let last: u8 = (ext.parse::<u16>().unwrap_or(200) % 100) as u8;
    Ua::new(ext, ip(&format!("10.0.1.{}", 20 + last)))
        .display(&format!("Operator {ext}"))
        .rtp_port(16_000 + u16::from(last) * 2)
        .user_agent("Yealink SIP-T46U 66.86.0.15")
}

/// INVITE at `ms`, 100 Trying, 180 Ringing 50 ms later.
pub fn ring(d: &mut Dialog, ms: u64) -> Tx {
    let inv = d.invite(at(ms));
    d.reply(at(ms + 2), &inv, 100);
    d.reply(at(ms + 50), &inv, 180);
    inv
}

/// INVITE at `ms` with one extra header, then 100 and 180.
pub fn ring_with(d: &mut Dialog, ms: u64, header: (&str, &str)) -> Tx {
    let inv = d.invite_with(
        at(ms),
        Req::new("INVITE")
            .sdp(super::scenario::SdpKind::Direction("sendrecv"))
            .header(header.0, header.1),
    );
    d.reply(at(ms + 2), &inv, 100);
    d.reply(at(ms + 50), &inv, 180);
    inv
}

/// 200 OK with SDP at `ms`, ACK 3 ms later.
pub fn answer(d: &mut Dialog, inv: &Tx, ms: u64) {
    d.reply(at(ms), inv, Reply::new(200).answer());
    d.ack(at(ms + 3), inv);
}

/// CANCEL at `ms`, its 200, the INVITE's 487 and the ACK.
pub fn cancel(d: &mut Dialog, inv: &Tx, ms: u64) {
    let c = d.cancel(at(ms), inv);
    d.reply(at(ms + 1), &c, 200);
    d.reply(at(ms + 2), inv, 487);
    d.ack_failure(at(ms + 3), inv);
}

/// BYE from `from` at `ms`, answered 200.
pub fn hang_up(d: &mut Dialog, from: Party, ms: u64) {
    let bye = d.bye(at(ms), from);
    d.reply(at(ms + 2), &bye, 200);
}

/// The inbound trunk leg of an incoming call from `client` to the DID.
pub fn trunk_in(seed: u64, client: &str) -> Dialog {
    Dialog::new(seed, trunk(client), pbx(DID))
}

/// A PBX -> phone leg presenting `client` as the caller.
pub fn to_phone(seed: u64, client: &str, ext: &str) -> Dialog {
    Dialog::new(seed, pbx(client), phone(ext))
}

/// Incoming: the client calls the DID at 0; the PBX rings 201 at 20 ms; 201 answers at
/// 5 s (the trunk leg is answered 10 ms later); the client hangs up at 65 s, the PBX
/// relays the BYE to the phone 5 ms later.
pub fn incoming_answered(seed: u64) -> Scenario {
    let mut t = trunk_in(seed, CLIENT);
    let ti = ring(&mut t, 0);
    let mut p = to_phone(seed + 1, CLIENT, "201");
    let pi = ring(&mut p, 20);
    answer(&mut p, &pi, 5_000);
    answer(&mut t, &ti, 5_010);
    hang_up(&mut t, Party::Caller, 65_000);
    hang_up(&mut p, Party::Caller, 65_005);
    Scenario::new().dialog(t).dialog(p)
}

/// Outgoing: 202 dials 0555 123 4567 at 0 (the PBX's 100 Trying); the PBX calls the
/// trunk at 30 ms with the company number; the client answers at 8 s, the PBX answers
/// the phone 10 ms later; the operator hangs up at 40 s, relayed to the trunk.
pub fn outgoing_answered(seed: u64) -> Scenario {
    let mut p = Dialog::new(seed, phone("202"), pbx("05551234567"));
    let pi = ring(&mut p, 0);
    let mut t = Dialog::new(seed + 1, pbx(DID), trunk("+15551234567"));
    let ti = ring(&mut t, 30);
    answer(&mut t, &ti, 8_000);
    answer(&mut p, &pi, 8_010);
    hang_up(&mut p, Party::Caller, 40_000);
    hang_up(&mut t, Party::Caller, 40_004);
    Scenario::new().dialog(p).dialog(t)
}

/// A queue: the client calls at 0, the PBX rings 201, 202 and 203 at once; 202 answers
/// at 7 s, the PBX cancels the other two; the operator hangs up at 50 s.
pub fn queue_second_answers(seed: u64) -> Scenario {
    let mut t = trunk_in(seed, CLIENT);
    let ti = ring(&mut t, 0);
    let mut legs: Vec<(Dialog, Tx)> = ["201", "202", "203"]
        .iter()
        .enumerate()
        .map(|(k, ext)| {
            let mut d = to_phone(seed + 1 + k as u64, CLIENT, ext);
            let inv = ring(&mut d, 20 + 5 * k as u64);
            (d, inv)
        })
        .collect();
    let answered = legs[1].1.clone();
    answer(&mut legs[1].0, &answered, 7_000);
    answer(&mut t, &ti, 7_010);
    for k in [0, 2] {
        let inv = legs[k].1.clone();
        cancel(&mut legs[k].0, &inv, 7_015);
    }
    hang_up(&mut legs[1].0, Party::Callee, 50_000);
    hang_up(&mut t, Party::Callee, 50_004);
    let mut s = Scenario::new().dialog(t);
    for (d, _) in legs {
        s.add(d);
    }
    s
}

/// Internal: 201 dials 203 at 0; the PBX rings 203 (presenting 201) at 15 ms; 203
/// answers at 4 s; 203 hangs up at 30 s, relayed to 201.
pub fn internal_call(seed: u64) -> Scenario {
    let mut a = Dialog::new(seed, phone("201"), pbx("203"));
    let ai = ring(&mut a, 0);
    let mut b = Dialog::new(seed + 1, pbx("201"), phone("203"));
    let bi = ring(&mut b, 15);
    answer(&mut b, &bi, 4_000);
    answer(&mut a, &ai, 4_008);
    hang_up(&mut b, Party::Callee, 30_000);
    hang_up(&mut a, Party::Callee, 30_003);
    Scenario::new().dialog(a).dialog(b)
}

/// Two incoming calls at once whose legs only `header` tells apart: the PBX presents
/// no caller number to the phones (an anonymous caller ID), so numbers cannot pair
/// them. Call 1: client A at 0 -> 201, answered 3 s, ends 20 s; call 2: client B at
/// 100 ms -> 202, answered 4 s, ends 25 s. The PBX sets `header` on both legs of each.
pub fn correlation_header(seed: u64, header: &str) -> Scenario {
    let mut s = Scenario::new();
    for (k, (client, ext, start, ans, end)) in [
        ("+15557770001", "201", 0, 3_000, 20_000),
        ("+15557770002", "202", 100, 4_000, 25_000),
    ]
    .into_iter()
    .enumerate()
    {
        let link = format!("1700000000.{}", 40 + k);
        let mut t = trunk_in(seed + 10 * k as u64, client);
        let ti = ring_with(&mut t, start, (header, &link));
        let mut p = to_phone(seed + 10 * k as u64 + 1, "anonymous", ext);
        let pi = ring_with(&mut p, start + 20, (header, &link));
        answer(&mut p, &pi, ans);
        answer(&mut t, &ti, ans + 10);
        hang_up(&mut t, Party::Caller, end);
        hang_up(&mut p, Party::Caller, end + 4);
        s.add(t);
        s.add(p);
    }
    s
}

/// Two unrelated calls from one client number, one second apart, to two operators:
/// call 1 (0 s) rings 201, answered 4 s, ends 30 s; call 2 (1 s) rings 202, answered
/// 6 s, ends 40 s. Each phone leg must pair with its own trunk leg.
pub fn same_client_two_operators(seed: u64) -> Scenario {
    let mut s = Scenario::new();
    for (k, (ext, start, ans, end)) in [("201", 0, 4_000, 30_000), ("202", 1_000, 6_000, 40_000)]
        .into_iter()
        .enumerate()
    {
        let mut t = trunk_in(seed + 10 * k as u64, CLIENT);
        let ti = ring(&mut t, start);
        let mut p = to_phone(seed + 10 * k as u64 + 1, CLIENT, ext);
        let pi = ring(&mut p, start + 20);
        answer(&mut p, &pi, ans);
        answer(&mut t, &ti, ans + 10);
        hang_up(&mut p, Party::Callee, end);
        hang_up(&mut t, Party::Callee, end + 4);
        s.add(t);
        s.add(p);
    }
    s
}

/// Blind transfer: the client calls at 0, 201 answers at 3 s; at 20 s 201 sends REFER
/// to 202 (202 Accepted), the PBX hangs up 201 at 20.5 s and rings 202 (presenting the
/// client) at 20.4 s; 202 answers at 25 s; the client hangs up at 60 s.
pub fn blind_transfer(seed: u64) -> Scenario {
    let mut t = trunk_in(seed, CLIENT);
    let ti = ring(&mut t, 0);
    let mut a = to_phone(seed + 1, CLIENT, "201");
    let ai = ring(&mut a, 20);
    answer(&mut a, &ai, 3_000);
    answer(&mut t, &ti, 3_010);
    let refer = a.request(
        at(20_000),
        Party::Callee,
        Req::new("REFER").header("Refer-To", &format!("<sip:202@{PBX_ADDR}>")),
    );
    a.reply(at(20_002), &refer, 202);
    let mut b = to_phone(seed + 2, CLIENT, "202");
    let bi = ring(&mut b, 20_400);
    hang_up(&mut a, Party::Caller, 20_500);
    answer(&mut b, &bi, 25_000);
    hang_up(&mut t, Party::Caller, 60_000);
    hang_up(&mut b, Party::Caller, 60_004);
    Scenario::new().dialog(t).dialog(a).dialog(b)
}

/// Attended transfer: the client calls at 0, 201 answers at 3 s; at 20 s 201 consults
/// 202 (201 -> PBX, PBX -> 202 presenting 201), 202 answers at 23 s; at 30 s 201 sends
/// REFER on the client's leg with Refer-To 202 and Replaces naming the consultation;
/// the PBX bridges the client to 202 and hangs up both of 201's legs at 30.5 s; the
/// client hangs up at 60 s, relayed to 202.
pub fn attended_transfer(seed: u64) -> Scenario {
    let mut t = trunk_in(seed, CLIENT);
    let ti = ring(&mut t, 0);
    let mut a = to_phone(seed + 1, CLIENT, "201");
    let ai = ring(&mut a, 20);
    answer(&mut a, &ai, 3_000);
    answer(&mut t, &ti, 3_010);
    let consult_id = format!("consult-{seed}@10.0.1.21");
    let mut c1 = Dialog::new(seed + 2, phone("201"), pbx("202")).call_id(&consult_id);
    let c1i = ring(&mut c1, 20_000);
    let mut c2 = Dialog::new(seed + 3, pbx("201"), phone("202"));
    let c2i = ring(&mut c2, 20_020);
    answer(&mut c2, &c2i, 23_000);
    answer(&mut c1, &c1i, 23_010);
    let refer = a.request(
        at(30_000),
        Party::Callee,
        Req::new("REFER").header(
            "Refer-To",
            &format!("<sip:202@{PBX_ADDR}?Replaces={consult_id}%3Bto-tag%3D1%3Bfrom-tag%3D2>"),
        ),
    );
    a.reply(at(30_002), &refer, 202);
    hang_up(&mut a, Party::Caller, 30_500);
    hang_up(&mut c1, Party::Callee, 30_500);
    hang_up(&mut t, Party::Caller, 60_000);
    hang_up(&mut c2, Party::Caller, 60_004);
    Scenario::new().dialog(t).dialog(a).dialog(c1).dialog(c2)
}

/// The outside address of a carrier SBC (where the trunk leg arrives).
pub const SBC_OUTSIDE: &str = "198.51.100.10";
/// Its inside address (where it sends the inner leg from).
pub const SBC_INSIDE: &str = "198.51.100.11";

/// A carrier SBC with two addresses relaying one call, SIP only: the client's call
/// arrives on the outside address at 0, the SBC places the inner leg from its inside
/// address to the PBX 4 ms later with the same numbers; the PBX answers at 6 s and the
/// SBC answers outside 59 ms later; the client hangs up at 40 s and the SBC relays the
/// BYE 13 ms later.
pub fn sbc_two_addresses(seed: u64) -> Scenario {
    let mut outer = Dialog::new(
        seed,
        Ua::new(CLIENT, ip(TRUNK_ADDR)).user_agent("Carrier core"),
        Ua::new(DID, ip(SBC_OUTSIDE)).user_agent("Carrier SBC 4.2"),
    );
    let oi = ring(&mut outer, 0);
    let mut inner = Dialog::new(
        seed + 1,
        Ua::new(CLIENT, ip(SBC_INSIDE)).user_agent("Carrier SBC 4.2"),
        pbx(DID),
    );
    let ii = ring(&mut inner, 4);
    answer(&mut inner, &ii, 6_000);
    answer(&mut outer, &oi, 6_059);
    hang_up(&mut outer, Party::Caller, 40_000);
    hang_up(&mut inner, Party::Caller, 40_013);
    Scenario::new().dialog(outer).dialog(inner)
}

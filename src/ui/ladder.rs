//! The SIP ladder of a call, drawn on the server as SVG (like sngrep's call flow): one
//! column per address:port in order of appearance, one arrow per message with its time
//! and method or status. Each arrow links to the message's text below the diagram.

use std::net::SocketAddr;

use maud::{html, Markup};

use crate::base::TracedMessage;

/// Width of one address's column, px: room for "255.255.255.255:65535".
const COLUMN: usize = 170;
/// The time column on the left, px.
const LEFT: usize = 70;
/// Space for the address labels on top, px.
const TOP: usize = 34;
/// One message per row, px.
const ROW: usize = 26;

/// A message's start line, cut to a label: "INVITE", "180 Ringing", and "(SDP)" when a
/// session description rides it; responses name their CSeq method.
pub(crate) fn label(text: &[u8]) -> String {
    let first = text.split(|&b| b == b'\n').next().unwrap_or_default();
    let first = String::from_utf8_lossy(first);
    let first = first.trim_end();
    let mut label = match first.strip_prefix("SIP/2.0 ") {
        Some(status) => {
            let method = cseq_method(text);
            match method {
                Some(m) => format!("{status} ({m})"),
                None => status.to_owned(),
            }
        }
        None => first.split(' ').next().unwrap_or_default().to_owned(),
    };
    if has_sdp(text) {
        label.push_str(" SDP");
    }
    label.chars().take(40).collect()
}

fn headers(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    text.split(|&b| b == b'\n')
        .skip(1)
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .take_while(|l| !l.is_empty())
}

fn cseq_method(text: &[u8]) -> Option<String> {
    headers(text).find_map(|line| {
        let (name, value) = line.split_at(line.iter().position(|&b| b == b':')?);
        if !name.trim_ascii().eq_ignore_ascii_case(b"cseq") {
            return None;
        }
        let value = String::from_utf8_lossy(&value[1..]);
        value.split_whitespace().nth(1).map(str::to_owned)
    })
}

fn has_sdp(text: &[u8]) -> bool {
    headers(text).any(|line| {
        let lower = line.to_ascii_lowercase();
        (lower.starts_with(b"content-type:") || lower.starts_with(b"c:"))
            && lower.windows(15).any(|w| w == b"application/sdp")
    })
}

/// Whether the message is a request (not a response).
fn is_request(text: &[u8]) -> bool {
    !text.starts_with(b"SIP/2.0 ")
}

fn class_of(text: &[u8]) -> &'static str {
    if is_request(text) {
        return "req";
    }
    match text.get(8) {
        Some(b'1') => "prov",
        Some(b'2') => "ok",
        _ => "err",
    }
}

/// The ladder and, below it, each message's text (a `<details>` the arrow links to).
pub(crate) fn ladder(messages: &[&TracedMessage]) -> Markup {
    let mut hosts: Vec<SocketAddr> = Vec::new();
    for m in messages {
        for a in [m.src, m.dst] {
            if !hosts.contains(&a) {
                hosts.push(a);
            }
        }
    }
    let column = |a: SocketAddr| hosts.iter().position(|h| *h == a).unwrap_or(0);
    let x = |i: usize| LEFT + COLUMN * i + COLUMN / 2;
    let width = LEFT + COLUMN * hosts.len().max(1);
    let height = TOP + ROW * (messages.len() + 1);
    let first = messages.first().map_or(0, |m| m.time.as_nanos());
    html! {
        div.ladder {
            svg xmlns="http://www.w3.org/2000/svg" width=(width) height=(height)
                viewBox=(format!("0 0 {width} {height}")) role="img"
                aria-label="SIP ladder: the call's messages between its addresses" {
                defs {
                    marker #arrow viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7"
                        markerHeight="7" orient="auto-start-reverse" {
                        path d="M 0 0 L 10 5 L 0 10 z" fill="context-stroke" {}
                    }
                }
                @for (i, h) in hosts.iter().enumerate() {
                    text.host x=(x(i)) y="14" text-anchor="middle" { (h) }
                    line.life x1=(x(i)) y1="22" x2=(x(i)) y2=(height) {}
                }
                @for (n, m) in messages.iter().enumerate() {
                    @let y = TOP + ROW * (n + 1);
                    @let (from, to) = (x(column(m.src)), x(column(m.dst)));
                    @let offset = m.time.as_nanos().saturating_sub(first) as f64 / 1e9;
                    a href=(format!("#m{n}")) class=(class_of(&m.text)) {
                        title { (label(&m.text)) " — " (m.src) " → " (m.dst) }
                        text.time x="4" y=(y + 4) { (format!("+{offset:.3}s")) }
                        @if from == to {
                            path d=(format!("M {from} {} h 24 v 10 h -24", y - 6))
                                fill="none" marker-end="url(#arrow)" {}
                        } @else {
                            line x1=(from) y1=(y) x2=(to) y2=(y) marker-end="url(#arrow)" {}
                        }
                        text.label x=((from + to) / 2) y=(y - 5) text-anchor="middle" {
                            (label(&m.text))
                        }
                    }
                }
            }
        }
        div.messages {
            @for (n, m) in messages.iter().enumerate() {
                details id=(format!("m{n}")) {
                    summary {
                        (format!("#{} ", n + 1))
                        (crate::ui::page::utc_time_ns(m.time.as_nanos()))
                        " " (m.src) " → " (m.dst) " " (m.transport.as_str().to_uppercase()) " "
                        strong { (label(&m.text)) }
                    }
                    pre { (String::from_utf8_lossy(&m.text)) }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_name_the_method_the_status_and_the_sdp() {
        let invite = b"INVITE sip:1002@pbx SIP/2.0\r\nCSeq: 1 INVITE\r\nContent-Type: application/sdp\r\n\r\nv=0\r\n";
        assert_eq!(label(invite), "INVITE SDP");
        let ok = b"SIP/2.0 200 OK\r\nCSeq: 2 BYE\r\n\r\n";
        assert_eq!(label(ok), "200 OK (BYE)");
        assert_eq!(label(b"garbage"), "garbage");
        assert_eq!(label(b""), "");
    }
}

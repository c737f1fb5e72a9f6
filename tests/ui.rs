//! The web console over HTTP on loopback, as a browser uses it: the login and what
//! guards it, each page, History's filters and paging, the Live stream, and the pcap
//! download read back by tshark.

#[path = "support/console.rs"]
mod console;
#[path = "support/records.rs"]
mod records;
#[path = "support/skip.rs"]
mod skip;
#[path = "support/stored.rs"]
mod stored;

use std::collections::HashSet;
use std::process::Command;

use console::{Browser, PASSWORD};

/// Rows of History's table: each call's link.
fn history_ids(page: &str) -> Vec<String> {
    page.split("href=\"/ui/calls/")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .map(str::to_owned)
        .collect()
}

/// The "Older »" link of a History page, unescaped.
fn older_link(page: &str) -> Option<String> {
    let at = page.find("rel=\"next\"")?;
    let head = &page[..at];
    let start = head.rfind("href=\"")? + 6;
    Some(head[start..].split('"').next()?.replace("&amp;", "&"))
}

#[tokio::test]
async fn the_console_is_behind_its_own_login() {
    let c = console::start("").await;
    let mut b = Browser::new(&c.base);
    let root = b.get("/").await;
    assert_eq!((root.status, root.header("location")), (303, "/ui/"));
    let page = b.get("/ui/history?outcome=answered").await;
    assert_eq!(page.status, 303);
    assert_eq!(
        page.header("location"),
        "/ui/login?next=/ui/history%3Foutcome%3Danswered"
    );
    // The importer's key opens nothing here.
    let mut importer = Browser::new(&c.base);
    let keyed = importer.get("/ui/status").await;
    assert_eq!(keyed.status, 303);

    let login = b.get("/ui/login").await;
    assert_eq!(login.status, 200);
    assert!(login.text().contains("Log in to calltap"));
    assert!(login
        .header("content-security-policy")
        .contains("script-src 'self'"));
    let set = login.header("set-cookie");
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );

    let ok = b.login(PASSWORD).await;
    assert_eq!((ok.status, ok.header("location")), (303, "/ui/history"));
    let session = ok.header("set-cookie");
    assert!(
        session.starts_with("calltap_session=")
            && session.contains("HttpOnly")
            && session.contains("SameSite=Strict")
            && !session.contains("Secure"),
        "{session}"
    );
    assert_eq!(b.get("/ui/history").await.status, 200);

    // Logout needs the session's form token, and ends the session.
    let forged = b.post("/ui/logout", &[("csrf", "forged")], None).await;
    assert_eq!(forged.status, 403);
    assert_eq!(b.get("/ui/status").await.status, 200);
    let history = b.get("/ui/history").await;
    let csrf = history.field("csrf");
    let token = b.cookie("calltap_session").unwrap().to_owned();
    let out = b.post("/ui/logout", &[("csrf", &csrf)], None).await;
    assert_eq!((out.status, out.header("location")), (303, "/ui/login"));
    // The old cookie replayed: the session is over, and the page says so.
    b.set_cookie("calltap_session", &token);
    let after = b.get("/ui/status").await;
    assert_eq!(
        after.header("location"),
        "/ui/login?next=/ui/status&expired=1"
    );
    let told = b.get(after.header("location")).await;
    assert!(told.text().contains("Your session has ended"));
}

#[tokio::test]
async fn wrong_passwords_are_told_and_then_refused_for_a_while() {
    let c = console::start("[api.rate_limit]\nfailed_keys_per_minute = 3\n").await;
    let mut b = Browser::new(&c.base);
    let wrong = b.login("not-the-password").await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.text().contains("Wrong password."));
    assert!(b.cookie("calltap_session").is_none());
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(b.login("still-wrong").await.status);
    }
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    // Blocked: even the right password waits.
    let blocked = b.login(PASSWORD).await;
    assert_eq!(blocked.status, 429);
    assert!(
        blocked.text().contains("Too many wrong passwords"),
        "{}",
        blocked.text()
    );

    // A form token that is not the cookie's, and a post from another site, are refused.
    let mut other = Browser::new(&c.base);
    let _ = other.get("/ui/login").await;
    let stale = other
        .post(
            "/ui/login",
            &[("csrf", "0000"), ("password", PASSWORD)],
            None,
        )
        .await;
    assert_eq!(stale.status, 403);
    assert!(stale.text().contains("login form had expired"));
    let form = other.get("/ui/login").await;
    let csrf = form.field("csrf");
    let cross = other
        .post(
            "/ui/login",
            &[("csrf", &csrf), ("password", PASSWORD)],
            Some("https://elsewhere.example"),
        )
        .await;
    assert_eq!(cross.status, 403);
}

#[tokio::test]
async fn every_page_answers_and_bad_input_gets_a_page_saying_so() {
    let c = console::start("").await;
    let mut b = Browser::new(&c.base);
    assert_eq!(b.login(PASSWORD).await.status, 303);

    let history = b.get("/ui/history").await;
    assert_eq!(history.status, 200);
    let ids = history_ids(&history.text());
    let stored: Vec<String> = c.store.all_calls().map(|r| r.unwrap().id).collect();
    assert_eq!(
        ids.len(),
        stored.len(),
        "every stored call is listed: {ids:?}"
    );
    assert_eq!(
        ids.iter().collect::<HashSet<_>>(),
        stored.iter().collect::<HashSet<_>>()
    );

    // A call with its recording and SIP messages.
    let recorded = c
        .store
        .all_calls()
        .map(|r| r.unwrap())
        .find(|r| r.media.recording.is_some() && r.conversation.merged_into.is_none())
        .expect("a recorded call");
    let page = b.get(&format!("/ui/calls/{}", recorded.id)).await;
    assert_eq!(page.status, 200);
    let text = page.text();
    for part in [
        "<svg",
        "class=\"ladder\"",
        "<audio id=\"player\"",
        "sip.pcap",
        "waveform.svg",
        "As the importer sees it",
        "BYE from",
    ] {
        assert!(text.contains(part), "the call page lacks {part}");
    }
    let src = text
        .split("<audio id=\"player\" controls preload=\"metadata\" src=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("the player's source")
        .replace("&amp;", "&");
    assert!(src.starts_with("/recordings/"), "{src}");
    let audio = b.get(&src).await;
    assert_eq!(audio.status, 200);
    assert_eq!(audio.header("content-type"), "audio/wav");
    let wave = b
        .get(&format!("/ui/calls/{}/waveform.svg", recorded.id))
        .await;
    assert_eq!(wave.status, 200);
    assert_eq!(wave.header("content-type"), "image/svg+xml");
    assert_eq!(wave.text().matches("<path").count(), 2, "two channels");

    // A call with neither.
    let bare = b.get(&format!("/ui/calls/{}", c.bare.id)).await;
    assert_eq!(bare.status, 200);
    assert!(bare
        .text()
        .contains("No recording: encrypted media (SRTP)."));
    assert!(bare
        .text()
        .contains("No SIP messages are stored for this call"));
    let no_pcap = b.get(&format!("/ui/calls/{}/sip.pcap", c.bare.id)).await;
    assert_eq!(no_pcap.status, 404);
    assert!(no_pcap.text().contains("no pcap to download"));
    assert_eq!(
        b.get(&format!("/ui/calls/{}/waveform.svg", c.bare.id))
            .await
            .status,
        404
    );

    let unknown = b.get("/ui/calls/c-no-such-call").await;
    assert_eq!(unknown.status, 404);
    assert!(unknown
        .text()
        .contains("No call with id c-no-such-call is stored"));
    assert_eq!(b.get("/ui/nowhere").await.status, 404);

    let status = b.get("/ui/status").await;
    assert_eq!(status.status, 200);
    let text = status.text();
    assert!(
        text.contains(env!("CARGO_PKG_VERSION")) && text.contains("<svg"),
        "{text}"
    );
    assert!(text.contains("Retention") && text.contains("Webhooks"));

    let live = b.get("/ui/live").await;
    assert_eq!(live.status, 200);
    assert!(
        live.text().contains("+15557770000"),
        "the call in progress is listed"
    );
    assert!(live.text().contains("talking") && live.text().contains("PCMU"));

    let css = b.get("/ui/assets/style.css").await;
    assert_eq!(
        (css.status, css.header("content-type")),
        (200, "text/css; charset=utf-8")
    );
}

#[tokio::test]
async fn history_filters_and_pages() {
    let c = console::start("").await;
    let mut b = Browser::new(&c.base);
    assert_eq!(b.login(PASSWORD).await.status, 303);
    let all: Vec<_> = c.store.all_calls().map(|r| r.unwrap()).collect();

    for (query, keep) in [
        (
            "direction=incoming",
            &(|r: &calltap::call::CallRecord| r.direction.contract() == "incoming")
                as &dyn Fn(&calltap::call::CallRecord) -> bool,
        ),
        ("direction=outgoing", &|r| {
            r.direction.contract() == "outgoing"
        }),
        ("outcome=answered", &|r| r.outcome.as_str() == "answered"),
        ("outcome=cancelled", &|r| r.outcome.as_str() == "cancelled"),
        ("outcome=busy", &|r| r.outcome.as_str() == "busy"),
        ("operator=101", &|r| r.operator.id == "101"),
    ] {
        let page = b.get(&format!("/ui/history?{query}")).await;
        assert_eq!(page.status, 200, "{query}");
        let got: HashSet<String> = history_ids(&page.text()).into_iter().collect();
        let want: HashSet<String> = all
            .iter()
            .filter(|r| keep(r))
            .map(|r| r.id.clone())
            .collect();
        assert!(!want.is_empty(), "{query} selects some of the calls");
        assert_eq!(got, want, "{query}");
    }
    // A number, typed with spaces, finds the call to it.
    let tcp = all
        .iter()
        .find(|r| r.sip.transport == "tcp")
        .expect("the TCP call");
    let page = b.get("/ui/history?number=555+000+1111").await;
    assert_eq!(history_ids(&page.text()), vec![tcp.id.clone()]);
    // A window holding no call.
    let page = b
        .get("/ui/history?from=2001-01-01T00:00&to=2001-01-02T00:00")
        .await;
    assert!(page
        .text()
        .contains("No stored call matches these filters."));
    // Filters that cannot be used: a page saying why, with the form to fix them.
    for (query, why) in [
        ("from=2026-03-05T00:00&to=2026-03-04T00:00", "is before"),
        ("direction=sideways", "no direction"),
        ("from=yesterday", "is not a time"),
    ] {
        let page = b.get(&format!("/ui/history?{query}")).await;
        assert_eq!(page.status, 400, "{query}");
        assert!(page.text().contains(why), "{query}: {}", page.text());
        assert!(page.text().contains("<form class=\"filters\""));
    }

    // Paging: 130 more calls; the pages, followed to the end, hold every call once,
    // newest first.
    let base = 1_700_000_000;
    let extra: Vec<_> = (0..130)
        .map(|i| records::answered_call(&format!("c-page-{i:03}"), base + i * 60))
        .collect();
    c.store.put_calls(&extra).expect("stored");
    let mut seen = Vec::new();
    let mut next = Some("/ui/history?to=2023-11-30T00:00".to_owned());
    let mut pages = 0;
    while let Some(link) = next.take() {
        let page = b.get(&link).await;
        assert_eq!(page.status, 200);
        seen.extend(history_ids(&page.text()));
        next = older_link(&page.text());
        pages += 1;
        assert!(pages < 10, "the pages end");
    }
    let want: Vec<String> = (0..130).rev().map(|i| format!("c-page-{i:03}")).collect();
    assert_eq!(seen, want);
    assert_eq!(pages, 3);
}

#[tokio::test]
async fn the_live_stream_sends_the_calls_in_progress() {
    let c = console::start("").await;
    let mut b = Browser::new(&c.base);
    assert_eq!(b.login(PASSWORD).await.status, 303);
    let token = b.cookie("calltap_session").unwrap().to_owned();
    let response = reqwest::Client::new()
        .get(format!("{}/ui/live/events", c.base))
        .header("Cookie", format!("calltap_session={token}"))
        .send()
        .await
        .expect("the stream");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let mut response = response;
    let mut text = String::new();
    while !text.contains("\n\n") {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(5), response.chunk())
            .await
            .expect("an event within 5 s")
            .expect("readable")
            .expect("more");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let event = text.split("\n\n").next().unwrap();
    assert!(event.starts_with("event: calls\ndata: "), "{event}");
    assert!(
        event.contains("+15557770000") && event.contains("talking"),
        "{event}"
    );
    assert!(event.contains("data-elapsed=\""));
    // Without a session the stream is not opened.
    let anonymous = Browser::new(&c.base).get("/ui/live/events").await;
    assert_eq!(anonymous.status, 303);
}

/// What the Live page is fed: a call ringing, then talking with its packets counted;
/// an INVITE nobody answers (a scanner) is no call in progress.
#[test]
fn the_engine_lists_calls_ringing_and_talking_but_not_unanswered_invites() {
    use calltap::call::Stage;
    use std::time::Duration;
    let config =
        calltap::config::Config::from_toml(&console::config_text(""), "tests/ui.rs").unwrap();
    let recordings = tempfile::tempdir().unwrap();
    let engine_of =
        || calltap::engine::Engine::with_recordings(&config, recordings.path().to_path_buf());
    let mut engine = engine_of();
    let scanner = console::tcp_call().transport(calltap::pcapgen::call::SipTransport::Udp);
    let invite_only: Vec<_> = scanner.to_vec().into_iter().take(1).collect();
    let mut packets = console::live_call().to_vec();
    packets.extend(invite_only);
    packets.sort_by_key(|p| p.time);
    console::feed(&mut engine, &packets, Duration::from_secs(1));
    let ringing = engine.calls_in_progress();
    assert_eq!(ringing.len(), 1, "{ringing:?}");
    assert_eq!(ringing[0].stage, Stage::Ringing);
    assert_eq!(ringing[0].client_number.as_deref(), Some("+15557770000"));

    let mut engine = engine_of();
    console::feed(&mut engine, &packets, Duration::from_secs(5));
    let talking = engine.calls_in_progress();
    assert_eq!(talking.len(), 1, "{talking:?}");
    let call = &talking[0];
    assert_eq!(call.stage, Stage::Talking);
    assert!(call.elapsed_secs >= 2, "{call:?}");
    assert!(
        call.caller_packets > 50 && call.callee_packets > 50,
        "{call:?}"
    );
    assert_eq!(call.codecs, ["PCMU"]);
}

/// The pcap of each call with SIP messages, as tshark reads it: one SIP message per
/// stored message, over UDP and over TCP.
#[tokio::test]
async fn the_pcap_download_reads_back_in_tshark() {
    if Command::new("tshark").arg("--version").output().is_err() {
        skip::skip("tshark is not installed (apt-get install tshark)");
        return;
    }
    let c = console::start("").await;
    let mut b = Browser::new(&c.base);
    assert_eq!(b.login(PASSWORD).await.status, 303);
    let dir = tempfile::tempdir().unwrap();
    let mut checked = 0;
    let mut transports = HashSet::new();
    for r in c.store.all_calls().map(|r| r.unwrap()) {
        let Some(trace) = c.store.sip_messages(&r.id).unwrap() else {
            continue;
        };
        if r.conversation.id.is_some() {
            continue; // its pcap holds every leg's messages; the single dialogs suffice
        }
        let page = b.get(&format!("/ui/calls/{}/sip.pcap", r.id)).await;
        assert_eq!(page.status, 200);
        assert_eq!(page.header("content-type"), "application/vnd.tcpdump.pcap");
        let path = dir.path().join(format!("{}.pcap", r.id));
        std::fs::write(&path, &page.body).unwrap();
        let out = Command::new("tshark")
            .args(["-n", "-r"])
            .arg(&path)
            .args(["-Y", "sip", "-T", "fields", "-e", "sip.CSeq"])
            .output()
            .expect("tshark runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.is_empty())
            .count();
        assert_eq!(
            lines,
            trace.messages.len(),
            "call {} ({})",
            r.id,
            r.sip.transport
        );
        transports.insert(r.sip.transport.clone());
        checked += 1;
    }
    assert!(checked >= 2, "{checked}");
    assert!(
        transports.contains("udp") && transports.contains("tcp"),
        "{transports:?}"
    );
}

#[tokio::test]
async fn with_the_console_off_its_paths_are_the_api_404() {
    let c = console::start("enabled = false\n").await;
    let mut b = Browser::new(&c.base);
    for path in ["/", "/ui/", "/ui/login", "/ui/history"] {
        let page = b.get(path).await;
        assert_eq!(page.status, 404, "{path}");
        assert!(page.text().contains("\"status\":\"error\""), "{path}");
    }
}

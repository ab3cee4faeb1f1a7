//! The edges of `raybot serve` and `raybot chat` under hostile or broken input: oversized and
//! trickled bodies, absurd timestamps, values that try to break a refusal into two lines, input
//! that is not UTF-8, and a bounded fuzz run against every endpoint. One real `raybot serve` with
//! Slack (HTTP endpoints) and Discord (HTTP interactions endpoint) configured against the fakes.
//!
//! Requests that must not be read whole are written by hand on a raw loopback socket: the body
//! comes from a generator, so a 200 MB body is never held by the test either, and a refusal that
//! arrives while the body is still being written is still read.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ed25519_dalek::{Signer, SigningKey};
use proptest::prelude::*;

use crate::discord::{Serve, keypair, now_secs, post, signed};
use crate::discord_fake::{ALICE as DISCORD_ALICE, CHANNEL, FakeDiscord};
use crate::slack::{ALICE, SECRET, TOKEN, WAR_ROOM};
use crate::slack_fake::{FakeSlack, Signature, sign, slash_command, unix_now};
use crate::support::{RAYBOT, Workspace};

const MB: u64 = 1024 * 1024;

/// `raybot serve` with both platforms' HTTP endpoints, the fakes and the Discord key.
struct Edge {
    serve: Serve,
    fake: FakeDiscord,
    slack: FakeSlack,
    key: SigningKey,
    addr: String,
    _ws: Workspace,
}

impl Edge {
    fn start() -> Edge {
        let ws = Workspace::new();
        let fake = FakeDiscord::start();
        let slack = fake.block_on(FakeSlack::start(TOKEN, WAR_ROOM));
        let key = keypair();
        let public = hex::encode(key.verifying_key().to_bytes());
        let api = slack.api_url();
        let serve = Serve::start(
            &ws,
            &fake,
            &[
                ("DISCORD_PUBLIC_KEY", &public),
                ("DISCORD_GATEWAY", "off"),
                ("SLACK_BOT_TOKEN", TOKEN),
                ("SLACK_SIGNING_SECRET", SECRET),
                ("SLACK_API_URL", &api),
            ],
        );
        let addr = serve.url.trim_start_matches("http://").to_string();
        Edge { serve, fake, slack, key, addr, _ws: ws }
    }

    /// Peak resident memory of the raybot process (VmHWM), in bytes.
    fn peak_rss(&self) -> u64 {
        vm_kb(self.serve.child.id(), "VmHWM:") * 1024
    }

    /// Current resident memory of the raybot process (VmRSS), in bytes.
    fn rss(&self) -> u64 {
        vm_kb(self.serve.child.id(), "VmRSS:") * 1024
    }

    /// The process is still running (no panic took it down).
    fn assert_alive(&mut self) {
        assert!(self.serve.child.try_wait().expect("try_wait").is_none(), "raybot serve exited");
    }

    /// A `/ray <text>` slash command signed as Slack signs it.
    fn slack_command(&self, text: &str) -> reqwest::StatusCode {
        let req = slash_command(ALICE, WAR_ROOM, text, "1337.1.trigger", &self.slack.response_url("1337.1.trigger"));
        self.fake.block_on(async {
            let http = reqwest::Client::builder().no_proxy().build().unwrap();
            req.send(&http, &self.serve.url, SECRET, Signature::Valid).await.status()
        })
    }
}

fn vm_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let line = status.lines().find(|l| l.starts_with(field)).unwrap_or_else(|| panic!("no {field}"));
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("kB figure")
}

/// How a generated body is framed.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Framing {
    /// `Content-Length: <len>`.
    Length,
    /// `Transfer-Encoding: chunked`, no length announced.
    Chunked,
}

/// What came back on a raw connection.
#[derive(Debug)]
struct Answer {
    /// The status code, or `None` when the connection ended without a status line.
    status: Option<u16>,
    /// Everything read (head and body).
    text: String,
    /// From the first byte sent to the end of the answer.
    took: Duration,
    /// How many body bytes the writer got out before it stopped (refused or done).
    sent: u64,
}

/// A request body for [`stream_post`].
enum Source {
    /// `len` bytes of `byte`, generated while they are written (never held whole).
    Repeat { byte: u8, len: u64 },
    /// Exactly these bytes.
    Bytes(Vec<u8>),
}

impl Source {
    fn len(&self) -> u64 {
        match self {
            Source::Repeat { len, .. } => *len,
            Source::Bytes(b) => b.len() as u64,
        }
    }
}

/// POSTs `body` to `path` on `addr` with `headers`, written by a
/// second thread `pace` apart in `piece`-byte pieces (no pause when `pace` is zero; with `piece`
/// zero only the head is sent), while this
/// thread reads the answer until the server closes the connection or `limit` passes.
#[allow(clippy::too_many_arguments)]
fn stream_post(
    addr: &str,
    path: &str,
    headers: &[(&str, String)],
    framing: Framing,
    body: Source,
    piece: usize,
    pace: Duration,
    limit: Duration,
) -> Answer {
    let mut stream = TcpStream::connect(addr).expect("connect to raybot");
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut head = format!("POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    match framing {
        Framing::Length => head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len())),
        Framing::Chunked => head.push_str("Transfer-Encoding: chunked\r\n\r\n"),
    }
    let mut writer = stream.try_clone().expect("clone socket");
    let started = Instant::now();
    let sender = std::thread::spawn(move || -> u64 {
        if writer.write_all(head.as_bytes()).is_err() || piece == 0 {
            return 0;
        }
        let len = body.len();
        let block = match &body {
            Source::Repeat { byte, .. } => vec![*byte; piece],
            Source::Bytes(_) => Vec::new(),
        };
        let mut sent = 0u64;
        while sent < len {
            let n = piece.min((len - sent) as usize);
            let data = match &body {
                Source::Repeat { .. } => &block[..n],
                Source::Bytes(b) => &b[sent as usize..sent as usize + n],
            };
            let ok = match framing {
                Framing::Length => writer.write_all(data),
                Framing::Chunked => writer
                    .write_all(format!("{n:x}\r\n").as_bytes())
                    .and_then(|_| writer.write_all(data))
                    .and_then(|_| writer.write_all(b"\r\n")),
            };
            if ok.is_err() {
                return sent;
            }
            sent += n as u64;
            if !pace.is_zero() {
                std::thread::sleep(pace);
            }
        }
        if framing == Framing::Chunked {
            let _ = writer.write_all(b"0\r\n\r\n");
        }
        sent
    });
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            // A reset after the answer arrived (the server closes with the body unread): keep
            // what was read. A timeout ends the wait.
            Err(_) => break,
        }
    }
    let took = started.elapsed();
    let _ = stream.shutdown(std::net::Shutdown::Both);
    let sent = sender.join().expect("writer thread");
    let text = String::from_utf8_lossy(&got).into_owned();
    Answer { status: status_of(&text), text, took, sent }
}

/// The status code of an HTTP/1.1 answer.
fn status_of(text: &str) -> Option<u16> {
    text.strip_prefix("HTTP/1.1 ").and_then(|rest| rest.get(..3)).and_then(|code| code.parse().ok())
}

/// Headers Slack would send, signed over `body` (or a wrong signature when `body` is `None`:
/// the body is too large to be signed by a generator, and the limit must trip before it matters).
fn slack_headers(ts: i64, body: Option<&str>) -> Vec<(&'static str, String)> {
    let signature = match body {
        Some(b) => sign(SECRET, ts, b),
        None => format!("v0={}", "0".repeat(64)),
    };
    vec![
        ("Content-Type", "application/x-www-form-urlencoded".into()),
        ("X-Slack-Request-Timestamp", ts.to_string()),
        ("X-Slack-Signature", signature),
    ]
}

#[test]
fn a_200_mb_body_is_refused_413_before_it_is_read_and_memory_stays_flat() {
    let mut edge = Edge::start();
    assert_eq!(edge.slack_command("status"), 200, "a normal signed /ray status");
    let before = (edge.rss(), edge.peak_rss());
    let big = 200 * MB;
    let fast = |path: &str, headers: Vec<(&str, String)>, framing: Framing| {
        let body = Source::Repeat { byte: b'a', len: big };
        stream_post(&edge.addr, path, &headers, framing, body, 64 * 1024, Duration::ZERO, Duration::from_secs(30))
    };
    let form = vec![("Content-Type", "application/x-www-form-urlencoded".to_string())];
    let json = vec![("Content-Type", "application/json".to_string())];
    let cases = [
        ("/slack/commands", form.clone(), Framing::Length, "unsigned, announced"),
        ("/slack/commands", slack_headers(unix_now(), None), Framing::Length, "wrongly signed, announced"),
        ("/slack/commands", slack_headers(unix_now(), None), Framing::Chunked, "wrongly signed, chunked"),
        ("/slack/events", slack_headers(unix_now(), None), Framing::Chunked, "wrongly signed, chunked"),
        ("/slack/interactions", slack_headers(unix_now(), None), Framing::Chunked, "wrongly signed, chunked"),
        ("/discord/interactions", json.clone(), Framing::Length, "unsigned, announced"),
        ("/discord/interactions", json.clone(), Framing::Chunked, "unsigned, chunked"),
        ("/healthz", json.clone(), Framing::Length, "a route that takes no body, announced"),
        ("/no-such-route", json, Framing::Length, "an unknown route, announced"),
    ];
    for (path, headers, framing, what) in cases {
        let answer = fast(path, headers, framing);
        println!(
            "{path} ({what}): {:?} after {:?}, {} MB of 200 written",
            answer.status,
            answer.took,
            answer.sent / MB
        );
        assert_eq!(answer.status, Some(413), "{path} ({what}):\n{}", answer.text);
        assert!(answer.sent < 100 * MB, "{path} ({what}): {} bytes went out before the refusal", answer.sent);
    }
    // Without any signature header the Slack routes refuse before the body is read: 401, and
    // a chunked body (no length to judge) is not read at all.
    let answer = fast("/slack/commands", form, Framing::Chunked);
    println!("/slack/commands (unsigned, chunked): {:?} after {:?}", answer.status, answer.took);
    assert_eq!(answer.status, Some(401), "{}", answer.text);

    // Signed correctly, 5 MB (Content-Length) and chunked: still too large.
    let mut body = slash_command(ALICE, WAR_ROOM, "status", "t.5mb", &edge.slack.response_url("t.5mb")).body;
    body.push_str("&padding=");
    body.push_str(&"x".repeat(5 * MB as usize));
    for framing in [Framing::Length, Framing::Chunked] {
        let ts = unix_now();
        let headers = slack_headers(ts, Some(&body));
        let source = Source::Bytes(body.clone().into_bytes());
        let limit = Duration::from_secs(30);
        let answer =
            stream_post(&edge.addr, "/slack/commands", &headers, framing, source, 64 * 1024, Duration::ZERO, limit);
        println!("signed 5 MB /ray status ({framing:?}): {:?} after {:?}", answer.status, answer.took);
        assert_eq!(answer.status, Some(413), "signed 5 MB /ray status ({framing:?}):\n{}", answer.text);
    }
    assert_eq!(edge.slack_command("status"), 200, "a normal signed /ray status after the big ones");

    let after = (edge.rss(), edge.peak_rss());
    println!(
        "raybot serve memory: RSS {} → {} MB, peak (VmHWM) {} → {} MB",
        before.0 / MB,
        after.0 / MB,
        before.1 / MB,
        after.1 / MB
    );
    assert!(after.1 < 100 * MB, "peak RSS {} MB", after.1 / MB);
    assert!(after.1 < before.1 + 40 * MB, "peak RSS grew from {} to {} MB", before.1 / MB, after.1 / MB);
    edge.assert_alive();
}

#[test]
fn absurd_or_stale_timestamps_are_refused_even_when_correctly_signed() {
    let mut edge = Edge::start();
    let url = edge.serve.url.clone();
    // Discord: ed25519 over timestamp + body, with a timestamp near -2^63.
    let ping = serde_json::json!({ "id": "500000000000000901", "application_id": crate::discord_fake::APP,
        "type": 1, "token": "tok-edge", "version": 1 })
    .to_string();
    for ts in ["-9223372036854775800", "9223372036854775807", "-1", "0"] {
        let sig = hex::encode(edge.key.sign(format!("{ts}{ping}").as_bytes()).to_bytes());
        let (status, _) = post(&edge.fake, &url, &ping, Some(sig), Some(ts.to_string()));
        assert_eq!(status, 401, "Discord timestamp {ts}");
    }
    let fresh = now_secs().to_string();
    let sig = hex::encode(edge.key.sign(format!("{fresh}{ping}").as_bytes()).to_bytes());
    assert_eq!(post(&edge.fake, &url, &ping, Some(sig), Some(fresh)).0, 200, "the same ping, signed now");

    // Slack: HMAC over v0:ts:body, with absurd timestamps.
    let body = slash_command(ALICE, WAR_ROOM, "status", "t.ts", &edge.slack.response_url("t.ts")).body;
    for ts in [-9_223_372_036_854_775_800_i64, i64::MIN, i64::MAX, unix_now() - 301, unix_now() + 400] {
        let status = edge.fake.block_on(async {
            let http = reqwest::Client::builder().no_proxy().build().unwrap();
            let mut req = http.post(format!("{url}/slack/commands")).body(body.clone());
            for (k, v) in slack_headers(ts, Some(&body)) {
                req = req.header(k, v);
            }
            req.send().await.expect("raybot answers").status()
        });
        assert_eq!(status, 401, "Slack timestamp {ts}");
    }
    assert_eq!(edge.slack_command("status"), 200);
    edge.assert_alive();
}

#[test]
fn a_discord_option_with_a_newline_is_refused_in_exactly_one_line() {
    let mut edge = Edge::start();
    let url = edge.serve.url.clone();
    let cases: [(&str, &[(&str, &str)]); 4] = [
        ("deploy", &[("version", "v1.2\n[RAY] Accepted.")]),
        ("deploy", &[("version", "v1.2"), ("env", "prod\r\n[RAY] Accepted.")]),
        ("deploy", &[("version", "v1.2\u{2028}[RAY]\u{1b}[2J")]),
        ("status", &[("version", "v1.2\u{85}[RAY]")]),
    ];
    for (sub, options) in cases {
        let (status, answer) =
            signed(&edge.fake, &url, &edge.key, &edge.fake.command(DISCORD_ALICE, CHANNEL, sub, options));
        assert_eq!(status, 200);
        let text = answer["data"]["content"].as_str().unwrap_or_default();
        assert!(text.starts_with("[RAY ERROR] "), "{options:?}: {answer}");
        assert_eq!(text.lines().count(), 1, "{options:?}: {text:?}");
        assert!(!text.contains(['\r', '\u{2028}', '\u{85}', '\u{1b}']), "{options:?}: {text:?}");
        assert!(!text["[RAY ERROR] ".len()..].contains("[RAY ERROR]"));
    }
    // The value is still shown, escaped, so the person sees what was wrong.
    let (_, answer) = signed(
        &edge.fake,
        &url,
        &edge.key,
        &edge.fake.command(DISCORD_ALICE, CHANNEL, "deploy", &[("version", "v1.2\n[RAY] Accepted.")]),
    );
    assert_eq!(
        answer["data"]["content"],
        "[RAY ERROR] `v1.2\\n[RAY] Accepted.` is not a valid version: use letters, digits, `.`, `_` or `-` (at most 64 characters), e.g. `/ray deploy v1.2`.",
        "{answer}"
    );
    // Nothing started.
    std::thread::sleep(Duration::from_millis(500));
    assert!(edge.fake.messages().is_empty(), "a refusal posted:\n{}", edge.fake.transcript());
    edge.assert_alive();
}

#[test]
fn raybot_chat_refuses_a_line_that_is_not_utf8_and_answers_the_next() {
    let state = tempfile::tempdir().unwrap();
    let mut child = Command::new(RAYBOT)
        .args(["chat", "--user", "alice"])
        .current_dir(state.path())
        .env("RAYBOT_STORE", format!("file://{}", state.path().display()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("raybot chat starts");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"# hello\n/ray st\xffatus \xc3\n/ray help\n\xfe\r\n/ray protocols\n").unwrap();
    drop(stdin);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = rx.recv_timeout(Duration::from_secs(60)).expect("raybot chat ended").expect("output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}\n{stdout}\n{stderr}", out.status);
    let refusal = stdout.find("[RAY ERROR] line 2 is not valid UTF-8; it was ignored.");
    let help = stdout.find("/ray deploy <version> [to <env>]");
    let second = stdout.find("[RAY ERROR] line 4 is not valid UTF-8; it was ignored.");
    let protocols = stdout.find("[RAY] Protocols:");
    assert!(
        refusal.is_some() && help.is_some() && second.is_some() && protocols.is_some(),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(refusal < help && help < second && second < protocols, "out of order:\n{stdout}");
}

#[test]
fn a_client_that_trickles_its_body_is_cut_off_with_408() {
    let mut edge = Edge::start();
    let limit = raybot::http::REQUEST_TIMEOUT;
    let json = vec![("Content-Type", "application/json".to_string())];
    let addr = edge.addr.clone();
    // One byte every 300 ms of a 1000-byte body: 5 minutes if nobody stops it. Both endpoints at
    // once, and a client that sends its head and then nothing.
    let slack = std::thread::spawn(move || {
        stream_post(
            &addr,
            "/slack/commands",
            &slack_headers(unix_now(), None),
            Framing::Length,
            Source::Repeat { byte: b'a', len: 1000 },
            1,
            Duration::from_millis(300),
            Duration::from_secs(60),
        )
    });
    let addr = edge.addr.clone();
    let silent = std::thread::spawn(move || {
        stream_post(
            &addr,
            "/discord/interactions",
            &[("Content-Type", "application/json".to_string())],
            Framing::Length,
            Source::Repeat { byte: b'{', len: 1000 },
            0,
            Duration::from_millis(300),
            Duration::from_secs(60),
        )
    });
    let discord = stream_post(
        &edge.addr,
        "/discord/interactions",
        &json,
        Framing::Chunked,
        Source::Repeat { byte: b'{', len: 1000 },
        1,
        Duration::from_millis(300),
        Duration::from_secs(60),
    );
    for (what, answer) in
        [("slack", slack.join().unwrap()), ("discord chunked", discord), ("discord silent", silent.join().unwrap())]
    {
        println!("{what}: {:?} after {:?} ({} body bytes sent)", answer.status, answer.took, answer.sent);
        assert_eq!(answer.status, Some(408), "{what}:\n{}", answer.text);
        assert!(answer.took >= limit - Duration::from_millis(500), "{what}: cut off early, after {:?}", answer.took);
        assert!(answer.took < limit + Duration::from_secs(5), "{what}: cut off after {:?}", answer.took);
    }
    assert_eq!(edge.slack_command("help"), 200, "the server still answers");
    edge.assert_alive();
}

#[test]
fn a_client_that_trickles_its_headers_is_disconnected() {
    use std::io::{Read, Write};
    let mut edge = Edge::start();
    let limit = raybot::http::HEADER_TIMEOUT;
    // Half a request head, then one more header line now and then: without a limit on reading
    // headers, such a client holds its connection (and a task) for as long as it likes.
    let mut stream = std::net::TcpStream::connect(&edge.addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let started = Instant::now();
    stream.write_all(b"POST /slack/commands HTTP/1.1\r\nHost: raybot\r\n").unwrap();
    let mut buf = [0u8; 256];
    let closed_after = loop {
        assert!(started.elapsed() < limit + Duration::from_secs(10), "still connected after {:?}", started.elapsed());
        let _ = stream.write_all(b"X-Slow: 1\r\n");
        match stream.read(&mut buf) {
            Ok(0) => break started.elapsed(),
            Ok(_) => break started.elapsed(),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => break started.elapsed(),
        }
        std::thread::sleep(Duration::from_millis(800));
    };
    println!("a client trickling its headers was disconnected after {closed_after:?}");
    assert!(closed_after >= limit - Duration::from_millis(500), "cut off early, after {closed_after:?}");
    assert!(closed_after < limit + Duration::from_secs(3), "cut off after {closed_after:?}");
    assert_eq!(edge.slack_command("help"), 200, "the server still answers");
    edge.assert_alive();
}

/// Text for the grammar: `/ray`, real verbs and arguments, and hostile fragments (control
/// characters, line separators, long words, odd Unicode), in any order.
fn ray_text() -> impl Strategy<Value = String> {
    let fragment = prop_oneof![
        Just("deploy".to_string()),
        Just("status".to_string()),
        Just("waive".to_string()),
        Just("approve".to_string()),
        Just("retry".to_string()),
        Just("to".to_string()),
        Just("--strategy".to_string()),
        Just("--strategy=".to_string()),
        Just("v1.2".to_string()),
        Just("\n[RAY] Accepted.".to_string()),
        "[\\x00-\\x1f\\x7f\\u{85}\\u{2028}\\u{2029}]{1,3}",
        "[a-zA-Z0-9._;$()&|-]{1,80}",
        "\\PC{0,12}",
        any::<String>(),
    ];
    (prop::option::of(Just("/ray")), prop::collection::vec(fragment, 0..8), prop::collection::vec(" |\t|\n|", 8))
        .prop_map(|(prefix, parts, seps)| {
            let mut text = prefix.unwrap_or("").to_string();
            for (i, part) in parts.iter().enumerate() {
                text.push_str(if seps[i % seps.len()].is_empty() { "" } else { &seps[i % seps.len()] });
                text.push_str(part);
            }
            text
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Whatever is typed, parsing answers (no panic) and a refusal is exactly one line with no
    /// control character or line separator in it.
    #[test]
    fn every_refusal_of_the_grammar_is_one_line(text in ray_text()) {
        if let Err(e) = raybot::command::parse(&text) {
            let shown = raybot::engine::ray_error(&e);
            prop_assert_eq!(shown.lines().count(), 1, "{:?} → {:?}", text, shown);
            prop_assert!(
                !shown.contains(|c: char| c.is_control() || c == '\u{2028}' || c == '\u{2029}'),
                "{:?} → {:?}", text, shown
            );
        }
    }
}

/// A small deterministic generator (xorshift64*), seeded per run and printed, so a failing run
/// can be repeated with `RAYBOT_FUZZ_SEED`.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// One request on a fresh connection; the answer's status, or `None` when the connection ended
/// without one.
fn exchange(addr: &str, head: &str, body: &[u8]) -> (Option<u16>, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let _ = stream.write_all(head.as_bytes()).and_then(|_| stream.write_all(body));
    let mut got = Vec::new();
    let _ = stream.read_to_end(&mut got);
    let text = String::from_utf8_lossy(&got).into_owned();
    (status_of(&text), text)
}

#[test]
fn a_fuzz_run_of_malformed_requests_never_gets_a_5xx_a_panic_or_a_silent_reset() {
    let mut edge = Edge::start();
    let seed = std::env::var("RAYBOT_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64 | 1);
    println!("fuzz seed {seed} (RAYBOT_FUZZ_SEED={seed} repeats this run)");
    let mut rng = Rng(seed);
    let interaction = edge.fake.command(DISCORD_ALICE, CHANNEL, "status", &[("version", "v1.2")]).to_string();
    let command = slash_command(ALICE, WAR_ROOM, "status", "t.fuzz", &edge.slack.response_url("t.fuzz")).body;
    let event = crate::slack_fake::reaction_event("Ev0FUZZ", ALICE, "white_check_mark", WAR_ROOM, "1.1", true).body;
    let click = crate::slack_fake::button_click(ALICE, WAR_ROOM, "1.1", "ray_approve", "t.click").body;
    let paths = [
        "/slack/commands",
        "/slack/events",
        "/slack/interactions",
        "/discord/interactions",
        "/healthz",
        "/metrics",
        "/",
        "/slack/commands/../events",
        "/%ff%00",
        "/discord/interactions?x=%zz",
    ];
    let types = [
        "application/json",
        "application/x-www-form-urlencoded",
        "text/plain",
        "multipart/form-data; boundary=zzz",
        "application/json; charset=utf-16",
        "\u{1}garbage",
        "",
    ];
    let methods = ["POST", "POST", "POST", "GET", "PUT", "DELETE", "PATCH", "OPTIONS", "BREW"];
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    let started = Instant::now();
    let runs = 400;
    for n in 0..runs {
        let path = *rng.pick(&paths);
        let base: &str = match path {
            "/slack/commands" => &command,
            "/slack/events" => &event,
            "/slack/interactions" => &click,
            _ => &interaction,
        };
        // The body: random bytes, a truncated or mutated real payload, or odd JSON.
        let mut body: Vec<u8> = match rng.below(6) {
            0 => {
                let n = rng.below(4096);
                rng.bytes(n)
            }
            1 => base.as_bytes()[..rng.below(base.len())].to_vec(),
            2 => {
                let mut b = base.as_bytes().to_vec();
                for _ in 0..1 + rng.below(8) {
                    let i = rng.below(b.len());
                    b[i] = rng.next() as u8;
                }
                b
            }
            3 => rng
                .pick(&[
                    "{}",
                    "[]",
                    "null",
                    "{\"type\": 99}",
                    "{\"type\": 2, \"data\": null}",
                    "payload=%7B%7D",
                    "payload=null",
                ])
                .as_bytes()
                .to_vec(),
            4 => format!("{}{}", "[".repeat(1 + rng.below(50_000)), "]".repeat(rng.below(3))).into_bytes(),
            _ => base.as_bytes().to_vec(),
        };
        if rng.below(10) == 0 {
            body.clear();
        }
        let mut head = format!("{} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n", rng.pick(&methods));
        let content_type = *rng.pick(&types);
        if !content_type.is_empty() {
            head.push_str(&format!("Content-Type: {content_type}\r\n"));
        }
        // Half of the requests are correctly signed, so they get past the signature checks.
        let body_text = String::from_utf8_lossy(&body).into_owned();
        if rng.below(2) == 0 {
            if path.starts_with("/discord") {
                let ts = now_secs().to_string();
                let mut message = ts.as_bytes().to_vec();
                message.extend_from_slice(&body);
                let sig = hex::encode(edge.key.sign(&message).to_bytes());
                head.push_str(&format!("X-Signature-Ed25519: {sig}\r\nX-Signature-Timestamp: {ts}\r\n"));
            } else {
                // slack-morphism verifies the body as text; sign what it will see.
                body = body_text.clone().into_bytes();
                let ts = unix_now();
                head.push_str(&format!(
                    "X-Slack-Request-Timestamp: {ts}\r\nX-Slack-Signature: {}\r\n",
                    sign(SECRET, ts, &body_text)
                ));
            }
        }
        match rng.below(12) {
            0 => head.push_str(&format!("X-Huge: {}\r\n", "h".repeat(64 * 1024))),
            1 => head.push_str(&format!("X-Huger: {}\r\n", "h".repeat(600 * 1024))),
            2 => (0..150).for_each(|i| head.push_str(&format!("X-Many-{i}: {i}\r\n"))),
            3 => head.push_str("X-Slack-Request-Timestamp: -9223372036854775808\r\n"),
            4 => head.push_str("X-Signature-Timestamp: 99999999999999999999999\r\n"),
            _ => {}
        }
        head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        let (status, text) = exchange(&edge.addr, &head, &body);
        let Some(status) = status else {
            panic!("request {n} (seed {seed}) got no answer: {}\n{:?}", head.lines().next().unwrap_or(""), &text);
        };
        assert!(status < 500, "request {n} (seed {seed}): {status} for {:?}\n{text}", head.lines().next());
        *statuses.entry(status).or_default() += 1;
    }
    println!("{runs} requests in {:?}: {statuses:?}", started.elapsed());
    edge.assert_alive();
    assert_eq!(edge.slack_command("help"), 200, "the server still answers");
    let log = std::fs::read_to_string(edge._ws.path().join("serve.log")).unwrap_or_default();
    assert!(!log.contains("panicked"), "raybot panicked:\n{log}");
}

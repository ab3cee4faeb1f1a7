//! A fake Slack for tests and the ack-latency load program, on loopback:
//! - the Web API (`auth.test`, `chat.postMessage`, `chat.update`, `reactions.add`,
//!   `chat.postEphemeral`, `apps.connections.open`) answering with Slack's real response shapes,
//!   checking the bot token, recording every call, and able to answer a method once with 429 +
//!   `Retry-After`;
//! - `response_url` targets (`/response/<id>`);
//! - request builders signed exactly as Slack signs them (`v0=` + hex HMAC-SHA256 of
//!   `v0:{timestamp}:{body}` with the signing secret), in Slack's payload shapes: slash command
//!   forms, `event_callback` JSON and `block_actions` interaction forms.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

/// raybot's bot user as the fake's `auth.test` names it.
pub const BOT_USER: &str = "U0RAYBOT00";
pub const BOT_ID: &str = "B0RAYBOT00";
pub const TEAM: &str = "T0ACME0001";

/// One Web API call as the fake received it.
#[derive(Debug, Clone)]
pub struct Call {
    /// `chat.postMessage`, …, or `response_url` for posts to a response URL.
    pub method: String,
    /// The JSON (or form fields as a JSON object) raybot sent; for response URLs, `id` is added.
    pub body: Value,
    /// HTTP status the fake answered with.
    pub status: u16,
    /// When it arrived.
    pub at: Instant,
    /// What the fake answered (`ts` of a post is `answer["ts"]`).
    pub answer: Value,
}

impl Call {
    pub fn text(&self) -> &str {
        self.body["text"].as_str().unwrap_or("")
    }

    /// The `ts` Slack gave a posted message.
    pub fn ts(&self) -> String {
        self.answer["ts"].as_str().unwrap_or("").to_string()
    }
}

#[derive(Default)]
struct Inner {
    calls: Vec<Call>,
    next_ts: u64,
    /// method → Retry-After seconds for its next call.
    rate_limit: HashMap<String, u64>,
    /// What `apps.connections.open` hands out.
    socket_url: Option<String>,
    /// method → how long each call takes (a slow platform).
    latency: HashMap<String, Duration>,
    /// Slack's own limit: a `chat.postMessage` less than this after the previous one is answered
    /// 429 with `Retry-After: 1`.
    post_interval: Option<Duration>,
    /// When the last `chat.postMessage` was taken.
    last_post: Option<Instant>,
    /// Posts after this many are taken (they are in the channel) and never answered: the
    /// client's process dies not knowing they went out.
    answer_posts: Option<usize>,
}

/// The fake Slack Web API.
#[derive(Clone)]
pub struct FakeSlack {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    token: String,
    channel: String,
    inner: Arc<Mutex<Inner>>,
}

impl FakeSlack {
    /// Starts on a free loopback port; accepts `token` as the bot token and `channel` as the only
    /// channel that exists.
    pub async fn start(token: &str, channel: &str) -> FakeSlack {
        let fake = FakeSlack {
            base: String::new(),
            token: token.to_string(),
            channel: channel.to_string(),
            inner: Arc::new(Mutex::new(Inner::default())),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind fake slack");
        let base = format!("http://{}", listener.local_addr().unwrap());
        let fake = FakeSlack { base, ..fake };
        let app = Router::new()
            .route("/api/{method}", post(api).get(api))
            .route("/response/{id}", post(response_url))
            .with_state(fake.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        fake
    }

    /// The Web API base URL for `SLACK_API_URL`.
    pub fn api_url(&self) -> String {
        format!("{}/api", self.base)
    }

    /// A `response_url` for a slash command.
    pub fn response_url(&self, id: &str) -> String {
        format!("{}/response/{id}", self.base)
    }

    /// The next call of `method` is answered 429 with `Retry-After: secs`.
    pub fn rate_limit_next(&self, method: &str, secs: u64) {
        self.inner.lock().unwrap().rate_limit.insert(method.to_string(), secs);
    }

    /// Every call of `method` takes `d` before it is answered.
    pub fn set_latency(&self, method: &str, d: Duration) {
        self.inner.lock().unwrap().latency.insert(method.to_string(), d);
    }

    /// Enforces Slack's posting limit: `chat.postMessage` calls closer than `d` get 429.
    pub fn pace_posts(&self, d: Duration) {
        self.inner.lock().unwrap().post_interval = Some(d);
    }

    /// After `n` more successful posts, the channel takes each further post but never answers
    /// it (`None`: answer again).
    pub fn stop_answering_posts_after(&self, n: Option<usize>) {
        let mut i = self.inner.lock().unwrap();
        let sent = i.calls.iter().filter(|c| c.method == "chat.postMessage" && c.status == 200).count();
        i.answer_posts = n.map(|n| sent + n);
    }

    /// What `apps.connections.open` answers (a `ws://` URL of a fake Socket Mode server).
    pub fn set_socket_url(&self, url: &str) {
        self.inner.lock().unwrap().socket_url = Some(url.to_string());
    }

    /// Every call so far of `method` (all methods when `None`), in order.
    pub fn calls(&self, method: Option<&str>) -> Vec<Call> {
        self.inner.lock().unwrap().calls.iter().filter(|c| method.is_none_or(|m| c.method == m)).cloned().collect()
    }

    /// Successful `chat.postMessage` calls: what the channel shows, in order.
    pub fn posts(&self) -> Vec<Call> {
        self.calls(Some("chat.postMessage")).into_iter().filter(|c| c.status == 200).collect()
    }

    /// Ephemeral messages (`chat.postEphemeral`) to `user`.
    pub fn ephemerals(&self, user: &str) -> Vec<String> {
        self.calls(Some("chat.postEphemeral"))
            .into_iter()
            .filter(|c| c.body["user"] == user)
            .map(|c| c.text().to_string())
            .collect()
    }

    /// Waits until a call of `method` whose text contains `needle` arrives; returns it.
    pub async fn wait_for(&self, method: &str, needle: &str, limit: Duration) -> Call {
        let start = Instant::now();
        loop {
            if let Some(c) = self.calls(Some(method)).into_iter().find(|c| c.status == 200 && c.text().contains(needle))
            {
                return c;
            }
            if start.elapsed() > limit {
                let seen: Vec<String> = self.calls(None).iter().map(|c| format!("{} {}", c.method, c.text())).collect();
                panic!("no {method} containing {needle:?} within {limit:?}; calls so far:\n{}", seen.join("\n"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `conversations.history`: the channel's messages at or after `oldest`, newest first, in
    /// pages of `limit` with a `next_cursor`; metadata only with `include_all_metadata` (raybot
    /// reads its own posts' metadata that way).
    fn history(&self, args: &Value) -> Value {
        let num = |k: &str| args[k].as_str().and_then(|v| v.parse::<f64>().ok());
        let oldest = num("oldest").unwrap_or(0.0);
        let limit = num("limit").unwrap_or(100.0).clamp(1.0, 999.0) as usize;
        let start =
            args["cursor"].as_str().and_then(|c| c.strip_prefix("page_")).and_then(|n| n.parse().ok()).unwrap_or(0);
        let metadata = args["include_all_metadata"].as_str() == Some("true");
        let mut all: Vec<Value> = self
            .posts()
            .into_iter()
            .filter_map(|c| {
                let message = c.answer["message"].clone();
                let ts: f64 = message["ts"].as_str()?.parse().ok()?;
                (ts >= oldest).then_some(message)
            })
            .map(|mut m| {
                if !metadata {
                    m.as_object_mut().map(|o| o.remove("metadata"));
                }
                m
            })
            .collect();
        all.reverse();
        let page: Vec<Value> = all.iter().skip(start).take(limit).cloned().collect();
        let more = start + limit < all.len();
        let next = if more { format!("page_{}", start + limit) } else { String::new() };
        json!({"ok": true, "messages": page, "has_more": more, "response_metadata": {"next_cursor": next}})
    }

    fn record(&self, method: &str, body: Value, status: u16, answer: &Value) {
        let call = Call { method: method.to_string(), body, status, at: Instant::now(), answer: answer.clone() };
        self.inner.lock().unwrap().calls.push(call);
    }

    /// Slack's message timestamps: the time of posting (µs), unique and increasing in a channel.
    fn next_ts(&self) -> String {
        let mut i = self.inner.lock().unwrap();
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros() as u64;
        i.next_ts = now.max(i.next_ts + 1);
        format!("{}.{:06}", i.next_ts / 1_000_000, i.next_ts % 1_000_000)
    }
}

fn json_ok(v: Value) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json; charset=utf-8")], v.to_string()).into_response()
}

/// Request bodies arrive as JSON (slack-morphism) or as forms (other clients).
fn parse_body(headers: &HeaderMap, body: &[u8]) -> Value {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if ct.starts_with("application/x-www-form-urlencoded") {
        let mut m = serde_json::Map::new();
        for (k, v) in form_decode(std::str::from_utf8(body).unwrap_or("")) {
            m.insert(k, Value::String(v));
        }
        Value::Object(m)
    } else {
        serde_json::from_slice(body).unwrap_or(Value::Null)
    }
}

async fn api(
    State(fake): State<FakeSlack>,
    Path(method): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut body = parse_body(&headers, &body);
    // Read methods (`conversations.history`) take their arguments in the query string.
    if let (Some(q), Value::Null) = (query.as_deref(), &body) {
        let mut m = serde_json::Map::new();
        for (k, v) in form_decode(q) {
            m.insert(k, Value::String(v));
        }
        body = Value::Object(m);
    }
    let auth = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or("");
    let expected = if method == "apps.connections.open" { "xapp-" } else { fake.token.as_str() };
    if auth.strip_prefix("Bearer ").is_none_or(|t| !t.starts_with(expected)) {
        let answer = json!({"ok": false, "error": "invalid_auth"});
        fake.record(&method, body, 200, &answer);
        return json_ok(answer);
    }
    let latency = fake.inner.lock().unwrap().latency.get(&method).copied();
    if let Some(d) = latency {
        tokio::time::sleep(d).await;
    }
    let limited = {
        let mut i = fake.inner.lock().unwrap();
        let mut limited = i.rate_limit.remove(&method);
        if method == "chat.postMessage" {
            let now = Instant::now();
            match (i.post_interval, i.last_post) {
                (Some(gap), Some(last)) if now < last + gap => limited = limited.or(Some(1)),
                _ => i.last_post = Some(now),
            }
        }
        limited
    };
    if let Some(secs) = limited {
        fake.record(&method, body, 429, &Value::Null);
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [
                (header::CONTENT_TYPE, "application/json; charset=utf-8".to_string()),
                (header::RETRY_AFTER, secs.to_string()),
            ],
            json!({"ok": false, "error": "ratelimited"}).to_string(),
        )
            .into_response();
    }
    let channel_ok = body["channel"].as_str() == Some(fake.channel.as_str());
    let answer = match method.as_str() {
        "auth.test" => json!({"ok": true, "url": "https://acme.slack.com/", "team": "Acme", "user": "raybot",
            "team_id": TEAM, "user_id": BOT_USER, "bot_id": BOT_ID, "is_enterprise_install": false}),
        "chat.postMessage" | "chat.postEphemeral" | "chat.update" | "reactions.add" if !channel_ok => {
            json!({"ok": false, "error": "channel_not_found"})
        }
        "chat.postMessage" => {
            let ts = fake.next_ts();
            let mut message = json!({"type": "message", "subtype": "bot_message", "text": body["text"], "ts": ts,
                "user": BOT_USER, "bot_id": BOT_ID, "team": TEAM});
            if !body["blocks"].is_null() {
                message["blocks"] = body["blocks"].clone();
            }
            if !body["metadata"].is_null() {
                message["metadata"] = body["metadata"].clone();
            }
            json!({"ok": true, "channel": fake.channel, "ts": ts, "message": message})
        }
        "chat.update" => {
            let edited = fake.next_ts();
            let mut message = json!({"type": "message", "text": body["text"], "user": BOT_USER, "bot_id": BOT_ID,
                "team": TEAM, "edited": {"user": BOT_USER, "ts": edited}});
            if !body["blocks"].is_null() {
                message["blocks"] = body["blocks"].clone();
            }
            json!({"ok": true, "channel": fake.channel, "ts": body["ts"], "text": body["text"], "message": message})
        }
        "reactions.add" => json!({"ok": true}),
        "conversations.history" if body["channel"].as_str() != Some(fake.channel.as_str()) => {
            json!({"ok": false, "error": "channel_not_found"})
        }
        "conversations.history" => fake.history(&body),
        "chat.postEphemeral" => json!({"ok": true, "message_ts": fake.next_ts()}),
        "apps.connections.open" => match fake.inner.lock().unwrap().socket_url.clone() {
            Some(url) => json!({"ok": true, "url": url}),
            None => json!({"ok": false, "error": "not_allowed_token_type"}),
        },
        _ => json!({"ok": false, "error": "unknown_method"}),
    };
    fake.record(&method, body, 200, &answer);
    let unanswered = method == "chat.postMessage" && {
        let i = fake.inner.lock().unwrap();
        let sent = i.calls.iter().filter(|c| c.method == "chat.postMessage" && c.status == 200).count();
        i.answer_posts.is_some_and(|n| sent > n)
    };
    if unanswered {
        std::future::pending::<()>().await;
    }
    json_ok(answer)
}

async fn response_url(
    State(fake): State<FakeSlack>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut body = parse_body(&headers, &body);
    body["id"] = Value::String(id);
    let answer = json!({"ok": true});
    fake.record("response_url", body, 200, &answer);
    json_ok(answer)
}

// ---- Socket Mode ---------------------------------------------------------------------------------

/// A fake Socket Mode server: `apps.connections.open` hands out its `ws://` URL; it greets each
/// connection with `hello`, sends envelopes to the first connection and records acknowledgements.
#[derive(Clone)]
pub struct FakeSocket {
    outgoing: Arc<Mutex<Vec<tokio::sync::mpsc::UnboundedSender<String>>>>,
    acks: Arc<Mutex<Vec<Value>>>,
}

impl FakeSlack {
    /// Starts the Socket Mode side and points `apps.connections.open` at it.
    pub async fn socket_mode(&self) -> FakeSocket {
        use futures_util::{SinkExt, StreamExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind fake socket");
        self.set_socket_url(&format!("ws://{}/link/?ticket=fake", listener.local_addr().unwrap()));
        let socket = FakeSocket { outgoing: Arc::default(), acks: Arc::default() };
        let s = socket.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else { continue };
                let (mut sink, mut stream) = ws.split();
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
                s.outgoing.lock().unwrap().push(tx);
                let hello = json!({"type": "hello", "num_connections": 1,
                    "debug_info": {"host": "applink-fake", "approximate_connection_time": 18060},
                    "connection_info": {"app_id": "A0RAYBOT01"}});
                let acks = s.acks.clone();
                tokio::spawn(async move {
                    use tokio_tungstenite::tungstenite::Message;
                    if sink.send(Message::text(hello.to_string())).await.is_err() {
                        return;
                    }
                    loop {
                        tokio::select! {
                            out = rx.recv() => match out {
                                Some(text) => if sink.send(Message::text(text)).await.is_err() { return },
                                None => return,
                            },
                            msg = stream.next() => match msg {
                                Some(Ok(Message::Text(t))) => {
                                    if let Ok(v) = serde_json::from_str::<Value>(t.as_str()) {
                                        acks.lock().unwrap().push(v);
                                    }
                                }
                                Some(Ok(Message::Ping(p))) => { let _ = sink.send(Message::Pong(p)).await; }
                                Some(Ok(_)) => {}
                                _ => return,
                            },
                        }
                    }
                });
            }
        });
        socket
    }
}

impl FakeSocket {
    /// Waits for raybot to connect.
    pub async fn connected(&self, limit: Duration) {
        let start = Instant::now();
        while self.outgoing.lock().unwrap().is_empty() {
            assert!(start.elapsed() < limit, "raybot never opened the Socket Mode connection");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends an envelope (`slash_commands`, `events_api`, `interactive`) and waits for its ack.
    pub async fn deliver(&self, envelope_id: &str, kind: &str, payload: Value, limit: Duration) -> Value {
        let envelope = json!({"envelope_id": envelope_id, "type": kind, "payload": payload,
            "accepts_response_payload": kind != "events_api", "retry_attempt": 0, "retry_reason": ""});
        let sent = Instant::now();
        let tx = self.outgoing.lock().unwrap().first().cloned().expect("a connection");
        tx.send(envelope.to_string()).expect("connection open");
        loop {
            if let Some(a) = self.acks.lock().unwrap().iter().find(|a| a["envelope_id"] == envelope_id) {
                return a.clone();
            }
            assert!(sent.elapsed() < limit, "no ack for envelope {envelope_id} within {limit:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A slash command as Socket Mode carries it (the form fields as JSON).
pub fn slash_command_payload(user: &str, channel: &str, text: &str, trigger_id: &str, response_url: &str) -> Value {
    json!({"token": "gIkuvaNzQIHg97ATvDxqgjtO", "team_id": TEAM, "team_domain": "acme", "channel_id": channel,
        "channel_name": "release-war-room", "user_id": user, "user_name": user, "command": "/ray", "text": text,
        "api_app_id": "A0RAYBOT01", "is_enterprise_install": "false", "response_url": response_url,
        "trigger_id": trigger_id})
}

// ---- requests signed as Slack signs them -------------------------------------------------------

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// `v0=<hex HMAC-SHA256 of "v0:{ts}:{body}">`, Slack's `X-Slack-Signature`.
pub fn sign(secret: &str, ts: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("hmac key");
    mac.update(format!("v0:{ts}:{body}").as_bytes());
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

/// How a test request is signed.
#[derive(Clone, Copy, Debug)]
pub enum Signature<'a> {
    /// Correctly, now.
    Valid,
    /// Correctly, but with a timestamp this many seconds old.
    Stale(i64),
    /// With another secret.
    Forged(&'a str),
    /// No signature headers at all.
    Missing,
}

/// A request as Slack would send it.
pub struct SlackRequest {
    pub path: &'static str,
    pub content_type: &'static str,
    pub body: String,
    /// Extra headers, e.g. `X-Slack-Retry-Num`.
    pub headers: Vec<(&'static str, String)>,
}

impl SlackRequest {
    /// Posts it to `server` (`http://127.0.0.1:PORT`) signed with `secret` as `sig` says.
    pub async fn send(
        &self,
        http: &reqwest::Client,
        server: &str,
        secret: &str,
        sig: Signature<'_>,
    ) -> reqwest::Response {
        let mut req = http
            .post(format!("{server}{}", self.path))
            .header("content-type", self.content_type)
            .body(self.body.clone());
        let (ts, key) = match sig {
            Signature::Valid => (unix_now(), Some(secret)),
            Signature::Stale(age) => (unix_now() - age, Some(secret)),
            Signature::Forged(other) => (unix_now(), Some(other)),
            Signature::Missing => (unix_now(), None),
        };
        if let Some(key) = key {
            req = req
                .header("x-slack-request-timestamp", ts.to_string())
                .header("x-slack-signature", sign(key, ts, &self.body));
        }
        for (k, v) in &self.headers {
            req = req.header(*k, v);
        }
        req.send().await.expect("request to raybot")
    }

    /// Adds a header.
    pub fn with_header(mut self, k: &'static str, v: impl Into<String>) -> SlackRequest {
        self.headers.push((k, v.into()));
        self
    }
}

/// A `/ray` slash command as Slack posts it to the command URL.
pub fn slash_command(user: &str, channel: &str, text: &str, trigger_id: &str, response_url: &str) -> SlackRequest {
    let fields = [
        ("token", "gIkuvaNzQIHg97ATvDxqgjtO"),
        ("team_id", TEAM),
        ("team_domain", "acme"),
        ("channel_id", channel),
        ("channel_name", "release-war-room"),
        ("user_id", user),
        ("user_name", user),
        ("command", "/ray"),
        ("text", text),
        ("api_app_id", "A0RAYBOT01"),
        ("is_enterprise_install", "false"),
        ("response_url", response_url),
        ("trigger_id", trigger_id),
    ];
    SlackRequest {
        path: "/slack/commands",
        content_type: "application/x-www-form-urlencoded",
        body: form_encode(&fields),
        headers: Vec::new(),
    }
}

/// A `reaction_added` (or `reaction_removed`) Events API callback on message `ts` in `channel`.
pub fn reaction_event(event_id: &str, user: &str, emoji: &str, channel: &str, ts: &str, added: bool) -> SlackRequest {
    let body = json!({
        "token": "XXYYZZ",
        "team_id": TEAM,
        "api_app_id": "A0RAYBOT01",
        "event": {
            "type": if added { "reaction_added" } else { "reaction_removed" },
            "user": user,
            "reaction": emoji,
            "item_user": BOT_USER,
            "item": {"type": "message", "channel": channel, "ts": ts},
            "event_ts": format!("{}.000200", unix_now()),
        },
        "type": "event_callback",
        "event_id": event_id,
        "event_time": unix_now(),
        "authorizations": [{"enterprise_id": null, "team_id": TEAM, "user_id": BOT_USER, "is_bot": true, "is_enterprise_install": false}],
        "is_ext_shared_channel": false,
        "event_context": "4-eyJldCI6InJlYWN0aW9uX2FkZGVkIn0",
    });
    SlackRequest {
        path: "/slack/events",
        content_type: "application/json",
        body: body.to_string(),
        headers: Vec::new(),
    }
}

/// The `url_verification` handshake.
pub fn url_verification(challenge: &str) -> SlackRequest {
    let body = json!({"token": "Jhj5dZrVaK7ZwHHjRyZWjbDl", "challenge": challenge, "type": "url_verification"});
    SlackRequest {
        path: "/slack/events",
        content_type: "application/json",
        body: body.to_string(),
        headers: Vec::new(),
    }
}

/// A `block_actions` interaction: `user` clicked the button `action_id` on message `ts`.
pub fn button_click(user: &str, channel: &str, ts: &str, action_id: &str, trigger_id: &str) -> SlackRequest {
    let payload = button_click_payload(user, channel, ts, action_id, trigger_id);
    SlackRequest {
        path: "/slack/interactions",
        content_type: "application/x-www-form-urlencoded",
        body: form_encode(&[("payload", &payload.to_string())]),
        headers: Vec::new(),
    }
}

/// The `block_actions` JSON of [`button_click`] (Socket Mode carries it as is).
pub fn button_click_payload(user: &str, channel: &str, ts: &str, action_id: &str, trigger_id: &str) -> Value {
    json!({
        "type": "block_actions",
        "user": {"id": user, "username": user, "name": user, "team_id": TEAM},
        "api_app_id": "A0RAYBOT01",
        "token": "9s8d9as89d8as9d8as989",
        "container": {"type": "message", "message_ts": ts, "channel_id": channel, "is_ephemeral": false},
        "trigger_id": trigger_id,
        "team": {"id": TEAM, "domain": "acme"},
        "enterprise": null,
        "is_enterprise_install": false,
        "channel": {"id": channel, "name": "release-war-room"},
        "message": {"type": "message", "user": BOT_USER, "ts": ts, "bot_id": BOT_ID, "text": "[APPROVAL REQUEST]", "team": TEAM},
        "state": {"values": {}},
        "response_url": format!("https://hooks.slack.com/actions/{TEAM}/1/{trigger_id}"),
        "actions": [{
            "action_id": action_id,
            "block_id": "ray_approval",
            "text": {"type": "plain_text", "text": if action_id.contains("approve") { "Approve" } else { "Reject" }, "emoji": true},
            "value": action_id.trim_start_matches("ray_"),
            "style": "primary",
            "type": "button",
            "action_ts": format!("{}.000300", unix_now()),
        }],
    })
}

/// `application/x-www-form-urlencoded`, as Slack sends it.
pub fn form_encode(fields: &[(&str, &str)]) -> String {
    fn enc(s: &str) -> String {
        let mut out = String::new();
        for b in s.bytes() {
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => out.push(b as char),
                b' ' => out.push('+'),
                _ => out.push_str(&format!("%{b:02X}")),
            }
        }
        out
    }
    fields.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect::<Vec<_>>().join("&")
}

fn form_decode(s: &str) -> Vec<(String, String)> {
    fn dec(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < b.len() => {
                    out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap_or(b'?'));
                    i += 2;
                }
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (dec(k), dec(v))
        })
        .collect()
}

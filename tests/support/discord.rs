//! A fake Discord on loopback, speaking the real wire format: REST under `/api/v10` (gateway
//! discovery, current user, channel messages, reactions, interaction callbacks, webhook edits and
//! followups, application command registration) with `X-RateLimit-*` headers and an optional 429,
//! and a WebSocket gateway (Hello op 10, Identify op 2, READY, heartbeat op 1 → ack op 11,
//! dispatches op 0 with sequence numbers). It records everything it receives.
//!
//! Tests are synchronous: the fake runs on its own tokio runtime and every helper blocks.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// The war-room channel, guild, application and bot ids of the sample configuration.
pub const CHANNEL: &str = "200000000000000001";
pub const GUILD: &str = "300000000000000001";
pub const APP: &str = "400000000000000001";
pub const BOT: &str = "400000000000000001";
/// People of `config/release-approvers.yaml` (alice … erin) and a stranger.
pub const ALICE: &str = "100000000000000001";
pub const BOB: &str = "100000000000000002";
pub const CAROL: &str = "100000000000000003";
pub const DAVE: &str = "100000000000000004";
pub const ERIN: &str = "100000000000000005";
pub const MALLORY: &str = "100000000000000099";

/// The heartbeat interval the fake gateway asks for (short, so tests see heartbeats).
pub const HEARTBEAT_MS: u64 = 1000;

/// One REST request as the fake received it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// Path with percent-escapes decoded, e.g. `/api/v10/channels/1/messages/2/reactions/✅/@me`.
    pub path: String,
    pub body: Value,
    pub authorization: String,
    pub at: Instant,
    /// The status the fake answered.
    pub status: u16,
}

/// A channel message as it stands now.
#[derive(Debug, Clone)]
pub struct Posted {
    pub id: String,
    pub content: String,
    pub components: Value,
    pub edits: usize,
}

#[derive(Default)]
struct State {
    requests: Vec<Request>,
    messages: BTreeMap<u64, Posted>,
    next_message: u64,
    /// Nonces of messages created with `enforce_nonce` (Discord keeps them a few minutes).
    nonces: BTreeMap<String, u64>,
    /// Answer the next request whose path contains this with a 429 and this `retry_after`.
    rate_limit: Option<(String, f64)>,
    /// Gateway: frames received (Identify, heartbeats …) and heartbeat acks sent.
    gateway_in: Vec<Value>,
    acks_sent: usize,
    connections: usize,
    dispatch: Option<mpsc::UnboundedSender<(String, Value)>>,
}

/// The running fake.
pub struct FakeDiscord {
    /// REST base for `DISCORD_API_URL`, e.g. `http://127.0.0.1:PORT`.
    pub api_url: String,
    /// `ws://127.0.0.1:PORT`.
    pub gateway_url: String,
    state: Arc<Mutex<State>>,
    rt: tokio::runtime::Runtime,
    next_interaction: Mutex<u64>,
}

impl FakeDiscord {
    pub fn start() -> FakeDiscord {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        let state = Arc::new(Mutex::new(State { next_message: 600_000_000_000_000_000, ..State::default() }));
        let (rest, ws) = rt.block_on(async {
            let rest = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind rest");
            let ws = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind ws");
            (rest, ws)
        });
        let rest_addr = rest.local_addr().unwrap();
        let ws_addr: SocketAddr = ws.local_addr().unwrap();
        let gateway_url = format!("ws://{ws_addr}");
        let app = {
            let state = state.clone();
            let gateway_url = gateway_url.clone();
            Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let state = state.clone();
                let gateway_url = gateway_url.clone();
                async move { rest_handler(state, &gateway_url, method, uri, headers, body) }
            })
        };
        rt.spawn(async move {
            let _ = axum::serve(rest, app).await;
        });
        let gw_state = state.clone();
        rt.spawn(async move {
            while let Ok((stream, _)) = ws.accept().await {
                tokio::spawn(gateway_session(gw_state.clone(), stream));
            }
        });
        FakeDiscord {
            api_url: format!("http://{rest_addr}"),
            gateway_url,
            state,
            rt,
            next_interaction: Mutex::new(500_000_000_000_000_000),
        }
    }

    /// The next request whose path contains `path_part` gets a 429 with `retry_after` seconds.
    pub fn rate_limit_next(&self, path_part: &str, retry_after: f64) {
        self.state.lock().unwrap().rate_limit = Some((path_part.to_string(), retry_after));
    }

    pub fn requests(&self) -> Vec<Request> {
        self.state.lock().unwrap().requests.clone()
    }

    /// Channel messages in the order they were created, as they stand now.
    pub fn messages(&self) -> Vec<Posted> {
        self.state.lock().unwrap().messages.values().cloned().collect()
    }

    /// Everything the channel shows, one message after the other.
    pub fn transcript(&self) -> String {
        self.messages()
            .iter()
            .map(|m| format!("[{}{}] {}", m.id, if m.edits > 0 { " edited" } else { "" }, m.content))
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn gateway_frames(&self) -> Vec<Value> {
        self.state.lock().unwrap().gateway_in.clone()
    }

    pub fn heartbeat_acks(&self) -> usize {
        self.state.lock().unwrap().acks_sent
    }

    /// Waits until `cond` holds on the fake (up to `limit`), else panics with the transcript.
    pub fn wait_for(&self, what: &str, limit: Duration, cond: impl Fn(&FakeDiscord) -> bool) {
        let start = Instant::now();
        while !cond(self) {
            if start.elapsed() > limit {
                panic!("timed out waiting for {what}; channel:\n{}\nrequests: {:#?}", self.transcript(), self.paths());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until a channel message contains `text`; returns it.
    pub fn wait_message(&self, text: &str, limit: Duration) -> Posted {
        self.wait_for(&format!("a message containing {text:?}"), limit, |f| {
            f.messages().iter().any(|m| m.content.contains(text))
        });
        self.messages().into_iter().find(|m| m.content.contains(text)).unwrap()
    }

    /// Waits until a message containing `text` carries its buttons (raybot adds them with an edit
    /// once the message id is known); returns it.
    pub fn wait_buttons(&self, text: &str, limit: Duration) -> Posted {
        let has_buttons = |m: &Posted| m.content.contains(text) && m.components[0]["components"].is_array();
        self.wait_for(&format!("buttons on a message containing {text:?}"), limit, |f| {
            f.messages().iter().any(has_buttons)
        });
        self.messages().into_iter().find(has_buttons).unwrap()
    }

    fn paths(&self) -> Vec<String> {
        self.requests().iter().map(|r| format!("{} {} → {}", r.method, r.path, r.status)).collect()
    }

    /// True once a gateway client identified and the fake sent READY.
    pub fn gateway_ready(&self) -> bool {
        self.state.lock().unwrap().dispatch.is_some()
    }

    /// Sends a dispatch (op 0) on the gateway connection.
    pub fn dispatch(&self, event: &str, data: Value) {
        let tx = self.state.lock().unwrap().dispatch.clone().expect("no gateway connection");
        tx.send((event.to_string(), data)).expect("gateway connection gone");
    }

    fn interaction_id(&self) -> String {
        let mut n = self.next_interaction.lock().unwrap();
        *n += 1;
        n.to_string()
    }

    /// A slash command `/ray <sub>` with string options, by `user` in `channel`: the
    /// INTERACTION_CREATE payload Discord sends (application command, subcommand option).
    pub fn command(&self, user: &str, channel: &str, sub: &str, options: &[(&str, &str)]) -> Value {
        let id = self.interaction_id();
        let opts: Vec<Value> = options.iter().map(|(n, v)| json!({ "name": n, "type": 3, "value": v })).collect();
        // Discord sends `options: []` for a subcommand without options.
        let sub_opt = json!({ "name": sub, "type": 1, "options": opts });
        let mut i = interaction_base(&id, user, channel, 2);
        i["data"] = json!({
            "id": "700000000000000001", "name": "ray", "type": 1, "guild_id": GUILD,
            "options": [sub_opt]
        });
        i
    }

    /// A click on a button with `custom_id` on `message` (MESSAGE_COMPONENT interaction).
    pub fn click(&self, user: &str, message: &Posted, custom_id: &str) -> Value {
        let id = self.interaction_id();
        let mut i = interaction_base(&id, user, CHANNEL, 3);
        i["data"] = json!({ "custom_id": custom_id, "component_type": 2 });
        i["message"] =
            message_json(message.id.parse().unwrap(), &message.content, &message.components, message.edits > 0);
        i
    }

    /// What the fake received for interaction `i`: its callback bodies, then webhook edits and
    /// followups made with its token.
    pub fn answers(&self, i: &Value) -> Vec<Value> {
        let (id, token) = (i["id"].as_str().unwrap(), i["token"].as_str().unwrap());
        self.requests()
            .into_iter()
            .filter(|r| r.path.contains(&format!("/interactions/{id}/")) || r.path.contains(&format!("/{token}")))
            .map(|r| json!({ "method": r.method, "path": r.path, "body": r.body }))
            .collect()
    }

    /// Waits for the answers to `i` until `cond` holds; returns them.
    pub fn wait_answers(&self, i: &Value, limit: Duration, cond: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        self.wait_for("interaction answers", limit, |f| cond(&f.answers(i)));
        self.answers(i)
    }

    /// A MESSAGE_REACTION_ADD / _REMOVE payload.
    pub fn reaction(&self, user: &str, message: &str, emoji: &str, added: bool) -> (String, Value) {
        let mut d = json!({
            "user_id": user, "channel_id": CHANNEL, "message_id": message, "guild_id": GUILD,
            "emoji": { "id": null, "name": emoji }, "burst": false, "type": 0
        });
        if added {
            d["member"] = member(user);
            d["message_author_id"] = json!(BOT);
            d["burst_colors"] = json!([]);
        }
        ((if added { "MESSAGE_REACTION_ADD" } else { "MESSAGE_REACTION_REMOVE" }).to_string(), d)
    }

    /// Runs `f` on the fake's runtime (for async clients in tests).
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }
}

fn user_json(id: &str) -> Value {
    let name = match id {
        ALICE => "alice",
        BOB => "bob",
        CAROL => "carol",
        DAVE => "dave",
        ERIN => "erin",
        BOT => "raybot",
        _ => "mallory",
    };
    json!({
        "id": id, "username": name, "discriminator": "0", "global_name": name, "avatar": null,
        "bot": id == BOT, "public_flags": 0, "avatar_decoration_data": null
    })
}

fn member(user: &str) -> Value {
    json!({
        "user": user_json(user), "roles": [], "joined_at": "2026-01-05T10:00:00.000000+00:00",
        "premium_since": null, "deaf": false, "mute": false, "flags": 0, "pending": false,
        "nick": null, "avatar": null, "communication_disabled_until": null,
        "permissions": "2248473465835073"
    })
}

/// The fields every guild interaction carries.
fn interaction_base(id: &str, user: &str, channel: &str, kind: u8) -> Value {
    json!({
        "id": id, "application_id": APP, "type": kind, "token": format!("tok-{id}"), "version": 1,
        "guild_id": GUILD, "channel_id": channel,
        "channel": { "id": channel, "type": 0, "name": "release-war-room", "guild_id": GUILD },
        "member": member(user),
        "app_permissions": "2248473465835073", "locale": "en-US", "guild_locale": "en-US",
        "entitlements": [], "authorizing_integration_owners": { "0": GUILD }, "context": 0,
        "attachment_size_limit": 10485760
    })
}

fn message_json(id: u64, content: &str, components: &Value, edited: bool) -> Value {
    json!({
        "id": id.to_string(), "channel_id": CHANNEL, "guild_id": GUILD, "author": user_json(BOT),
        "content": content, "timestamp": "2026-11-22T00:00:00.000000+00:00",
        "edited_timestamp": if edited { json!("2026-11-22T00:00:01.000000+00:00") } else { Value::Null },
        "tts": false, "mention_everyone": false, "mentions": [], "mention_roles": [], "attachments": [],
        "embeds": [], "pinned": false, "type": 0, "flags": 0, "components": components,
        "webhook_id": null, "application_id": null
    })
}

fn decode(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&path[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn rest_handler(
    state: Arc<Mutex<State>>,
    gateway_url: &str,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = decode(uri.path());
    let body_json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let authorization = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let mut s = state.lock().unwrap();
    let record = |s: &mut State, status: u16| {
        s.requests.push(Request {
            method: method.to_string(),
            path: path.clone(),
            body: body_json.clone(),
            authorization: authorization.clone(),
            at: Instant::now(),
            status,
        })
    };
    if let Some((part, retry_after)) = s.rate_limit.clone() {
        if path.contains(&part) {
            s.rate_limit = None;
            record(&mut s, 429);
            let mut r = (
                StatusCode::TOO_MANY_REQUESTS,
                axum::Json(json!({ "message": "You are being rate limited.", "retry_after": retry_after, "global": false, "code": 0 })),
            )
                .into_response();
            let h = r.headers_mut();
            h.insert("retry-after", HeaderValue::from_str(&retry_after.to_string()).unwrap());
            h.insert("x-ratelimit-limit", HeaderValue::from_static("5"));
            h.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
            h.insert("x-ratelimit-reset-after", HeaderValue::from_str(&retry_after.to_string()).unwrap());
            h.insert("x-ratelimit-bucket", HeaderValue::from_static("fakebucket"));
            h.insert("x-ratelimit-scope", HeaderValue::from_static("user"));
            return r;
        }
    }
    let segs: Vec<&str> = path.trim_start_matches("/api/v10/").split('/').collect();
    let m = method.as_str();
    let (status, reply): (u16, Option<Value>) = match (m, segs.as_slice()) {
        ("GET", ["gateway"]) => (200, Some(json!({ "url": gateway_url }))),
        ("GET", ["gateway", "bot"]) => (
            200,
            Some(json!({ "url": gateway_url, "shards": 1,
                "session_start_limit": { "total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1 } })),
        ),
        ("GET", ["users", "@me"]) => (200, Some(user_json(BOT))),
        ("POST", ["channels", channel, "messages"])
            if *channel == CHANNEL
                && body_json["enforce_nonce"] == json!(true)
                && body_json["nonce"].as_str().is_some_and(|n| s.nonces.contains_key(n)) =>
        {
            // Discord answers a repeated nonce with the message it already created.
            let id = s.nonces[body_json["nonce"].as_str().unwrap()];
            let m = s.messages[&id].clone();
            (200, Some(message_json(id, &m.content, &m.components, m.edits > 0)))
        }
        ("POST", ["channels", channel, "messages"]) if *channel == CHANNEL => {
            s.next_message += 1;
            let id = s.next_message;
            let content = body_json["content"].as_str().unwrap_or("").to_string();
            let components = body_json.get("components").cloned().unwrap_or(json!([]));
            s.messages.insert(
                id,
                Posted { id: id.to_string(), content: content.clone(), components: components.clone(), edits: 0 },
            );
            if let (Some(nonce), true) = (body_json["nonce"].as_str(), body_json["enforce_nonce"] == json!(true)) {
                s.nonces.insert(nonce.to_string(), id);
            }
            (200, Some(message_json(id, &content, &components, false)))
        }
        ("PATCH", ["channels", channel, "messages", id]) if *channel == CHANNEL => {
            match id.parse::<u64>().ok().and_then(|n| s.messages.get_mut(&n).map(|m| (n, m))) {
                Some((n, msg)) => {
                    if let Some(c) = body_json.get("content").and_then(Value::as_str) {
                        msg.content = c.to_string();
                    }
                    if let Some(c) = body_json.get("components") {
                        msg.components = c.clone();
                    }
                    msg.edits += 1;
                    let v = message_json(n, &msg.content, &msg.components, true);
                    (200, Some(v))
                }
                None => (404, Some(json!({ "message": "Unknown Message", "code": 10008 }))),
            }
        }
        ("PUT", ["channels", _, "messages", _, "reactions", _, "@me"]) => (204, None),
        ("POST", ["interactions", _, _, "callback"]) => (204, None),
        ("PATCH", ["webhooks", app, token, "messages", "@original"]) if *app == APP => {
            let content = body_json["content"].as_str().unwrap_or("");
            // Webhook messages of an interaction carry its ephemeral flag.
            let mut v = message_json(800_000_000_000_000_001, content, &json!([]), true);
            v["flags"] = json!(64);
            v["webhook_id"] = json!(APP);
            let _ = token;
            (200, Some(v))
        }
        ("POST", ["webhooks", app, _]) if *app == APP => {
            let content = body_json["content"].as_str().unwrap_or("");
            (200, Some(message_json(800_000_000_000_000_002, content, &json!([]), false)))
        }
        ("PUT", ["applications", app, "guilds", _, "commands"]) | ("PUT", ["applications", app, "commands"])
            if *app == APP =>
        {
            let cmds: Vec<Value> = body_json
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .enumerate()
                .map(|(n, mut c)| {
                    c["id"] = json!(format!("70000000000000000{}", n + 1));
                    c["application_id"] = json!(APP);
                    c["version"] = json!("1");
                    c["default_member_permissions"] = Value::Null;
                    c
                })
                .collect();
            (200, Some(json!(cmds)))
        }
        _ => (404, Some(json!({ "message": "404: Not Found", "code": 0 }))),
    };
    record(&mut s, status);
    let code = StatusCode::from_u16(status).unwrap();
    let mut r = match reply {
        Some(v) => (code, axum::Json(v)).into_response(),
        None => code.into_response(),
    };
    let h = r.headers_mut();
    h.insert("x-ratelimit-limit", HeaderValue::from_static("5"));
    h.insert("x-ratelimit-remaining", HeaderValue::from_static("4"));
    h.insert("x-ratelimit-reset-after", HeaderValue::from_static("0.5"));
    h.insert("x-ratelimit-bucket", HeaderValue::from_static("fakebucket"));
    r
}

async fn gateway_session(state: Arc<Mutex<State>>, stream: tokio::net::TcpStream) {
    let Ok(ws) = tokio_tungstenite::accept_async(stream).await else { return };
    let (mut tx, mut rx) = ws.split();
    state.lock().unwrap().connections += 1;
    let hello = json!({ "op": 10, "d": { "heartbeat_interval": HEARTBEAT_MS }, "s": null, "t": null });
    if tx.send(WsMessage::Text(hello.to_string())).await.is_err() {
        return;
    }
    let (dtx, mut drx) = mpsc::unbounded_channel::<(String, Value)>();
    let mut seq = 0u64;
    loop {
        tokio::select! {
            frame = rx.next() => {
                let Some(Ok(frame)) = frame else { break };
                let text = match frame {
                    WsMessage::Text(t) => t,
                    WsMessage::Binary(b) => String::from_utf8_lossy(&b).into_owned(),
                    WsMessage::Close(_) => break,
                    _ => continue,
                };
                let Ok(v) = serde_json::from_str::<Value>(&text) else { continue };
                let op = v["op"].as_u64().unwrap_or(99);
                // Never keep the token the client identified with.
                let mut kept = v.clone();
                if kept["d"].get("token").is_some() {
                    kept["d"]["token"] = json!(if kept["d"]["token"].as_str().is_some_and(|t| !t.is_empty()) { "<present>" } else { "<missing>" });
                }
                state.lock().unwrap().gateway_in.push(kept);
                match op {
                    1 => {
                        let ack = json!({ "op": 11, "d": null, "s": null, "t": null });
                        if tx.send(WsMessage::Text(ack.to_string())).await.is_err() { break }
                        state.lock().unwrap().acks_sent += 1;
                    }
                    2 => {
                        seq += 1;
                        let ready = json!({ "op": 0, "s": seq, "t": "READY", "d": {
                            "v": 10, "user": { "id": BOT, "username": "raybot", "discriminator": "0", "global_name": null,
                                "avatar": null, "bot": true, "verified": true, "mfa_enabled": false, "flags": 0, "email": null },
                            "guilds": [{ "id": GUILD, "unavailable": true }],
                            "session_id": "fake-session-1", "resume_gateway_url": "ws://127.0.0.1:1",
                            "shard": [0, 1], "application": { "id": APP, "flags": 0 },
                            "private_channels": [], "relationships": [], "user_settings": {}, "presences": [],
                            "guild_join_requests": [], "geo_ordered_rtc_regions": [], "auth": {}
                        }});
                        if tx.send(WsMessage::Text(ready.to_string())).await.is_err() { break }
                        state.lock().unwrap().dispatch = Some(dtx.clone());
                    }
                    _ => {}
                }
            }
            Some((t, d)) = drx.recv() => {
                seq += 1;
                let frame = json!({ "op": 0, "s": seq, "t": t, "d": d });
                if tx.send(WsMessage::Text(frame.to_string())).await.is_err() { break }
            }
        }
    }
    state.lock().unwrap().dispatch = None;
}

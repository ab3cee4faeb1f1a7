//! Ack latency of the Slack slash-command endpoint: starts the fake Slack Web API
//! (`tests/support/slack.rs`) and a real `raybot serve` on loopback, sends 1,000 signed
//! `/ray status` commands one after another (each answered through the driver, privately, inside
//! Slack's 3-second window), then 1,000 more from 8 concurrent senders, and prints p50 / p90 / p99 /
//! max of the time until raybot's HTTP answer.
//!
//! ```text
//! cargo build --bin raybot && cargo run --example slack_ack_latency
//! RAYBOT_BIN=target/release/raybot cargo run --release --example slack_ack_latency   # optimised
//! ```
//! Options: `N=1000` (requests per run), `COMMAND="status"` (text after `/ray`).

#[path = "../tests/support/slack.rs"]
mod slack_fake;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use slack_fake::{FakeSlack, Signature, slash_command};

const TOKEN: &str = "xoxb-load-0000";
const SECRET: &str = "load-test-signing-secret";
const WAR_ROOM: &str = "C0WARROOM01";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::var("N").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    let text = std::env::var("COMMAND").unwrap_or_else(|_| "status".into());
    let bin = std::env::var("RAYBOT_BIN").unwrap_or_else(|_| "target/debug/raybot".into());
    let root = std::env::current_dir()?;
    let scratch = tempfile::tempdir()?;
    let fake = FakeSlack::start(TOKEN, WAR_ROOM).await;
    let port = raybot::demo::free_port_block(1)?;
    let url = format!("http://127.0.0.1:{port}");
    let mut child = Command::new(&bin)
        .args([
            "--config",
            &root.join("config").display().to_string(),
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .env("RAYBOT_STORE", format!("file://{}", scratch.path().join("store").display()))
        .env("RAYBOT_ARTIFACTS", scratch.path().join("artifacts"))
        .env("SLACK_BOT_TOKEN", TOKEN)
        .env("SLACK_SIGNING_SECRET", SECRET)
        .env("SLACK_API_URL", fake.api_url())
        .env_remove("SLACK_APP_TOKEN")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot start {bin}: {e} (build it first: cargo build --bin raybot)"))?;
    let http = reqwest::Client::builder().no_proxy().pool_max_idle_per_host(16).build()?;
    let start = Instant::now();
    while http.get(format!("{url}/healthz")).send().await.is_err() {
        anyhow::ensure!(start.elapsed() < Duration::from_secs(30), "raybot serve did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("raybot serve ({bin}) on {url}; {n} signed `/ray {text}` per run");

    let one = |i: usize, http: reqwest::Client, url: String, text: String, fake: FakeSlack| async move {
        let trigger = format!("load.{i}");
        let req = slash_command("U0ALICE001", WAR_ROOM, &text, &trigger, &fake.response_url(&trigger));
        let t = Instant::now();
        let res = req.send(&http, &url, SECRET, Signature::Valid).await;
        let status = res.status();
        let body = res.text().await.unwrap_or_default();
        let took = t.elapsed();
        assert!(status.is_success() && body.contains("ephemeral"), "unexpected answer {status}: {body}");
        took
    };

    // Warm-up (connection pool, first store writes).
    for i in 0..20 {
        one(usize::MAX - i, http.clone(), url.clone(), text.clone(), fake.clone()).await;
    }

    let mut sequential = Vec::with_capacity(n);
    let t = Instant::now();
    for i in 0..n {
        sequential.push(one(i, http.clone(), url.clone(), text.clone(), fake.clone()).await);
    }
    report("sequential", &mut sequential, t.elapsed());

    let lat = Arc::new(std::sync::Mutex::new(Vec::with_capacity(n)));
    let t = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..8 {
        let (http, url, text, fake, lat) = (http.clone(), url.clone(), text.clone(), fake.clone(), lat.clone());
        tasks.push(tokio::spawn(async move {
            for i in (w..n).step_by(8) {
                let d = one(n + i, http.clone(), url.clone(), text.clone(), fake.clone()).await;
                lat.lock().unwrap().push(d);
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let mut concurrent = lat.lock().unwrap().clone();
    report("8 concurrent senders", &mut concurrent, t.elapsed());
    let late = fake.calls(Some("response_url")).len();
    println!("answers that missed the {}ms window and went through response_url: {late}", 2500);

    let _ = child.kill();
    let _ = child.wait();
    Ok(())
}

fn report(name: &str, lat: &mut [Duration], wall: Duration) {
    lat.sort();
    let p = |q: f64| lat[((lat.len() as f64 * q).ceil() as usize).clamp(1, lat.len()) - 1];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{name}: n={} p50={:.2}ms p90={:.2}ms p99={:.2}ms max={:.2}ms ({:.0} req/s)",
        lat.len(),
        ms(p(0.50)),
        ms(p(0.90)),
        ms(p(0.99)),
        ms(lat[lat.len() - 1]),
        lat.len() as f64 / wall.as_secs_f64()
    );
}

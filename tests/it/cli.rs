//! The binary's other entry points: protocols, serve.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::{RAYBOT, run};

#[test]
fn protocols_list_show_and_validate() {
    let (out, code) = run(Command::new(RAYBOT).args(["protocols", "list"]), "", Duration::from_secs(20));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("10  PRE-DEPLOYMENT VALIDATION & STAGING READINESS — 4 phases"), "{out}");
    assert!(out.contains("flow standard: 10 → 11  (default for production)"), "{out}");

    let (out, code) = run(Command::new(RAYBOT).args(["protocols", "show", "11"]), "", Duration::from_secs(20));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("Production Launch Gate [launch]: pass when `blocking_incidents == 0 and validation_success_rate >= 0.95`; on failure: Rollback (not waivable)"), "{out}");

    let (out, code) = run(
        Command::new(RAYBOT).args(["protocols", "validate", "protocols"]).current_dir(env!("CARGO_MANIFEST_DIR")),
        "",
        Duration::from_secs(20),
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ok: 4 protocols"), "{out}");

    // A broken copy: the error names the file and the field, and the exit code is 1.
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/protocols")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.path().join(e.file_name())).unwrap();
    }
    let p10 = dir.path().join("10-pre-deployment-validation.yaml");
    let text =
        std::fs::read_to_string(&p10).unwrap().replacen("completeness_score == 1.0", "completeness_score => 1.0", 1);
    std::fs::write(&p10, text).unwrap();
    let p11 = dir.path().join("11-production-deployment.yaml");
    let text = std::fs::read_to_string(&p11).unwrap().replacen("level: MUST", "level: MAYBE", 1);
    std::fs::write(&p11, text).unwrap();
    let (out, code) =
        run(Command::new(RAYBOT).args(["protocols", "validate"]).arg(dir.path()), "", Duration::from_secs(20));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("10-pre-deployment-validation.yaml: gates[0].pass_threshold:"), "{out}");
    assert!(out.contains("11-production-deployment.yaml: phases[0].steps[0].level:"), "{out}");
}

#[test]
fn serve_answers_healthz_and_metrics() {
    let state = tempfile::tempdir().unwrap();
    let mut child = Command::new(RAYBOT)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("RAYBOT_STORE", format!("file://{}", state.path().display()))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    let addr = line.trim().rsplit("http://").next().unwrap().to_string();
    let get = |path: &str| {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).unwrap();
        body
    };
    let health = get("/healthz");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.contains("\"store\":\"ok\""), "{health}");
    let metrics = get("/metrics");
    assert!(metrics.contains("raybot_releases_started_total"), "{metrics}");
    assert!(metrics.contains("raybot_events_recorded_total 0"), "{metrics}");
    assert!(metrics.contains("raybot_store_requests_total"), "{metrics}");
    let _ = child.kill();
    let _ = child.wait();
}

/// Two raybot processes on one embedded store: the second is told plainly, and changes nothing.
#[test]
fn a_second_process_on_the_same_store_is_refused_clearly() {
    let state = tempfile::tempdir().unwrap();
    let store = format!("file://{}", state.path().display());
    let mut holder = Command::new(RAYBOT)
        .args(["chat", "--user", "alice"])
        .current_dir(state.path())
        .env("RAYBOT_STORE", &store)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The chat answers /ray help once it has the store open.
    let mut stdin = holder.stdin.take().unwrap();
    writeln!(stdin, "/ray help").unwrap();
    let mut out = BufReader::new(holder.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("/ray deploy") {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "chat ended early");
    }
    let (text, code) = run(Command::new(RAYBOT).arg("status").env("RAYBOT_STORE", &store), "", Duration::from_secs(20));
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("[RAY ERROR]") && text.contains("another raybot process is using the store"), "{text}");
    drop(stdin);
    holder.wait().unwrap();
    let (text, code) = run(Command::new(RAYBOT).arg("status").env("RAYBOT_STORE", &store), "", Duration::from_secs(20));
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("No releases in the store."), "{text}");
}

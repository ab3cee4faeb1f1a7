//! End-to-end: the sample deploy scripts, run through the job runner, against the real sample app
//! and router on loopback (`raybot sample-app`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use raybot::engine::plan::ReportFormat;
use raybot::engine::reports::{JobOutcome, ProbeReport, ReportRead, TestCounts};
use raybot::jobs::{JobRequest, ReportRequest, run_job};
use raybot::probe::{ProbeRequest, run_probe};
use sha2::{Digest, Sha256};

fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts")
}

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_raybot")
}

/// Three consecutive free loopback ports (router, blue, green).
fn free_port_triple() -> u16 {
    raybot::demo::free_port_block(3).expect("free ports")
}

/// One sample environment: own state dir and ports. Dropping it stops every process it started,
/// also when the test fails.
struct Sample {
    state: tempfile::TempDir,
    env: &'static str,
    port: u16,
}

impl Sample {
    fn new(env: &'static str) -> Self {
        Sample { state: tempfile::tempdir().unwrap(), env, port: free_port_triple() }
    }

    fn port_var(&self) -> String {
        format!("SAMPLE_PORT_{}", self.env.to_uppercase().replace('-', "_"))
    }

    fn env_vars(&self, fail: &str) -> Vec<(String, String)> {
        vec![
            ("RAYBOT_BIN".into(), bin().into()),
            ("SAMPLE_STATE_DIR".into(), self.state.path().display().to_string()),
            (self.port_var(), self.port.to_string()),
            ("SAMPLE_FAIL".into(), fail.into()),
        ]
    }

    /// Runs `scripts/<script> args…` through the job runner.
    async fn run(&self, script: &str, args: &[&str], fail: &str) -> JobOutcome {
        let mut argv = vec![scripts_dir().join(script).display().to_string()];
        argv.extend(args.iter().map(|s| s.to_string()));
        let out = run_job(JobRequest {
            argv,
            env: self.env_vars(fail),
            cwd: self.state.path().to_path_buf(),
            timeout: Duration::from_secs(60),
            log_path: self.state.path().join("jobs.log"),
            header: format!("== {script} {} ==", args.join(" ")),
            report: None,
        })
        .await;
        assert!(!out.timed_out, "{script} timed out: {out:?}");
        out
    }

    /// Runs a test script with `--junit <state>/reports/<name>.xml`, the runner reading the report
    /// as it does for a validation suite. Returns the outcome, the report's counts (panics when it
    /// did not parse) and the file.
    async fn run_junit(
        &self,
        script: &str,
        args: &[&str],
        name: &str,
        fail: &str,
    ) -> (JobOutcome, TestCounts, PathBuf) {
        let file = self.state.path().join("reports").join(format!("{name}.xml"));
        let mut argv = vec![scripts_dir().join(script).display().to_string()];
        argv.extend(args.iter().map(|s| s.to_string()));
        argv.extend(["--junit".to_string(), file.display().to_string()]);
        let out = run_job(JobRequest {
            argv,
            env: self.env_vars(fail),
            cwd: self.state.path().to_path_buf(),
            timeout: Duration::from_secs(60),
            log_path: self.state.path().join("jobs.log"),
            header: format!("== {script} {} ==", args.join(" ")),
            report: Some(ReportRequest {
                format: ReportFormat::Junit,
                file: file.clone(),
                path: format!("reports/{name}.xml"),
            }),
        })
        .await;
        assert!(!out.timed_out, "{script} timed out: {out:?}");
        let report = out.report.clone().expect("the runner reads the report");
        let bytes = std::fs::read(&file).unwrap_or_else(|e| panic!("{script} wrote no report: {e}\n{}", tail(&out)));
        assert_eq!(report.sha256, Some(hex::encode(Sha256::digest(&bytes))), "the digest is of the file");
        let ReportRead::Parsed(counts) = report.read else {
            panic!("{script}'s report did not parse: {:?}\n{}", report.read, String::from_utf8_lossy(&bytes))
        };
        (out, counts, file)
    }

    async fn deploy(&self, args: &[&str], fail: &str) -> JobOutcome {
        let mut all = vec!["--env", self.env];
        all.extend_from_slice(args);
        self.run("deploy_backend.sh", &all, fail).await
    }

    async fn rollback(&self, args: &[&str]) -> JobOutcome {
        let mut all = vec!["--env", self.env];
        all.extend_from_slice(args);
        self.run("rollback_backend.sh", &all, "").await
    }

    async fn probe(&self, count: u32) -> ProbeReport {
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        run_probe(
            &client,
            &ProbeRequest {
                url: format!("http://127.0.0.1:{}/healthz", self.port),
                count,
                interval: Duration::ZERO,
                timeout: Duration::from_secs(5),
                version_header: Some("x-version".into()),
            },
        )
        .await
    }

    fn route(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.state.path().join(self.env).join("route.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    fn pids(&self) -> Vec<u32> {
        let dir = self.state.path().join(self.env);
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "pid"))
            .filter_map(|e| std::fs::read_to_string(e.path()).ok()?.trim().parse().ok())
            .collect()
    }
}

impl Drop for Sample {
    fn drop(&mut self) {
        let _ = std::process::Command::new(scripts_dir().join("stop_sample.sh"))
            .env("SAMPLE_STATE_DIR", self.state.path())
            .stdout(std::process::Stdio::null())
            .status();
    }
}

fn running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => false,
        Ok(stat) => stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X')),
    }
}

fn tail(out: &JobOutcome) -> String {
    out.log_tail.join("\n")
}

fn assert_ok(out: &JobOutcome) {
    assert!(out.succeeded(), "{}\n{}", out.summary(), tail(out));
}

#[tokio::test]
async fn bluegreen_deploy_then_rollback() {
    let s = Sample::new("staging");
    assert_ok(&s.deploy(&["--release", "v1.1"], "").await);
    let r = s.probe(5).await;
    assert_eq!(r.ok, 5, "{r:?}");
    assert_eq!(r.version_share("v1.1"), 1.0);

    // Dry run: says what it would do, changes nothing.
    let before = s.route();
    let dry = s.deploy(&["--release", "v1.2", "--dry-run"], "").await;
    assert_ok(&dry);
    assert!(tail(&dry).contains("DRY RUN: would start v1.2 on green"), "{}", tail(&dry));
    assert_eq!(s.route(), before);

    let out = s.deploy(&["--release", "v1.2", "--strategy", "bluegreen"], "").await;
    assert_ok(&out);
    assert!(out.duration_ms < 15_000);
    let r = s.probe(10).await;
    assert_eq!(r.ok, 10, "{r:?}");
    assert_eq!(r.versions.get("v1.2"), Some(&10), "{r:?}");
    let route = s.route();
    assert_eq!(route["stable"]["version"], "v1.2");
    assert_eq!(route["previous"]["version"], "v1.1");
    assert!(route["canary"].is_null());

    let smoke = s.run("smoke_test.sh", &["--env", "staging", "--release", "v1.2"], "").await;
    assert_ok(&smoke);
    assert_eq!(smoke.log_tail.iter().filter(|l| l.contains(": PASS ")).count(), 5);
    let smoke_old = s.run("smoke_test.sh", &["--env", "staging", "--release", "v1.1"], "").await;
    assert_eq!(smoke_old.exit_code, Some(1), "{}", tail(&smoke_old));

    let rb = s.rollback(&[]).await;
    assert_ok(&rb);
    assert!(tail(&rb).contains("stable v1.2 -> v1.1"), "{}", tail(&rb));
    let r = s.probe(10).await;
    assert_eq!(r.versions.get("v1.1"), Some(&10), "{r:?}");
    assert_eq!(r.ok, 10);

    let again = s.rollback(&[]).await;
    assert_eq!(again.exit_code, Some(1));
    assert!(tail(&again).contains("nothing to roll back to"), "{}", tail(&again));

    // The job log has every run, each with its footer.
    let log = std::fs::read_to_string(s.state.path().join("jobs.log")).unwrap();
    assert_eq!(log.matches("\nexit=").count(), 7, "{log}");

    let pids = s.pids();
    assert!(!pids.is_empty());
    let stop = s.run("stop_sample.sh", &["--env", "staging"], "").await;
    assert_ok(&stop);
    for pid in pids {
        assert!(!running(pid), "pid {pid} survived stop_sample.sh");
    }
}

/// `(tests, failures, errors, skipped)`.
fn figures(c: &TestCounts) -> (u32, u32, u32, u32) {
    (c.tests, c.failures, c.errors, c.skipped)
}

#[tokio::test]
async fn smoke_and_regression_write_junit_reports_with_one_case_per_check() {
    let s = Sample::new("staging");
    assert_ok(&s.deploy(&["--release", "v1.2"], "").await);

    let (smoke, counts, file) =
        s.run_junit("smoke_test.sh", &["--env", "staging", "--release", "v1.2"], "smoke", "").await;
    assert_ok(&smoke);
    assert_eq!(figures(&counts), (5, 0, 0, 0));
    let xml = std::fs::read_to_string(&file).unwrap();
    assert!(
        xml.contains(
            r#"<testcase classname="smoke.staging" name="check 1/5: GET /healthz answers 200 with x-version v1.2""#
        ),
        "{xml}"
    );
    assert!(tail(&smoke).contains("wrote JUnit report"), "{}", tail(&smoke));

    let (regression, counts, _) =
        s.run_junit("regression_test.sh", &["--env", "staging", "--release", "v1.2"], "regression", "").await;
    assert_ok(&regression);
    assert_eq!(figures(&counts), (6, 0, 0, 0), "{}", tail(&regression));
    assert_eq!(regression.log_tail.iter().filter(|l| l.contains(": PASS ")).count(), 6);

    // Against the version that does not serve, every check that names the version fails, and the
    // report (quotes and `<none>` in its messages escaped) still parses and names them.
    let (smoke, counts, _) =
        s.run_junit("smoke_test.sh", &["--env", "staging", "--release", "v1.1"], "smoke-old", "").await;
    assert_eq!(smoke.exit_code, Some(1));
    assert_eq!(figures(&counts), (5, 5, 0, 0));
    assert_eq!(counts.failed_cases[0].message, "x-version 'v1.2', expected 'v1.1'");
    let (regression, counts, _) =
        s.run_junit("regression_test.sh", &["--env", "staging", "--release", "v1.1"], "regression-old", "").await;
    assert_eq!(regression.exit_code, Some(1), "{}", tail(&regression));
    assert_eq!(figures(&counts), (6, 4, 0, 0), "{:?}", counts.failed_cases);
    let failed: Vec<&str> = counts.failed_cases.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        failed,
        [
            "regression.staging.check 1/6: GET /healthz reports status ok and version v1.1",
            "regression.staging.check 2/6: GET /version answers v1.1",
            "regression.staging.check 3/6: GET / names v1.1",
            "regression.staging.check 4/6: GET of an unknown path answers 404 with x-version v1.1",
        ]
    );
    assert_eq!(counts.failed_cases[1].message, "body 'v1.2', expected 'v1.1'");

    // A run that writes no report (usage error) leaves nothing behind for the runner to read.
    let out = s.run("regression_test.sh", &["--env", "staging", "--release", "v1.2", "--junit", ""], "").await;
    assert_eq!(out.exit_code, Some(2), "{}", tail(&out));
}

#[tokio::test]
async fn an_unhealthy_release_fails_one_regression_check_of_six() {
    let s = Sample::new("production");
    assert_ok(&s.deploy(&["--release", "v1.2"], "production:smoke").await);
    let (out, counts, _) =
        s.run_junit("regression_test.sh", &["--env", "production", "--release", "v1.2"], "regression", "").await;
    assert_eq!(out.exit_code, Some(1), "{}", tail(&out));
    assert_eq!(figures(&counts), (6, 1, 0, 0), "{:?}", counts.failed_cases);
    assert_eq!(counts.passed(), 5);
    assert!(counts.failed_cases[0].message.starts_with("status 503, expected 200"), "{:?}", counts.failed_cases);
}

#[tokio::test]
async fn canary_10_50_100() {
    let s = Sample::new("production");
    assert_ok(&s.deploy(&["--release", "v1.1"], "").await);

    let out = s.deploy(&["--release", "v1.2", "--strategy", "canary", "--percent", "10"], "").await;
    assert_ok(&out);
    let r = s.probe(20).await;
    assert_eq!(r.ok, 20);
    assert_eq!(r.versions.get("v1.2"), Some(&2), "{r:?}");
    assert_eq!(r.versions.get("v1.1"), Some(&18), "{r:?}");

    assert_ok(&s.deploy(&["--release", "v1.2", "--strategy", "canary", "--percent", "50"], "").await);
    let r = s.probe(20).await;
    assert_eq!(r.versions.get("v1.2"), Some(&10), "{r:?}");
    let route = s.route();
    assert_eq!(route["weight"], 50);
    assert_eq!(route["canary"]["version"], "v1.2");
    assert_eq!(route["stable"]["version"], "v1.1");

    assert_ok(&s.deploy(&["--release", "v1.2", "--strategy", "canary", "--percent", "100"], "").await);
    let r = s.probe(10).await;
    assert_eq!(r.versions.get("v1.2"), Some(&10), "{r:?}");
    let route = s.route();
    assert_eq!(route["stable"]["version"], "v1.2");
    assert_eq!(route["previous"]["version"], "v1.1");
    assert!(route["canary"].is_null());

    // A canary that is rolled back before promotion: traffic returns to stable.
    assert_ok(&s.deploy(&["--release", "v1.3", "--strategy", "rolling", "--percent", "25"], "").await);
    let r = s.probe(8).await;
    assert_eq!(r.versions.get("v1.3"), Some(&2), "{r:?}");
    let rb = s.rollback(&["--release", "v1.3"]).await;
    assert_ok(&rb);
    assert!(tail(&rb).contains("canary v1.3 removed"), "{}", tail(&rb));
    let r = s.probe(8).await;
    assert_eq!(r.versions.get("v1.2"), Some(&8), "{r:?}");
}

#[tokio::test]
async fn injected_smoke_failure_makes_probes_fail_and_rollback_recovers() {
    let s = Sample::new("production");
    assert_ok(&s.deploy(&["--release", "v1.1"], "").await);
    let out = s.deploy(&["--release", "v1.2"], "staging:deploy,production:smoke").await;
    assert_ok(&out);
    let r = s.probe(5).await;
    assert_eq!(r.ok, 0, "{r:?}");
    assert_eq!(r.statuses.get("503"), Some(&5), "{r:?}");
    assert_eq!(r.version_share("v1.2"), 1.0);
    let smoke = s.run("smoke_test.sh", &["--env", "production", "--release", "v1.2"], "").await;
    assert_eq!(smoke.exit_code, Some(1));
    assert!(tail(&smoke).contains("status 503, expected 200"), "{}", tail(&smoke));

    assert_ok(&s.rollback(&["--release", "v1.2"]).await);
    let r = s.probe(5).await;
    assert_eq!(r.ok, 5, "{r:?}");
    assert_eq!(r.version_share("v1.1"), 1.0);
}

#[tokio::test]
async fn injected_deploy_failure_leaves_traffic_alone() {
    let s = Sample::new("staging");
    assert_ok(&s.deploy(&["--release", "v1.1"], "").await);
    let out = s.deploy(&["--release", "v1.2"], "staging:deploy").await;
    assert_eq!(out.exit_code, Some(1), "{}", tail(&out));
    assert!(tail(&out).contains("injected failure"), "{}", tail(&out));
    assert_eq!(s.route()["stable"]["version"], "v1.1");
    let r = s.probe(5).await;
    assert_eq!(r.version_share("v1.1"), 1.0);

    let rb = s.rollback(&["--release", "v1.2"]).await;
    assert_ok(&rb);
    assert!(tail(&rb).contains("never received traffic"), "{}", tail(&rb));
    assert_eq!(s.route()["stable"]["version"], "v1.1");
    // The idle v1.2 is gone: only the router and blue remain.
    assert_eq!(s.pids().len(), 2);
}

#[tokio::test]
async fn failed_first_deploy_rolls_back_cleanly() {
    let s = Sample::new("staging");
    let out = s.deploy(&["--release", "v1.0"], "staging:deploy").await;
    assert_eq!(out.exit_code, Some(1), "{}", tail(&out));
    assert!(!s.state.path().join("staging/route.json").exists());
    let rb = s.rollback(&["--release", "v1.0"]).await;
    assert_ok(&rb);
    assert!(tail(&rb).contains("never received traffic"), "{}", tail(&rb));
    // Only the router is left.
    assert_eq!(s.pids().len(), 1);
    let again = s.rollback(&[]).await;
    assert_eq!(again.exit_code, Some(1));
    assert!(tail(&again).contains("nothing to roll back"), "{}", tail(&again));
}

#[tokio::test]
async fn usage_errors_exit_2_and_change_nothing() {
    let s = Sample::new("staging");
    for args in [
        vec!["--env", "staging", "--release", "v1", "--bogus"],
        vec!["--env", "staging"],
        vec!["--env", "Staging", "--release", "v1"],
        vec!["--env", "staging", "--release", "v1;rm -rf /"],
        vec!["--env", "staging", "--release", "v1", "--strategy", "yolo"],
        vec!["--env", "staging", "--release", "v1", "--percent", "101"],
        vec!["--env", "staging", "--release"],
    ] {
        let out = s.run("deploy_backend.sh", &args, "").await;
        assert_eq!(out.exit_code, Some(2), "{args:?}: {}", tail(&out));
        assert!(tail(&out).contains("usage"), "{}", tail(&out));
    }
    for (script, args) in [
        ("rollback_backend.sh", vec!["--env", "staging", "--nope"]),
        ("smoke_test.sh", vec!["--env", "staging"]),
        ("smoke_test.sh", vec!["--env", "staging", "--release", "v1", "--junit"]),
        ("regression_test.sh", vec!["--env", "staging"]),
        ("regression_test.sh", vec!["--env", "staging", "--release", "v1", "--junit", "."]),
        ("regression_test.sh", vec!["--env", "staging", "--release", "v1", "--bogus"]),
        ("security_scan.sh", vec!["--release", "bad version"]),
        ("refresh_staging_data.sh", vec!["--env", "staging"]),
        ("stop_sample.sh", vec!["--all"]),
    ] {
        let out = s.run(script, &args, "").await;
        assert_eq!(out.exit_code, Some(2), "{script} {args:?}: {}", tail(&out));
    }
    assert!(!s.state.path().join("staging").exists());

    let rb = s.rollback(&[]).await;
    assert_eq!(rb.exit_code, Some(1));
    assert!(tail(&rb).contains("nothing to roll back"), "{}", tail(&rb));
}

#[tokio::test]
async fn security_scan_finds_secrets_without_printing_them() {
    let s = Sample::new("staging");
    let inputs = s.state.path().join("inputs");
    std::fs::create_dir_all(&inputs).unwrap();
    std::fs::write(inputs.join("readme.md"), "nothing secret here\n").unwrap();
    let clean = s.run("security_scan.sh", &["--release", "v1.2"], "").await;
    // RAYBOT_INPUTS_DIR default is relative to the cwd (the temp dir): missing → skipped.
    assert_ok(&clean);
    assert_eq!(clean.log_tail.last().map(String::as_str), Some("blocking_findings=0"));

    let dashes = "-----";
    let key = format!("{dashes}BEGIN OPENSSH PRIVATE KEY{dashes}\nb3BlbnNzaC1rZXktdjEAAAAA\n");
    std::fs::write(inputs.join("deploy_key"), key).unwrap();
    let access = format!("AKIA{}", "Q7ZR4XK2M9PLT3VB");
    std::fs::write(inputs.join("env.txt"), format!("AWS_ACCESS_KEY_ID={access}\n")).unwrap();
    let mut argv = vec![scripts_dir().join("security_scan.sh").display().to_string()];
    argv.extend(["--release".to_string(), "v1.2".to_string()]);
    let mut env = s.env_vars("");
    env.push(("RAYBOT_INPUTS_DIR".into(), inputs.display().to_string()));
    let out = run_job(JobRequest {
        argv,
        env,
        cwd: s.state.path().to_path_buf(),
        timeout: Duration::from_secs(30),
        log_path: s.state.path().join("scan.log"),
        header: String::new(),
        report: None,
    })
    .await;
    assert_eq!(out.exit_code, Some(1), "{}", tail(&out));
    assert_eq!(out.log_tail.last().map(String::as_str), Some("blocking_findings=2"));
    let text = tail(&out);
    assert!(text.contains("BLOCKING private-key"), "{text}");
    assert!(text.contains("BLOCKING aws-access-key-id"), "{text}");
    assert!(!text.contains(&access), "secret leaked: {text}");
}

#[tokio::test]
async fn refresh_staging_data_writes_a_note() {
    let s = Sample::new("staging");
    let env_dir = s.state.path().join("staging");
    std::fs::create_dir_all(&env_dir).unwrap();
    std::fs::write(env_dir.join("feature-flags.env"), "# flags\nnew_checkout=on\n\ndark_mode=off\n").unwrap();
    let out = s.run("refresh_staging_data.sh", &["--env", "staging", "--output", "notes/refresh.md"], "").await;
    assert_ok(&out);
    let note = std::fs::read_to_string(s.state.path().join("notes/refresh.md")).unwrap();
    assert!(note.starts_with("# Data refresh: staging"), "{note}");
    assert!(note.contains("| `new_checkout` | on |"), "{note}");
    assert!(note.contains("| `dark_mode` | off |"), "{note}");
    assert!(note.contains("nothing deployed yet"), "{note}");
    assert!(env_dir.join("last-refresh").exists());
}

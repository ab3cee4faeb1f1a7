//! Shared fixtures: a scratch workspace with the sample scripts, inputs, a config on free ports and
//! the sample service running v1.1; helpers to run the `raybot` binary with a time limit.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const RAYBOT: &str = env!("CARGO_BIN_EXE_raybot");

/// A scratch directory laid out like a project using raybot.
pub struct Workspace {
    pub dir: tempfile::TempDir,
    pub staging_port: u16,
    pub production_port: u16,
}

impl Workspace {
    /// Scripts, inputs and `config/` on free ports, with short health windows; the sample service
    /// is started at v1.1 on staging and production.
    pub fn new() -> Workspace {
        let dir = tempfile::Builder::new().prefix("raybot-it-").tempdir().expect("tempdir");
        raybot::demo::write_sample_files(dir.path()).expect("sample files");
        let staging_port = raybot::demo::free_port_block(3).expect("ports");
        let mut production_port = raybot::demo::free_port_block(3).expect("ports");
        while production_port.abs_diff(staging_port) < 3 {
            production_port = raybot::demo::free_port_block(3).expect("ports");
        }
        let toml = raybot::config::EMBEDDED_RAYBOT_TOML
            .replace("inputs_dir = \"examples/release-inputs\"", "inputs_dir = \"inputs\"")
            .replace("18080", &staging_port.to_string())
            .replace("18090", &production_port.to_string())
            .replace("duration_seconds = 60", "duration_seconds = 2")
            .replace("duration_seconds = 10", "duration_seconds = 2")
            .replace("interval_seconds = 10", "interval_seconds = 1")
            .replace("interval_seconds = 5", "interval_seconds = 1");
        std::fs::create_dir_all(dir.path().join("config")).expect("config dir");
        std::fs::write(dir.path().join("config/raybot.toml"), toml).expect("raybot.toml");
        std::fs::write(dir.path().join("config/release-approvers.yaml"), raybot::config::EMBEDDED_APPROVERS_YAML)
            .expect("approvers");
        let ws = Workspace { dir, staging_port, production_port };
        for env in ["staging", "production"] {
            let out = ws.script(&["scripts/deploy_backend.sh", "--env", env, "--release", "v1.1", "--percent", "100"]);
            assert!(out.status.success(), "setup failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        ws
    }

    /// Rewrites `config/raybot.toml`.
    pub fn edit_config(&self, edit: impl Fn(String) -> String) {
        let path = self.path().join("config/raybot.toml");
        let text = std::fs::read_to_string(&path).expect("raybot.toml");
        let edited = edit(text.clone());
        assert_ne!(text, edited, "the edit changed nothing");
        std::fs::write(path, edited).expect("raybot.toml");
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    fn script(&self, argv: &[&str]) -> Output {
        Command::new(argv[0])
            .args(&argv[1..])
            .current_dir(self.path())
            .env("RAYBOT_BIN", RAYBOT)
            .env("SAMPLE_STATE_DIR", ".raybot/sample")
            .env("SAMPLE_PORT_STAGING", self.staging_port.to_string())
            .env("SAMPLE_PORT_PRODUCTION", self.production_port.to_string())
            .env("SAMPLE_FAIL", "")
            .output()
            .expect("script runs")
    }

    /// What the production router serves now (the `x-version` header of /healthz).
    pub fn serving(&self, port: u16) -> String {
        let out = Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-D",
                "-",
                &format!("http://127.0.0.1:{port}/healthz"),
            ])
            .output()
            .expect("curl runs");
        let text = String::from_utf8_lossy(&out.stdout).to_lowercase();
        text.lines().find_map(|l| l.strip_prefix("x-version:").map(|v| v.trim().to_string())).unwrap_or_default()
    }

    /// Runs `raybot chat --user USER` in the workspace with `input` on stdin (embedded store).
    pub fn chat(&self, user: &str, input: &str) -> (String, i32) {
        self.chat_on(None, user, input)
    }

    /// Like [`Workspace::chat`] on the store `RAYBOT_STORE=store` (e.g. `redis://…`).
    pub fn chat_on(&self, store: Option<&str>, user: &str, input: &str) -> (String, i32) {
        run(self.raybot(store).args(["chat", "--user", user]), input, Duration::from_secs(120))
    }

    /// A `raybot` command in the workspace on `store` (`None`: the embedded store in `.raybot/`).
    pub fn raybot(&self, store: Option<&str>) -> Command {
        let mut cmd = Command::new(RAYBOT);
        cmd.current_dir(self.path()).env_remove("RAYBOT_STORE").env_remove("REDIS_URL");
        if let Some(s) = store {
            cmd.env("RAYBOT_STORE", s);
        }
        cmd
    }

    pub fn artifacts(&self) -> PathBuf {
        self.path().join(".artifacts")
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        let _ = self.script(&["scripts/stop_sample.sh"]);
    }
}

/// `raybot demo` with `args`, its evidence in a fresh artifacts folder: output, exit code, folder.
pub fn demo(args: &[&str]) -> (String, i32, tempfile::TempDir) {
    let art = tempfile::tempdir().expect("tempdir");
    let (out, code) = run(
        Command::new(RAYBOT).arg("demo").args(args).arg("--artifacts").arg(art.path()),
        "",
        Duration::from_secs(120),
    );
    (out, code, art)
}

/// Runs a command with `input` on stdin; returns stdout+stderr and the exit code. Panics past `limit`.
pub fn run(cmd: &mut Command, input: &str, limit: Duration) -> (String, i32) {
    let mut child =
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("raybot starts");
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input.as_bytes()).expect("stdin");
    }
    let start = Instant::now();
    loop {
        if let Some(_status) = child.try_wait().expect("wait") {
            break;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "timed out after {limit:?}:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("output");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (text, out.status.code().unwrap_or(-1))
}

/// The single release folder under an artifacts directory.
pub fn release_dir(artifacts: &Path) -> PathBuf {
    let dirs: Vec<PathBuf> = std::fs::read_dir(artifacts)
        .unwrap_or_else(|e| panic!("{}: {e}", artifacts.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(dirs.len(), 1, "expected one release folder in {}: {dirs:?}", artifacts.display());
    dirs[0].clone()
}

/// A `raybot chat` process kept running: lines go in one at a time, the transcript is collected.
pub struct LiveChat {
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    lines: std::sync::mpsc::Receiver<String>,
    pub transcript: String,
}

/// A test that fails half-way must not leave a `raybot chat` running (it would keep taking jobs).
impl Drop for LiveChat {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl LiveChat {
    pub fn start(mut cmd: Command) -> LiveChat {
        let mut child =
            cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().expect("raybot starts");
        let stdin = child.stdin.take();
        let stdout = std::io::BufReader::new(child.stdout.take().expect("stdout"));
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in stdout.lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        LiveChat { child, stdin, lines, transcript: String::new() }
    }

    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").expect("write to raybot");
    }

    /// Waits until the transcript contains `text` (panics with the transcript after `limit`).
    pub fn wait_for(&mut self, text: &str, limit: Duration) {
        let start = Instant::now();
        while !self.transcript.contains(text) {
            assert!(start.elapsed() < limit, "waited {limit:?} for `{text}`:\n{}", self.transcript);
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(100)) {
                self.transcript.push_str(&line);
                self.transcript.push('\n');
            }
        }
    }

    /// Collects what is left of stdout once the process ended (until EOF, or a quiet second when
    /// a grandchild still holds the pipe).
    fn drain(&mut self) {
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(1)) {
            self.transcript.push_str(&line);
            self.transcript.push('\n');
        }
    }

    /// SIGKILL: no clean-up of any kind.
    pub fn kill(mut self) -> String {
        self.child.kill().expect("kill");
        self.child.wait().expect("wait");
        self.drain();
        std::mem::take(&mut self.transcript)
    }

    /// Closes stdin and waits for the process to end; returns the whole transcript.
    pub fn finish(mut self, limit: Duration) -> String {
        self.stdin = None;
        let start = Instant::now();
        while self.child.try_wait().expect("wait").is_none() {
            if start.elapsed() > limit {
                let _ = self.child.kill();
                panic!("raybot chat did not end within {limit:?}:\n{}", self.transcript);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.drain();
        std::mem::take(&mut self.transcript)
    }
}

/// Asserts that no line of `texts` (posts, edits, private answers) and no text file under the
/// release folder `dir` shows one of `ids` alone: chat mentions them (`<@U0CAROL003>`), evidence
/// names them with their name and platform (`Carol Example (slack U0CAROL003)`). Zips are the
/// same files again and skipped.
pub fn assert_no_bare_ids(texts: &[String], dir: &Path, platform: raybot::engine::Platform, ids: &[&str]) {
    for t in texts {
        let bare = raybot::engine::testkit::bare_ids(t, platform, ids);
        assert!(bare.is_empty(), "a message shows a bare user id: {bare:#?}");
    }
    let mut files = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("release folder").filter_map(Result::ok) {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(text) = std::fs::read_to_string(&path) {
                files += 1;
                let bare = raybot::engine::testkit::bare_ids(&text, platform, ids);
                assert!(bare.is_empty(), "{} shows a bare user id: {bare:#?}", path.display());
            }
        }
    }
    assert!(files > 15, "only {files} evidence files in {}", dir.display());
}

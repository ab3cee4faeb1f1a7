//! Job runner: runs one deploy / rollback / validation job as a child process.
//!
//! The job is an argv (never a shell string), started in its own process group so that a timeout can
//! kill everything it spawned. Its stdout and stderr are read line by line and appended, with a UTC
//! timestamp and the stream name, to a log file that several jobs may share. The caller gets a
//! [`JobOutcome`] back; the runner itself never fails.
//!
//! Log layout (one block per job, every write is a whole line so blocks of concurrent jobs interleave
//! only line by line):
//!
//! ```text
//! <header line(s)>
//! $ ./scripts/deploy_backend.sh --env staging --release v1.2
//! 2025-01-01T12:00:00.123Z [stdout] starting green on 18082
//! 2025-01-01T12:00:00.456Z [stderr] warning: …
//! exit=0 duration_ms=812
//! ```
//!
//! The footer's `exit=` is the exit code, `signal:<n>` when the job was killed by a signal, `timeout`
//! when raybot killed it, or `spawn-error` when it never started.
//!
//! A job asked for a test report ([`JobRequest::report`]) writes it itself; the runner removes any
//! earlier file at that path before the job starts, so that only the job's own report can be read,
//! and reads it once the job has ended (also when it failed: a failing suite still writes its
//! report). The report's figures, or why there are none, go into [`JobOutcome::report`] and onto
//! one log line just before the footer:
//!
//! ```text
//! report junit pre-deployment/staging-smoke-junit.xml: 5 tests, 0 failures, 0 errors, 0 skipped, sha256 9f2c…
//! exit=0 duration_ms=812
//! ```

use std::collections::VecDeque;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use time::macros::format_description;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use crate::engine::plan::ReportFormat;
use crate::engine::reports::{JobOutcome, ReportRead, TestReport};

/// How many output lines [`JobOutcome::log_tail`] keeps.
const TAIL_LINES: usize = 20;
/// Longest line (in characters) kept in the tail; longer lines are cut (the log keeps them whole).
const TAIL_LINE_MAX_CHARS: usize = 1000;
/// How long the pipes are still read after the job's main process has exited (or was killed). A job
/// that leaves a daemon behind which inherited its stdout/stderr must not keep the runner waiting.
const PIPE_GRACE: Duration = Duration::from_millis(500);

/// One job to run.
#[derive(Debug, Clone)]
pub struct JobRequest {
    /// Program and arguments, passed to the OS as-is (no shell). `argv[0]` is looked up in `PATH`
    /// unless it contains a `/`.
    pub argv: Vec<String>,
    /// Extra environment variables, added to (or overriding) the runner's own environment.
    pub env: Vec<(String, String)>,
    /// Working directory of the job.
    pub cwd: PathBuf,
    /// Wall-clock limit; past it the job's whole process group is killed with `SIGKILL`.
    pub timeout: Duration,
    /// Log file the job's output is appended to (parent directories are created).
    pub log_path: PathBuf,
    /// Written to the log before anything else (e.g. `== release v1.2 · deploy staging ==`).
    pub header: String,
    /// The test report the job writes, to read once it has ended; `None` for none.
    pub report: Option<ReportRequest>,
}

/// A test report a job is asked to write.
#[derive(Debug, Clone)]
pub struct ReportRequest {
    /// How to read it.
    pub format: ReportFormat,
    /// Where the job writes it.
    pub file: PathBuf,
    /// How evidence names it (relative to the release's artifacts directory).
    pub path: String,
}

/// Which pipe a line came from.
#[derive(Debug, Clone, Copy)]
enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn tag(self) -> &'static str {
        match self {
            Stream::Stdout => "[stdout]",
            Stream::Stderr => "[stderr]",
        }
    }
}

/// How the main process ended.
enum Ending {
    Exited(ExitStatus),
    TimedOut,
}

/// Runs one job to completion (or timeout) and reports how it ended.
///
/// Never panics and never returns an error: a job that cannot be started (empty argv, missing
/// program, bad working directory, unwritable log file) comes back with `spawn_error` set and
/// `duration_ms` 0. A job that outlives `timeout` has its whole process group killed, is reaped, and
/// comes back with `timed_out` set. After the main process has ended the pipes are read for at most
/// 500 ms more, so a job that leaves a background process holding them does not hang the
/// runner; such leftovers are not killed (a job may start a daemon on purpose) unless the job timed
/// out.
pub async fn run_job(req: JobRequest) -> JobOutcome {
    let mut log = match open_log(&req.log_path).await {
        Ok(file) => Some(file),
        Err(err) => {
            tracing::error!(log = %req.log_path.display(), %err, "cannot open job log");
            return spawn_failed(format!("cannot open log file {}: {err}", req.log_path.display()));
        }
    };

    let mut preamble = String::new();
    if !req.header.is_empty() {
        preamble.push_str(&req.header);
        if !req.header.ends_with('\n') {
            preamble.push('\n');
        }
    }
    preamble.push_str("$ ");
    preamble.push_str(&display_argv(&req.argv));
    preamble.push('\n');
    write_log(&mut log, &req.log_path, preamble.as_bytes()).await;
    // A report left by an earlier run (a retried step writes to the same path) must not pass for
    // this job's.
    let stale = match &req.report {
        Some(r) => match tokio::fs::remove_file(&r.file).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Some(e.to_string()),
            _ => None,
        },
        None => None,
    };

    let mut child = match spawn(&req) {
        Ok(child) => child,
        Err(err) => {
            let footer = format!("spawn_error={err}\nexit=spawn-error duration_ms=0\n");
            write_log(&mut log, &req.log_path, footer.as_bytes()).await;
            finish_log(&mut log, &req.log_path).await;
            return spawn_failed(err);
        }
    };
    let started = Instant::now();
    // With `process_group(0)` the child's pid is also its process group id. It stays valid until the
    // child is reaped (a zombie keeps its pid), and we reap only through `child.wait()`.
    let pgid = child.id();

    let (tx, mut rx) = mpsc::channel::<(Stream, String)>(256);
    let mut readers = Vec::with_capacity(2);
    if let Some(out) = child.stdout.take() {
        readers.push(tokio::spawn(read_lines(out, Stream::Stdout, tx.clone())));
    }
    if let Some(err) = child.stderr.take() {
        readers.push(tokio::spawn(read_lines(err, Stream::Stderr, tx.clone())));
    }
    drop(tx);

    let mut tail: VecDeque<String> = VecDeque::with_capacity(TAIL_LINES);
    let mut pipes_open = true;
    let mut ending: Option<Ending> = None;
    let mut duration = Duration::ZERO;
    let deadline = tokio::time::sleep(req.timeout);
    tokio::pin!(deadline);
    // Armed (reset) only once the main process has ended; polled only after that.
    let grace = tokio::time::sleep(PIPE_GRACE);
    tokio::pin!(grace);

    loop {
        tokio::select! {
            line = rx.recv(), if pipes_open => match line {
                Some((stream, text)) => {
                    record_line(&mut log, &req.log_path, &mut tail, stream, text).await;
                }
                None => {
                    pipes_open = false;
                    if ending.is_some() {
                        break;
                    }
                }
            },
            status = child.wait(), if ending.is_none() => {
                duration = started.elapsed();
                ending = Some(match status {
                    Ok(status) => Ending::Exited(status),
                    // Waiting failed (should not happen); treat like a kill so nothing is left behind.
                    Err(err) => {
                        tracing::error!(%err, "waiting for job failed; killing its process group");
                        kill_group(pgid);
                        Ending::TimedOut
                    }
                });
                if !pipes_open {
                    break;
                }
                grace.as_mut().reset(tokio::time::Instant::now() + PIPE_GRACE);
            },
            _ = &mut deadline, if ending.is_none() => {
                ending = Some(on_timeout(&mut child, pgid).await);
                duration = started.elapsed();
                if !pipes_open {
                    break;
                }
                grace.as_mut().reset(tokio::time::Instant::now() + PIPE_GRACE);
            },
            _ = &mut grace, if ending.is_some() => {
                tracing::debug!("job output still open after its process ended; stop reading");
                break;
            },
        }
    }
    for reader in &readers {
        reader.abort();
    }
    // Lines that were already read but not yet logged.
    while let Ok((stream, text)) = rx.try_recv() {
        record_line(&mut log, &req.log_path, &mut tail, stream, text).await;
    }

    let duration_ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
    let (exit_code, timed_out, exit_text) = match ending {
        Some(Ending::Exited(status)) => match (status.code(), status.signal()) {
            (Some(code), _) => (Some(code), false, code.to_string()),
            (None, Some(sig)) => (None, false, format!("signal:{sig}")),
            (None, None) => (None, false, "unknown".to_string()),
        },
        Some(Ending::TimedOut) | None => (None, true, "timeout".to_string()),
    };
    let report = match &req.report {
        Some(r) => {
            let report = read_report(r, stale).await;
            write_log(&mut log, &req.log_path, format!("{}\n", report_line(&report)).as_bytes()).await;
            Some(report)
        }
        None => None,
    };
    let footer = format!("exit={exit_text} duration_ms={duration_ms}\n");
    write_log(&mut log, &req.log_path, footer.as_bytes()).await;
    finish_log(&mut log, &req.log_path).await;

    JobOutcome { exit_code, timed_out, duration_ms, spawn_error: None, log_tail: tail.into_iter().collect(), report }
}

fn spawn_failed(err: String) -> JobOutcome {
    JobOutcome {
        exit_code: None,
        timed_out: false,
        duration_ms: 0,
        spawn_error: Some(err),
        log_tail: Vec::new(),
        report: None,
    }
}

/// Reads the job's report, off the async threads (parsing may take a moment); `stale` is why an
/// earlier file at its path could not be removed, in which case nothing read there can be trusted.
async fn read_report(r: &ReportRequest, stale: Option<String>) -> TestReport {
    if let Some(e) = stale {
        let error = format!("an earlier file at this path could not be removed before the job: {e}");
        return TestReport {
            format: r.format,
            path: r.path.clone(),
            sha256: None,
            read: ReportRead::Unreadable { error },
        };
    }
    let (format, file, path) = (r.format, r.file.clone(), r.path.clone());
    match tokio::task::spawn_blocking(move || crate::test_report::read_report(format, &file, &path)).await {
        Ok(report) => report,
        Err(e) => TestReport {
            format: r.format,
            path: r.path.clone(),
            sha256: None,
            read: ReportRead::Unreadable { error: format!("reading the report failed: {e}") },
        },
    }
}

/// The log line that says what was read: `report junit P: 5 tests, 0 failures, 0 errors, 0 skipped, sha256 …`.
fn report_line(r: &TestReport) -> String {
    let what = match &r.read {
        ReportRead::Parsed(c) => {
            format!("{} tests, {} failures, {} errors, {} skipped", c.tests, c.failures, c.errors, c.skipped)
        }
        ReportRead::Missing => "missing".to_string(),
        ReportRead::Unreadable { error } => format!("unreadable: {error}"),
        ReportRead::Malformed { error } => format!("malformed: {error}"),
    };
    let sha = r.sha256.as_deref().map(|s| format!(", sha256 {s}")).unwrap_or_default();
    // One log line, whatever an error message holds.
    format!("report {} {}: {what}{sha}", r.format.as_str(), r.path).replace(['\n', '\r'], " ")
}

fn spawn(req: &JobRequest) -> Result<Child, String> {
    let Some((program, args)) = req.argv.split_first() else {
        return Err("empty argv: no program to run".to_string());
    };
    // Otherwise a missing working directory reads like a missing program.
    if !req.cwd.is_dir() {
        return Err(format!("working directory {} does not exist or is not a directory", req.cwd.display()));
    }
    let mut cmd = Command::new(program);
    cmd.args(args)
        .envs(req.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .current_dir(&req.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    cmd.spawn().map_err(|err| format!("{program}: {err}"))
}

/// Timeout: kill the whole process group, then reap the main process.
async fn on_timeout(child: &mut Child, pgid: Option<u32>) -> Ending {
    // It may have exited at the very last moment; then it did not time out.
    if let Ok(Some(status)) = child.try_wait() {
        return Ending::Exited(status);
    }
    kill_group(pgid);
    if let Err(err) = child.kill().await {
        tracing::warn!(%err, "killing timed-out job");
    }
    Ending::TimedOut
}

/// Sends `SIGKILL` to every process in the job's process group.
fn kill_group(pgid: Option<u32>) {
    let Some(pgid) = pgid.and_then(|p| i32::try_from(p).ok()) else {
        return;
    };
    if pgid <= 1 {
        return;
    }
    // The group is the job's own (created by `process_group(0)`, its leader not yet reaped).
    if let Err(err) = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), nix::sys::signal::Signal::SIGKILL) {
        tracing::warn!(pgid, %err, "killing job process group");
    }
}

async fn read_lines<R: AsyncRead + Unpin>(pipe: R, stream: Stream, tx: mpsc::Sender<(Stream, String)>) {
    let mut reader = BufReader::new(pipe);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) => break,
            Ok(_) => {
                while matches!(buf.last(), Some(b'\n' | b'\r')) {
                    buf.pop();
                }
                let line = String::from_utf8_lossy(&buf).into_owned();
                if tx.send((stream, line)).await.is_err() {
                    break;
                }
            }
            Err(err) => {
                tracing::debug!(%err, ?stream, "reading job output");
                break;
            }
        }
    }
}

async fn record_line(
    log: &mut Option<tokio::fs::File>,
    log_path: &Path,
    tail: &mut VecDeque<String>,
    stream: Stream,
    text: String,
) {
    let entry = format!("{} {} {text}\n", timestamp(), stream.tag());
    write_log(log, log_path, entry.as_bytes()).await;
    if tail.len() == TAIL_LINES {
        tail.pop_front();
    }
    tail.push_back(truncate_chars(text, TAIL_LINE_MAX_CHARS));
}

fn truncate_chars(mut text: String, max: usize) -> String {
    if let Some((idx, _)) = text.char_indices().nth(max) {
        text.truncate(idx);
        text.push('…');
    }
    text
}

async fn open_log(path: &Path) -> std::io::Result<tokio::fs::File> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        tokio::fs::create_dir_all(parent).await?;
    }
    tokio::fs::OpenOptions::new().create(true).append(true).open(path).await
}

/// Appends whole lines. On a write error the log is given up (the job itself goes on).
async fn write_log(log: &mut Option<tokio::fs::File>, log_path: &Path, bytes: &[u8]) {
    if let Some(file) = log.as_mut() {
        if let Err(err) = file.write_all(bytes).await {
            tracing::error!(log = %log_path.display(), %err, "writing job log; giving up on it");
            *log = None;
        }
    }
}

async fn finish_log(log: &mut Option<tokio::fs::File>, log_path: &Path) {
    if let Some(file) = log.as_mut() {
        if let Err(err) = file.flush().await {
            tracing::error!(log = %log_path.display(), %err, "flushing job log");
        }
    }
}

/// RFC 3339 UTC timestamp with milliseconds, e.g. `2025-01-01T12:00:00.123Z`.
fn timestamp() -> String {
    let fmt = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    OffsetDateTime::now_utc().format(&fmt).unwrap_or_else(|_| "0000-00-00T00:00:00.000Z".to_string())
}

/// The argv as a shell would need it typed — for display in the log only, never executed.
pub(crate) fn display_argv(argv: &[String]) -> String {
    argv.iter().map(|arg| shell_quote(arg)).collect::<Vec<_>>().join(" ")
}

fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty() && arg.chars().all(|c| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c));
    if plain { arg.to_string() } else { format!("'{}'", arg.replace('\'', r"'\''")) }
}

#[cfg(test)]
mod tests {
    use sha2::Digest as _;

    use super::*;

    fn req(dir: &Path, argv: &[&str], timeout: Duration) -> JobRequest {
        JobRequest {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            env: vec![("RAYBOT_TEST_VAR".into(), "hello env".into())],
            cwd: dir.to_path_buf(),
            timeout,
            log_path: dir.join("logs/nested/job.log"),
            header: "== test job ==".into(),
            report: None,
        }
    }

    fn sh(script: &str) -> Vec<&str> {
        vec!["/bin/sh", "-c", script]
    }

    /// Gone, or a zombie nobody has reaped yet (it no longer runs either way).
    fn pid_gone(pid: u32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
        }
    }

    #[test]
    fn quoting_for_display() {
        let argv: Vec<String> =
            ["./deploy.sh", "--env", "a b", "it's", "", "v1.2"].iter().map(|s| s.to_string()).collect();
        assert_eq!(display_argv(&argv), r"./deploy.sh --env 'a b' 'it'\''s' '' v1.2");
    }

    #[tokio::test]
    async fn success_writes_log_and_tail() {
        let dir = tempfile::tempdir().unwrap();
        let script = r#"echo "out one"; echo "err one" >&2; echo "env=$RAYBOT_TEST_VAR"; echo "pwd=$(pwd)"; printf 'no newline'"#;
        let mut argv = sh(script);
        argv.push("arg with space");
        let out = run_job(req(dir.path(), &argv, Duration::from_secs(10))).await;
        assert!(out.succeeded(), "{out:?}");
        assert_eq!(out.exit_code, Some(0));
        assert!(!out.timed_out);
        assert!(out.spawn_error.is_none());
        assert!(out.log_tail.contains(&"out one".to_string()));
        assert!(out.log_tail.contains(&"err one".to_string()));
        assert!(out.log_tail.contains(&"env=hello env".to_string()));
        let cwd = dir.path().canonicalize().unwrap();
        assert!(out.log_tail.contains(&format!("pwd={}", cwd.display())));
        // A last line without a newline is kept (stdout and stderr are read concurrently, so
        // which of the two ends the tail is up to the scheduler).
        assert!(out.log_tail.contains(&"no newline".to_string()), "{:?}", out.log_tail);
        assert!(out.summary().starts_with("exit 0 in"));

        let log = std::fs::read_to_string(dir.path().join("logs/nested/job.log")).unwrap();
        let lines: Vec<&str> = log.lines().collect();
        assert_eq!(lines[0], "== test job ==");
        assert!(lines[1].starts_with("$ /bin/sh -c 'echo "), "{}", lines[1]);
        assert!(lines[1].ends_with(" 'arg with space'"), "{}", lines[1]);
        let out_line = lines.iter().find(|l| l.ends_with(" [stdout] out one")).expect("stdout line");
        // 2025-01-01T12:00:00.123Z
        let ts = &out_line[..24];
        assert_eq!(ts.len(), 24);
        assert!(ts.ends_with('Z') && &ts[10..11] == "T" && &ts[19..20] == ".", "{ts}");
        assert!(time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339).is_ok());
        assert!(lines.iter().any(|l| l.ends_with(" [stderr] err one")));
        let footer = lines.last().unwrap();
        assert!(footer.starts_with("exit=0 duration_ms="), "{footer}");
    }

    fn with_report(mut r: JobRequest, dir: &Path) -> JobRequest {
        r.report = Some(ReportRequest {
            format: ReportFormat::Junit,
            file: dir.join("out/smoke-junit.xml"),
            path: "out/smoke-junit.xml".into(),
        });
        r
    }

    #[tokio::test]
    async fn a_report_the_job_wrote_is_read_after_it_even_when_it_failed() {
        let dir = tempfile::tempdir().unwrap();
        let script = r#"mkdir -p out; printf '<testsuite><testcase name="a"/><testcase name="b"><failure message="boom"/></testcase></testsuite>' > out/smoke-junit.xml; exit 1"#;
        let out = run_job(with_report(req(dir.path(), &sh(script), Duration::from_secs(10)), dir.path())).await;
        assert_eq!(out.exit_code, Some(1));
        let report = out.report.expect("a report was asked for");
        let bytes = std::fs::read(dir.path().join("out/smoke-junit.xml")).unwrap();
        assert_eq!(report.sha256, Some(hex::encode(sha2::Sha256::digest(&bytes))));
        let ReportRead::Parsed(counts) = report.read else { panic!("parsed: {:?}", report.read) };
        assert_eq!((counts.tests, counts.failures, counts.failed_cases[0].name.as_str()), (2, 1, "b"));
        let log = std::fs::read_to_string(dir.path().join("logs/nested/job.log")).unwrap();
        let lines: Vec<&str> = log.trim_end().lines().collect();
        let sha = report.sha256.unwrap();
        assert_eq!(
            lines[lines.len() - 2],
            format!("report junit out/smoke-junit.xml: 2 tests, 1 failures, 0 errors, 0 skipped, sha256 {sha}")
        );
        assert!(lines[lines.len() - 1].starts_with("exit=1 duration_ms="), "the footer stays last");
    }

    #[tokio::test]
    async fn an_earlier_report_is_removed_before_the_job_so_it_cannot_pass_for_this_one() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("out")).unwrap();
        std::fs::write(dir.path().join("out/smoke-junit.xml"), "<testsuite><testcase name=\"old\"/></testsuite>")
            .unwrap();
        let out =
            run_job(with_report(req(dir.path(), &sh("echo wrote nothing"), Duration::from_secs(10)), dir.path())).await;
        assert!(out.succeeded());
        let report = out.report.unwrap();
        assert_eq!((report.read, report.sha256), (ReportRead::Missing, None));
        assert!(!dir.path().join("out/smoke-junit.xml").exists());
        let log = std::fs::read_to_string(dir.path().join("logs/nested/job.log")).unwrap();
        assert!(log.contains("\nreport junit out/smoke-junit.xml: missing\n"), "{log}");
    }

    #[tokio::test]
    async fn a_job_that_never_started_reads_no_report() {
        let dir = tempfile::tempdir().unwrap();
        let out = run_job(with_report(req(dir.path(), &["./not-here.sh"], Duration::from_secs(1)), dir.path())).await;
        assert!(out.spawn_error.is_some());
        assert_eq!(out.report, None);
    }

    #[tokio::test]
    async fn log_is_appended_and_tail_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let argv = sh("for i in $(seq 1 30); do echo line$i; done");
        let first = run_job(req(dir.path(), &argv, Duration::from_secs(10))).await;
        assert_eq!(first.log_tail.len(), 20);
        assert_eq!(first.log_tail[0], "line11");
        assert_eq!(first.log_tail[19], "line30");
        let second = run_job(req(dir.path(), &sh("echo again"), Duration::from_secs(10))).await;
        assert!(second.succeeded());
        let log = std::fs::read_to_string(dir.path().join("logs/nested/job.log")).unwrap();
        assert_eq!(log.matches("== test job ==").count(), 2);
        assert_eq!(log.matches("\nexit=0 duration_ms=").count(), 2);
        assert!(log.find("line30").unwrap() < log.find("again").unwrap());
    }

    #[tokio::test]
    async fn nonzero_exit() {
        let dir = tempfile::tempdir().unwrap();
        let out = run_job(req(dir.path(), &sh("echo failing >&2; exit 3"), Duration::from_secs(10))).await;
        assert_eq!(out.exit_code, Some(3));
        assert!(!out.succeeded());
        assert!(!out.timed_out);
        assert_eq!(out.log_tail, vec!["failing".to_string()]);
        assert!(out.summary().starts_with("exit 3 in"));
        let log = std::fs::read_to_string(dir.path().join("logs/nested/job.log")).unwrap();
        assert!(log.trim_end().lines().last().unwrap().starts_with("exit=3 duration_ms="));
    }

    #[tokio::test]
    async fn killed_by_signal() {
        let dir = tempfile::tempdir().unwrap();
        let out = run_job(req(dir.path(), &sh("kill -TERM $$"), Duration::from_secs(10))).await;
        assert_eq!(out.exit_code, None);
        assert!(!out.timed_out);
        assert!(out.summary().starts_with("killed by a signal"));
        let log = std::fs::read_to_string(dir.path().join("logs/nested/job.log")).unwrap();
        assert!(log.contains("\nexit=signal:15 duration_ms="), "{log}");
    }

    #[tokio::test]
    async fn spawn_error_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let out = run_job(req(dir.path(), &["./definitely-not-here.sh", "x"], Duration::from_secs(10))).await;
        assert_eq!(out.exit_code, None);
        assert_eq!(out.duration_ms, 0);
        assert!(!out.timed_out);
        let err = out.spawn_error.clone().unwrap();
        assert!(err.contains("No such file or directory"), "{err}");
        assert!(out.summary().starts_with("could not start: "));
        let log = std::fs::read_to_string(dir.path().join("logs/nested/job.log")).unwrap();
        assert!(log.contains("exit=spawn-error duration_ms=0"), "{log}");

        let empty = run_job(req(dir.path(), &[], Duration::from_secs(1))).await;
        assert!(empty.spawn_error.is_some());

        let mut bad_cwd = req(dir.path(), &["true"], Duration::from_secs(1));
        bad_cwd.cwd = dir.path().join("missing");
        let out = run_job(bad_cwd).await;
        assert!(out.spawn_error.unwrap().contains("working directory"));
    }

    #[tokio::test]
    async fn unwritable_log_is_a_spawn_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("file"), "x").unwrap();
        let mut r = req(dir.path(), &sh("echo should-not-run > ran"), Duration::from_secs(5));
        r.log_path = dir.path().join("file/sub/job.log");
        let out = run_job(r).await;
        assert!(out.spawn_error.unwrap().contains("cannot open log file"));
        assert!(!dir.path().join("ran").exists());
    }

    #[tokio::test]
    async fn argv_is_not_interpreted_by_a_shell() {
        let dir = tempfile::tempdir().unwrap();
        let out =
            run_job(req(dir.path(), &["echo", "$(touch pwned)", "; touch pwned2", "`id`"], Duration::from_secs(5)))
                .await;
        assert!(out.succeeded());
        assert_eq!(out.log_tail, vec!["$(touch pwned) ; touch pwned2 `id`".to_string()]);
        assert!(!dir.path().join("pwned").exists());
        assert!(!dir.path().join("pwned2").exists());
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let script = "sleep 30 & echo child=$!; sleep 30; echo never";
        let started = Instant::now();
        let out = run_job(req(dir.path(), &sh(script), Duration::from_millis(700))).await;
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(out.timed_out, "{out:?}");
        assert_eq!(out.exit_code, None);
        assert!(!out.succeeded());
        assert!(out.summary().starts_with("timed out after"));
        assert!(out.duration_ms >= 700);
        let child: u32 =
            out.log_tail.iter().find_map(|l| l.strip_prefix("child=")).expect("child pid printed").parse().unwrap();
        // SIGKILL is delivered synchronously, but give the kernel a moment to tear the process down.
        let mut gone = false;
        for _ in 0..50 {
            if pid_gone(child) {
                gone = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(gone, "background child {child} survived the timeout");
        let log = std::fs::read_to_string(dir.path().join("logs/nested/job.log")).unwrap();
        assert!(log.contains("\nexit=timeout duration_ms="), "{log}");
        assert!(!log.contains("[stdout] never"));
    }

    #[tokio::test]
    async fn daemonizing_job_does_not_hang() {
        let dir = tempfile::tempdir().unwrap();
        // The background process keeps stdout/stderr open and leaves the process group.
        let script = "setsid sleep 30 & echo daemon=$!; echo started";
        let started = Instant::now();
        let out = run_job(req(dir.path(), &sh(script), Duration::from_secs(20))).await;
        let took = started.elapsed();
        let daemon: Option<u32> = out.log_tail.iter().find_map(|l| l.strip_prefix("daemon=")?.parse().ok());
        if let Some(pid) = daemon {
            let _ = std::process::Command::new("kill").arg(pid.to_string()).status();
        }
        assert!(out.succeeded(), "{out:?}");
        assert!(took < Duration::from_secs(3), "took {took:?}");
        assert!(out.log_tail.contains(&"started".to_string()));
        assert!(daemon.is_some());
    }

    #[tokio::test]
    async fn background_child_holding_the_pipes_does_not_hang() {
        let dir = tempfile::tempdir().unwrap();
        // Same process group, inherits the pipes, outlives the main process.
        let script = "sleep 30 & echo bg=$!; echo done";
        let started = Instant::now();
        let out = run_job(req(dir.path(), &sh(script), Duration::from_secs(20))).await;
        let took = started.elapsed();
        let bg: Option<u32> = out.log_tail.iter().find_map(|l| l.strip_prefix("bg=")?.parse().ok());
        if let Some(pid) = bg {
            let _ = std::process::Command::new("kill").arg(pid.to_string()).status();
        }
        assert!(out.succeeded(), "{out:?}");
        assert!(took < Duration::from_secs(3), "took {took:?}");
        assert!(bg.is_some());
    }

    #[tokio::test]
    async fn concurrent_jobs_share_a_log_line_by_line() {
        let dir = tempfile::tempdir().unwrap();
        let script = "for i in $(seq 1 200); do echo \"$0-line-$i-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"; done";
        let a = run_job(req(dir.path(), &["/bin/sh", "-c", script, "jobA"], Duration::from_secs(10)));
        let b = run_job(req(dir.path(), &["/bin/sh", "-c", script, "jobB"], Duration::from_secs(10)));
        let (a, b) = tokio::join!(a, b);
        assert!(a.succeeded() && b.succeeded());
        let log = std::fs::read_to_string(dir.path().join("logs/nested/job.log")).unwrap();
        let out_lines: Vec<&str> = log.lines().filter(|l| l.contains(" [stdout] ")).collect();
        assert_eq!(out_lines.len(), 400);
        for l in out_lines {
            assert!(l.ends_with("-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"), "torn line: {l}");
        }
    }
}

//! A real `redis-server` per test: started on a free loopback port in a temporary directory,
//! killed on drop. Tests that need Redis fail loudly (with an install hint) when the binary is
//! missing; they never pass silently.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

const HINT: &str = "redis-server is not on PATH. Install it (Debian/Ubuntu: `sudo apt-get install redis-server`, \
macOS: `brew install redis`) — the Redis tests start their own server and cannot run without it.";

impl RedisServer {
    /// Starts a server with append-only persistence (so a restart keeps the data, like production).
    pub fn start() -> RedisServer {
        let dir = tempfile::Builder::new().prefix("raybot-redis-").tempdir().expect("tempdir");
        for _ in 0..20 {
            let port = free_port();
            let mut child = spawn(port, dir.path().to_path_buf());
            if wait_ready(&mut child, port, Duration::from_secs(10)) {
                return RedisServer { child, port, dir };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("redis-server did not start on any free port");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Freezes the server (SIGSTOP): connections stay open but nothing answers — the hard outage.
    pub fn pause(&self) {
        signal(self.child.id(), nix::sys::signal::Signal::SIGSTOP);
    }

    /// Thaws a paused server (SIGCONT).
    pub fn resume(&self) {
        signal(self.child.id(), nix::sys::signal::Signal::SIGCONT);
    }

    /// Kills the server and starts it again on the same port with the same data directory.
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn(self.port, self.dir.path().to_path_buf());
        assert!(
            wait_ready(&mut self.child, self.port, Duration::from_secs(10)),
            "redis-server did not come back on port {}",
            self.port
        );
    }

    /// Sends one command in RESP and returns the raw reply (for assertions on stored keys).
    pub fn command(&self, args: &[&str]) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to redis");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(req.as_bytes()).unwrap();
        let mut buf = vec![0u8; 1 << 16];
        let n = s.read(&mut buf).unwrap_or(0);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.resume();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_ready(child: &mut Child, port: u16, within: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < within {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if ping(port) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn spawn(port: u16, dir: PathBuf) -> Child {
    let port_s = port.to_string();
    match Command::new("redis-server")
        .args(["--port", &port_s, "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes"])
        .args(["--appendfsync", "everysec", "--protected-mode", "no", "--loglevel", "warning"])
        .arg("--dir")
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!("{HINT}"),
        Err(e) => panic!("cannot start redis-server: {e}"),
    }
}

fn ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig);
}

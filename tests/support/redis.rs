//! A real `redis-server` per test: started on a free loopback port in a temporary directory,
//! killed on drop; or a real three-node Redis Cluster ([`RedisCluster`]). Tests that need Redis fail
//! loudly (with an install hint) when `redis-server` (or, for the cluster, `redis-cli`) is missing;
//! they never pass silently.

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
    /// The server's own options (persistence, cluster mode), reused by [`RedisServer::restart`].
    args: &'static [&'static str],
    /// With [`RedisServer::start_tls`]: the TLS port and the CA that signed the server certificate.
    pub tls: Option<(u16, PathBuf)>,
}

/// Append-only persistence, so a restart keeps the data (like production).
const PERSISTENT: &[&str] = &["--appendonly", "yes", "--appendfsync", "everysec"];
/// A Redis Cluster node: no persistence; the cluster state lives in `nodes.conf` in its directory.
const CLUSTER_NODE: &[&str] = &[
    "--appendonly",
    "no",
    "--cluster-enabled",
    "yes",
    "--cluster-config-file",
    "nodes.conf",
    "--cluster-node-timeout",
    "2000",
];

const HINT: &str = "redis-server is not on PATH. Install it (Debian/Ubuntu: `sudo apt-get install redis-server`, \
macOS: `brew install redis`) — the Redis tests start their own server and cannot run without it.";

impl RedisServer {
    /// Starts a server with append-only persistence (so a restart keeps the data, like production).
    pub fn start() -> RedisServer {
        let dir = tempfile::Builder::new().prefix("raybot-redis-").tempdir().expect("tempdir");
        for _ in 0..20 {
            let port = free_port();
            let mut child = spawn(port, dir.path().to_path_buf(), PERSISTENT);
            if wait_ready(&mut child, port, Duration::from_secs(10)) {
                return RedisServer { child, port, dir, args: PERSISTENT, tls: None };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("redis-server did not start on any free port");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// A server that also speaks TLS on a second port, with a certificate for 127.0.0.1 signed by a
    /// CA made for this test (`openssl` CLI). The plain port stays for [`RedisServer::command`].
    pub fn start_tls() -> RedisServer {
        let dir = tempfile::Builder::new().prefix("raybot-redis-tls-").tempdir().expect("tempdir");
        let d = dir.path();
        std::fs::write(d.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").expect("san.ext");
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
        let steps: [Vec<&str>; 3] = [
            [
                &["req", "-x509"][..],
                &ec,
                &["-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=raybot test CA"],
            ]
            .concat(),
            [&["req"][..], &ec, &["-keyout", "tls.key", "-out", "tls.csr", "-subj", "/CN=127.0.0.1"]].concat(),
            vec![
                "x509",
                "-req",
                "-in",
                "tls.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "tls.crt",
                "-days",
                "2",
                "-extfile",
                "san.ext",
            ],
        ];
        for step in steps {
            let out = match Command::new("openssl").args(&step).current_dir(d).output() {
                Ok(o) => o,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    panic!(
                        "openssl is not on PATH (Debian/Ubuntu: `sudo apt-get install openssl`): the TLS test makes its own certificates"
                    )
                }
                Err(e) => panic!("openssl: {e}"),
            };
            assert!(out.status.success(), "openssl {step:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        for _ in 0..20 {
            let (port, tls_port) = (free_port(), free_port());
            let p = tls_port.to_string();
            let tls = [
                "--tls-port",
                &p,
                "--tls-cert-file",
                "tls.crt",
                "--tls-key-file",
                "tls.key",
                "--tls-auth-clients",
                "no",
            ];
            let mut child = spawn_in(port, d.to_path_buf(), PERSISTENT, &tls);
            if wait_ready(&mut child, port, Duration::from_secs(10)) {
                let ca = d.join("ca.crt");
                return RedisServer { child, port, dir, args: PERSISTENT, tls: Some((tls_port, ca)) };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("redis-server did not start with TLS on any free port");
    }

    /// `rediss://127.0.0.1:<tls port>` of a [`RedisServer::start_tls`] server.
    pub fn tls_url(&self) -> String {
        format!("rediss://127.0.0.1:{}", self.tls.as_ref().expect("started with start_tls").0)
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
        self.child = spawn(self.port, self.dir.path().to_path_buf(), self.args);
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
        // Read until the reply is complete (a long `KEYS` answer may come in several reads).
        let mut reply = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        while resp_end(&reply, 0).is_none() {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => reply.extend_from_slice(&buf[..n]),
            }
        }
        String::from_utf8_lossy(&reply).into_owned()
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

fn spawn(port: u16, dir: PathBuf, args: &[&str]) -> Child {
    spawn_in(port, dir, args, &[])
}

/// Starts redis-server with its working directory in `dir` (relative file options resolve there).
fn spawn_in(port: u16, dir: PathBuf, args: &[&str], more: &[&str]) -> Child {
    let port_s = port.to_string();
    match Command::new("redis-server")
        .current_dir(&dir)
        .args(["--port", &port_s, "--bind", "127.0.0.1", "--save", ""])
        .args(args)
        .args(more)
        .args(["--protected-mode", "no", "--loglevel", "warning"])
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

const CLI_HINT: &str = "redis-cli is not on PATH. Install it (Debian/Ubuntu: `sudo apt-get install redis-tools`, \
which `redis-server` pulls in; macOS: `brew install redis`) — the Redis Cluster tests create their cluster with it.";

/// A real Redis Cluster on loopback: three primaries (no replicas), each in its own temporary
/// directory, the 16384 slots split between them by `redis-cli --cluster create`. Killed on drop.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts three cluster-mode servers, joins them into one cluster and waits until every node
    /// reports `cluster_state:ok`.
    pub fn start() -> RedisCluster {
        let mut nodes = Vec::new();
        while nodes.len() < 3 {
            nodes.push(start_cluster_node());
        }
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for n in &nodes {
            create.arg(format!("127.0.0.1:{}", n.port));
        }
        create.args(["--cluster-replicas", "0", "--cluster-yes"]);
        let out = match create.stdin(Stdio::null()).output() {
            Ok(out) => out,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!("{CLI_HINT}"),
            Err(e) => panic!("cannot run redis-cli: {e}"),
        };
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = RedisCluster { nodes };
        let start = Instant::now();
        while !cluster.is_ok() {
            assert!(start.elapsed() < Duration::from_secs(30), "the cluster never reached cluster_state:ok");
            std::thread::sleep(Duration::from_millis(50));
        }
        cluster
    }

    /// `redis+cluster://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3`: the `RAYBOT_STORE` of this cluster.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self.nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        format!("redis+cluster://{}", hosts.join(","))
    }

    /// Every node answers and sees all slots served (`cluster_state:ok`, three known nodes).
    pub fn is_ok(&self) -> bool {
        self.nodes.iter().all(|n| {
            let info = n.command(&["CLUSTER", "INFO"]);
            info.contains("cluster_state:ok") && info.contains("cluster_known_nodes:3")
        })
    }

    /// The slot of `key` (`CLUSTER KEYSLOT`).
    pub fn keyslot(&self, key: &str) -> u16 {
        let reply = self.nodes[0].command(&["CLUSTER", "KEYSLOT", key]);
        reply.trim().trim_start_matches(':').parse().unwrap_or_else(|_| panic!("CLUSTER KEYSLOT {key}: {reply}"))
    }

    /// The keys each node holds that match `pattern` (`KEYS` on every node).
    pub fn keys_per_node(&self, pattern: &str) -> Vec<Vec<String>> {
        self.nodes.iter().map(|n| resp_strings(&n.command(&["KEYS", pattern]))).collect()
    }

    /// Freezes every node (SIGSTOP): the whole cluster stops answering.
    pub fn pause(&self) {
        self.nodes.iter().for_each(RedisServer::pause);
    }

    /// Thaws every node.
    pub fn resume(&self) {
        self.nodes.iter().for_each(RedisServer::resume);
    }
}

/// A cluster-mode server on a port whose cluster bus port (port + 10000) is free as well.
fn start_cluster_node() -> RedisServer {
    let dir = tempfile::Builder::new().prefix("raybot-redis-cluster-").tempdir().expect("tempdir");
    for attempt in 0..50u32 {
        let port = cluster_port(attempt);
        let mut child = spawn(port, dir.path().to_path_buf(), CLUSTER_NODE);
        if wait_ready(&mut child, port, Duration::from_secs(10)) {
            return RedisServer { child, port, dir, args: CLUSTER_NODE, tls: None };
        }
        let _ = child.kill();
        let _ = child.wait();
        let _ = std::fs::remove_file(dir.path().join("nodes.conf"));
    }
    panic!("no cluster node could start on a free port");
}

/// A port P in 20000..55000 with P and P + 10000 (the cluster bus) both free right now.
fn cluster_port(attempt: u32) -> u16 {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
        .wrapping_add(std::process::id().wrapping_mul(7919))
        .wrapping_add(attempt.wrapping_mul(104_729));
    for i in 0..35_000u32 {
        let port = 20_000 + ((seed.wrapping_add(i.wrapping_mul(7))) % 35_000) as u16;
        let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
        if free(port) && free(port + 10_000) {
            return port;
        }
    }
    panic!("no free port pair for a cluster node");
}

/// The bulk strings of a RESP array reply (`*2\r\n$3\r\nfoo\r\n$3\r\nbar\r\n` → foo, bar).
fn resp_strings(reply: &str) -> Vec<String> {
    let mut lines = reply.split("\r\n");
    let mut out = Vec::new();
    while let Some(line) = lines.next() {
        if line.starts_with('$') {
            out.extend(lines.next().map(str::to_string));
        }
    }
    out
}

/// Where the RESP value starting at `at` ends, or `None` while it is incomplete.
fn resp_end(buf: &[u8], at: usize) -> Option<usize> {
    let line_end = at + buf.get(at..)?.windows(2).position(|w| w == b"\r\n")?;
    let header = std::str::from_utf8(&buf[at + 1..line_end]).ok()?;
    let after = line_end + 2;
    match buf[at] {
        b'$' => match header.parse::<i64>().ok()? {
            n if n < 0 => Some(after),
            n => (buf.len() >= after + n as usize + 2).then_some(after + n as usize + 2),
        },
        b'*' => {
            let mut end = after;
            for _ in 0..header.parse::<i64>().ok()?.max(0) {
                end = resp_end(buf, end)?;
            }
            Some(end)
        }
        _ => Some(after),
    }
}

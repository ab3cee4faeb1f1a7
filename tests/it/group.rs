//! Group commit on a real Redis, through the driver's event loop: deliveries that queue up while
//! the driver is busy are each recorded once, in arrival order, in one write for the group.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use raybot::chat::{ChatError, ChatSink, Handled, Inbound};
use raybot::driver::{Driver, StoredEvent};
use raybot::engine::testkit::Sim;
use raybot::engine::{Ask, Event, Platform, PostKey, ReleaseCommand, ReleaseId, Strategy, UserRef};
use raybot::store::Store;
use raybot::store::redis::RedisStore;

use crate::redis_server::RedisServer;

/// A chat platform that takes everything at once (this test is about the store).
struct Quiet;

#[async_trait::async_trait]
impl ChatSink for Quiet {
    async fn post(&self, _text: &str, _ask: &Ask) -> Result<String, ChatError> {
        Ok("posted".into())
    }
    async fn update(&self, _message: &str, _text: &str) -> Result<(), ChatError> {
        Ok(())
    }
    async fn reply(&self, _to: &UserRef, _text: &str) -> Result<(), ChatError> {
        Ok(())
    }
}

/// A release waiting for change-freeze acknowledgements, recorded in `store`: (id, freeze message).
async fn release_in_freeze(store: &RedisStore) -> (ReleaseId, String) {
    let mut sim = Sim::new();
    sim.start("alice", Strategy::Bluegreen);
    sim.command("alice", ReleaseCommand::Approve { comment: None });
    sim.command("bob", ReleaseCommand::Approve { comment: None });
    (raybot::driver::seed(store, &sim.log).await.expect("record the release"), sim.message(&PostKey::Freeze))
}

#[tokio::test(flavor = "current_thread")]
async fn forty_queued_reactions_are_recorded_once_each_in_order_in_one_write() {
    let server = RedisServer::start();
    let store = Arc::new(RedisStore::open(&server.url()).expect("open"));
    let (id, freeze) = release_in_freeze(&store).await;
    let dir = tempfile::tempdir().unwrap();
    let config = raybot::config::Config::embedded(dir.path()).unwrap();
    let catalog = raybot::protocol::Catalog::embedded().unwrap();
    let driver = Driver::new(
        config,
        catalog,
        store.clone(),
        Arc::new(Quiet),
        dir.path().join("a"),
        Platform::Local,
        Arc::default(),
    );
    let (handle, task) = raybot::driver::run::spawn(driver);

    let toggle = |who: &str, added: bool| Inbound::Reaction {
        user: UserRef::new(Platform::Local, who),
        message: freeze.clone(),
        emoji: "white_check_mark".into(),
        added,
    };
    // The driver resumes and takes one delivery first.
    let first = handle.submit(Some("warm".into()), toggle("erin", true)).unwrap().await.unwrap();
    assert_eq!(first, Handled::default());
    let before = store.read(&id).await.unwrap().len();
    let monitor = Monitor::start(server.port);

    // Forty deliveries queue up before the driver runs again (this runtime has one thread and
    // nothing below yields), among them a platform retry of one of them.
    let people = ["alice", "bob", "carol", "dave"];
    let mut expected = Vec::new();
    let mut answers = Vec::new();
    for i in 0..40 {
        let (who, added) = (people[i % 4], (i / 4) % 2 == 0);
        expected.push((who.to_string(), added));
        answers.push(handle.submit(Some(format!("t{i}")), toggle(who, added)).unwrap());
    }
    let retry = handle.submit(Some("t7".into()), toggle("dave", true)).unwrap();
    for a in answers {
        assert_eq!(a.await.unwrap(), Handled::default(), "each is recorded and says nothing");
    }
    assert!(retry.await.unwrap().duplicate, "the retry counts once");
    let writes =
        monitor.stop().iter().filter(|l| l.contains("\"EVALSHA\"") && l.contains(&format!("{{{id}}}:log"))).count();
    assert_eq!(writes, 1, "the forty events went to the release's log in one write");

    let lines = store.read(&id).await.unwrap();
    let got: Vec<(String, bool)> = lines[before..]
        .iter()
        .map(|l| match serde_json::from_str::<StoredEvent>(l).unwrap().event {
            Event::Reaction { by, added, .. } => (by.id, added),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(got, expected, "recorded once each, in arrival order");

    drop(handle);
    task.await.unwrap();
}

/// Every command Redis carries out, as `MONITOR` shows it, until [`Monitor::stop`].
struct Monitor {
    lines: Arc<Mutex<Vec<String>>>,
    done: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Monitor {
    fn start(port: u16) -> Monitor {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to redis");
        s.write_all(b"MONITOR\r\n").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let mut reader = BufReader::new(s);
        let mut ok = String::new();
        reader.read_line(&mut ok).expect("MONITOR answered");
        assert_eq!(ok.trim(), "+OK");
        let (lines, done) = (Arc::new(Mutex::new(Vec::new())), Arc::new(AtomicBool::new(false)));
        let (l, d) = (lines.clone(), done.clone());
        let thread = std::thread::spawn(move || {
            let mut line = String::new();
            while !d.load(Ordering::SeqCst) {
                match reader.read_line(&mut line) {
                    Ok(0) => break,
                    Ok(_) => l.lock().unwrap().push(std::mem::take(&mut line)),
                    Err(_) => {} // the read timeout: look at `done` again
                }
            }
        });
        Monitor { lines, done, thread }
    }

    fn stop(self) -> Vec<String> {
        std::thread::sleep(Duration::from_millis(200));
        self.done.store(true, Ordering::SeqCst);
        self.thread.join().unwrap();
        std::mem::take(&mut *self.lines.lock().unwrap())
    }
}

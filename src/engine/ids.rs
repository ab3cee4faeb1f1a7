//! Ids the engine makes and reads back, as types of their own, so that a release id is never
//! taken for a version, a job id never for a timer, and a post key is never parsed out of a string.
//!
//! Each serialises exactly as the string it replaces (`v1.2-production-20261202T034303Z-747a`,
//! `…#job4`, `approval:0`, `slack`), so logs stored by earlier builds replay unchanged
//! (`tests/it/replay.rs` holds one; the tests below read lines of it). What holds today:
//!
//! - [`ReleaseId`] is the release's id in the engine: [`Release::id`](super::Release::id), the
//!   event that starts a release ([`Event::Started`](super::Event::Started)) and the refusals that
//!   name one. The runtime makes it (`driver::new_release_id`) and keeps it where the engine hands
//!   it out (routing a command or a message to its release, the releases it holds, its progress);
//!   its store, outbox, marks and timer counts are keyed by the id's text: a `ReleaseId` reads as a
//!   `&str` (`Deref`, `Borrow<str>`, `AsRef<str>`, `Display`), a string becomes one with `into()`.
//! - [`JobId`], [`ProbeId`], [`TimerId`] and [`PostKey`] are what the events and effects carry
//!   ([`Event::JobFinished`](super::Event::JobFinished), [`Event::JobLost`](super::Event::JobLost),
//!   [`Event::ProbeFinished`](super::Event::ProbeFinished), [`Event::Tick`](super::Event::Tick),
//!   [`Event::Posted`](super::Event::Posted), [`Effect::Post`](super::Effect::Post),
//!   [`Effect::Update`](super::Effect::Update), [`Effect::ArmTimer`](super::Effect::ArmTimer),
//!   [`JobSpec::id`](super::JobSpec::id), [`ProbeSpec::id`](super::ProbeSpec::id)), what the
//!   release's state holds ([`Activity`](super::Activity), [`Release::posts`](super::Release::posts))
//!   and what the runtime keys by: the jobs it queued, the outbox's posts and edits, the live
//!   status message ([`PostKey::Status`]). They become text only at the edges: the shared job
//!   queue (the store names a job by its text), the JSON of the stored log and of queued jobs,
//!   and tracing output.
//! - [`Platform`] is a person's and a release's platform ([`UserRef`](super::UserRef),
//!   [`People`](super::plan::People)) everywhere, the driver, its queue worker and the
//!   configuration included; the job queue is named by [`Platform::as_str`].
//! - The ids of prerequisite checks and bundles (`…#check<n>`, `…#bundle<n>`) are still strings:
//!   they never leave the engine's round trip with the runtime's hands, which echo them back.
//!
//! A leaf: this file imports nothing from the engine (its tests read events).

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A string id of its own type, serialised as the bare string.
macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The id as text, as logs store it and the store keys by it.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl Deref for $name {
            type Target = str;

            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> $name {
                $name(s)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> $name {
                $name(s.to_string())
            }
        }

        impl From<&String> for $name {
            fn from(s: &String) -> $name {
                $name(s.clone())
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }

        impl PartialEq<$name> for String {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }

        impl PartialEq<$name> for str {
            fn eq(&self, other: &$name) -> bool {
                self == other.0
            }
        }

        impl PartialEq<$name> for &str {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }
    };
}

string_id!(
    /// A release, `<version>-<env>-<UTC time>-<4 hex digits>`, e.g.
    /// `v1.2-production-20261202T034303Z-747a`; also its evidence folder's name. The runtime makes
    /// it (`driver::new_release_id`) and keys the store by its text.
    ReleaseId
);

/// A string id with a kind: `<release>#<kind><n>`.
macro_rules! release_scoped_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        string_id!($(#[$doc])* $name);

        impl $name {
            #[doc = concat!("The `n`th id of release `release`: `<release>#", $kind, "<n>`.")]
            pub fn new(release: &str, n: u64) -> $name {
                $name(format!("{release}#{}{n}", $kind))
            }
        }
    };
}

release_scoped_id!(
    /// A job run, `<release>#job<n>`; its result comes back with it.
    JobId,
    "job"
);
release_scoped_id!(
    /// A probe run, `<release>#probe<n>`.
    ProbeId,
    "probe"
);
release_scoped_id!(
    /// A timer (reminder, health-window round), `<release>#timer<n>`; ticks of timers the release
    /// no longer waits for are ignored.
    TimerId,
    "timer"
);

/// The chat platform a person and a release are on; decides how people are mentioned. Stored as
/// the lowercase names earlier builds wrote: `local`, `slack`, `discord`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    /// `raybot chat` and the demo: people are known by the name they type.
    #[default]
    Local,
    /// Slack: user ids like `U024BE7LH`.
    Slack,
    /// Discord: snowflake user ids.
    Discord,
}

impl Platform {
    /// Every platform, in the order configuration lists them.
    pub const ALL: [Platform; 3] = [Platform::Local, Platform::Slack, Platform::Discord];

    /// The stored name: `local`, `slack` or `discord`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Platform::Local => "local",
            Platform::Slack => "slack",
            Platform::Discord => "discord",
        }
    }

    /// Reads a stored name; `None` for anything else.
    pub fn parse(s: &str) -> Option<Platform> {
        Platform::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// Slack and Discord show `<@id>` as the person's name; a local war room has no such markup.
    pub const fn mentions_by_id(self) -> bool {
        matches!(self, Platform::Slack | Platform::Discord)
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Under which name a post is kept, so that reactions, clicks and edits find it again. Stored as
/// the strings earlier builds used: `freeze`, `approval:<round>`, `status`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PostKey {
    /// The change-freeze request, which people react to.
    Freeze,
    /// The go/no-go request of round `n` (index into the release's rounds), with its buttons.
    Approval(usize),
    /// The live status message the runtime keeps editing.
    Status,
    /// A key this build does not know (a later build's), kept as it was.
    Other(String),
}

impl PostKey {
    /// Reads a stored key; never fails (unknown keys are [`PostKey::Other`]).
    pub fn parse(s: &str) -> PostKey {
        match s {
            "freeze" => PostKey::Freeze,
            "status" => PostKey::Status,
            _ => match s.strip_prefix("approval:").and_then(|n| n.parse::<usize>().ok()) {
                Some(n) if format!("approval:{n}") == s => PostKey::Approval(n),
                _ => PostKey::Other(s.to_string()),
            },
        }
    }

    /// The round of an approval request's key.
    pub const fn round(&self) -> Option<usize> {
        match self {
            PostKey::Approval(n) => Some(*n),
            _ => None,
        }
    }
}

impl fmt::Display for PostKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PostKey::Freeze => f.write_str("freeze"),
            PostKey::Approval(n) => write!(f, "approval:{n}"),
            PostKey::Status => f.write_str("status"),
            PostKey::Other(s) => f.write_str(s),
        }
    }
}

impl From<PostKey> for String {
    fn from(k: PostKey) -> String {
        k.to_string()
    }
}

impl Serialize for PostKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PostKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<PostKey, D::Error> {
        Ok(PostKey::parse(&String::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_built_and_serialised_as_the_strings_stored_logs_hold() {
        let job = JobId::new("v1.2-production-20261202T034303Z-747a", 4);
        assert_eq!(job, "v1.2-production-20261202T034303Z-747a#job4");
        assert_eq!(serde_json::to_string(&job).unwrap(), "\"v1.2-production-20261202T034303Z-747a#job4\"");
        assert_eq!(serde_json::from_str::<JobId>("\"r#job4\"").unwrap(), JobId::new("r", 4));
        assert_eq!(ProbeId::new("r", 7).to_string(), "r#probe7");
        assert_eq!(serde_json::to_string(&TimerId::new("r", 9)).unwrap(), "\"r#timer9\"");
    }

    #[test]
    fn a_release_id_reads_as_the_string_it_replaces() {
        let id = ReleaseId::from("v1.2-production-20261202T034303Z-747a");
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"v1.2-production-20261202T034303Z-747a\"");
        assert_eq!(serde_json::from_str::<ReleaseId>("\"r1\"").unwrap(), "r1");
        assert_eq!((id.to_string(), String::from(id.clone())), (id.as_str().to_string(), id.as_str().to_string()));
        assert!(id.starts_with("v1.2-production-"), "reads as a str");
        let by_text: std::collections::BTreeMap<ReleaseId, u8> = [(id.clone(), 1)].into();
        assert_eq!(by_text.get("v1.2-production-20261202T034303Z-747a"), Some(&1), "looked up by its text");
        assert_eq!(JobId::new(&id, 4), "v1.2-production-20261202T034303Z-747a#job4");
        let (r1, text) = (ReleaseId::from("r1"), String::from("r1"));
        assert_eq!("r1", r1, "compared with its text either way");
        assert_eq!(text, r1);
        assert_eq!(r1, text);
        assert!(*"r1" == r1);
    }

    #[test]
    fn platforms_are_stored_as_their_lowercase_names() {
        for (platform, text) in [(Platform::Local, "local"), (Platform::Slack, "slack"), (Platform::Discord, "discord")]
        {
            assert_eq!((platform.as_str(), platform.to_string()), (text, text.to_string()));
            assert_eq!(Platform::parse(text), Some(platform));
            assert_eq!(serde_json::to_string(&platform).unwrap(), format!("\"{text}\""));
            assert_eq!(serde_json::from_str::<Platform>(&format!("\"{text}\"")).unwrap(), platform);
        }
        assert_eq!(Platform::parse("Slack"), None);
        assert!(serde_json::from_str::<Platform>("\"irc\"").is_err());
        assert!(Platform::Slack.mentions_by_id() && Platform::Discord.mentions_by_id());
        assert!(!Platform::Local.mentions_by_id());
    }

    #[test]
    fn post_keys_read_back_what_they_wrote() {
        for (key, text) in [
            (PostKey::Freeze, "freeze"),
            (PostKey::Approval(0), "approval:0"),
            (PostKey::Approval(12), "approval:12"),
            (PostKey::Status, "status"),
            (PostKey::Other("approval:x".into()), "approval:x"),
            (PostKey::Other("approval:01".into()), "approval:01"),
        ] {
            assert_eq!(key.to_string(), text);
            assert_eq!(PostKey::parse(text), key);
            assert_eq!(serde_json::to_string(&key).unwrap(), format!("\"{text}\""));
            assert_eq!(serde_json::from_str::<PostKey>(&format!("\"{text}\"")).unwrap(), key);
        }
        assert_eq!(PostKey::Approval(3).round(), Some(3));
        assert_eq!(PostKey::Freeze.round(), None);
    }

    /// The release of the fixture log `tests/fixtures/chat-release-v1.2.jsonl`, recorded by a
    /// build whose events and effects carried every id as a string.
    const RELEASE: &str = "v1.2-production-20261202T034303Z-747a";

    /// `stored` (a JSON string as an old log holds it) reads as `typed`, and `typed` writes it back.
    fn reads_and_writes<T>(stored: &str, typed: T)
    where
        T: Serialize + serde::de::DeserializeOwned + PartialEq + fmt::Debug,
    {
        let json = serde_json::to_string(stored).unwrap();
        assert_eq!(serde_json::from_str::<T>(&json).unwrap(), typed, "{json} reads as {typed:?}");
        assert_eq!(serde_json::to_string(&typed).unwrap(), json, "{typed:?} writes {json}");
    }

    #[test]
    fn every_id_reads_and_writes_the_very_string_an_old_log_holds() {
        reads_and_writes(RELEASE, ReleaseId::from(RELEASE));
        reads_and_writes(&format!("{RELEASE}#job13"), JobId::new(RELEASE, 13));
        reads_and_writes(&format!("{RELEASE}#probe4"), ProbeId::new(RELEASE, 4));
        reads_and_writes(&format!("{RELEASE}#timer32"), TimerId::new(RELEASE, 32));
        for (stored, key) in [
            ("freeze", PostKey::Freeze),
            ("approval:0", PostKey::Approval(0)),
            ("approval:1", PostKey::Approval(1)),
            ("status", PostKey::Status),
            ("summary:2", PostKey::Other("summary:2".into())),
        ] {
            reads_and_writes(stored, key);
        }
        for (stored, platform) in
            [("local", Platform::Local), ("slack", Platform::Slack), ("discord", Platform::Discord)]
        {
            reads_and_writes(stored, platform);
        }
        // Post keys also key the release's map of posts: a JSON object's keys, read and written.
        let posts: std::collections::BTreeMap<PostKey, Vec<String>> =
            [(PostKey::Approval(0), vec!["m1".to_string()]), (PostKey::Freeze, vec!["m2".to_string()])].into();
        let json = r#"{"approval:0":["m1"],"freeze":["m2"]}"#;
        assert_eq!(serde_json::from_str::<std::collections::BTreeMap<PostKey, Vec<String>>>(json).unwrap(), posts);
        assert_eq!(serde_json::to_value(&posts).unwrap(), serde_json::from_str::<serde_json::Value>(json).unwrap());
    }

    #[test]
    fn events_of_an_old_log_read_as_typed_ids_and_write_back_byte_for_byte() {
        use crate::engine::{Event, UserRef};
        // Lines 15, 6, 25, 17, 48 and 29 of the fixture log (the `event` of each).
        let lines = [
            r#"{"job_finished":{"job":"v1.2-production-20261202T034303Z-747a#job13","outcome":{"exit_code":0,"timed_out":false,"duration_ms":50,"spawn_error":null,"log_tail":["security scan for v1.2: 11 files in /tmp/raybot-it-eJAao9/inputs /tmp/raybot-it-eJAao9/scripts","warnings=0","security scan passed for v1.2","blocking_findings=0"]}}}"#,
            r#"{"probe_finished":{"probe":"v1.2-production-20261202T034303Z-747a#probe4","report":{"url":"http://127.0.0.1:28737/healthz","total":20,"ok":20,"p50_ms":2,"p95_ms":7,"max_ms":9,"statuses":{"200":20},"versions":{"v1.1":20},"errors":[]}}}"#,
            r#"{"posted":{"key":"freeze","message":"1a234d95173-18"}}"#,
            r#"{"posted":{"key":"approval:0","message":"1a234d943ee-26"}}"#,
            r#"{"tick":{"timer":"v1.2-production-20261202T034303Z-747a#timer32"}}"#,
            r#"{"reaction":{"by":{"platform":"local","id":"bob"},"message":"1a234d953f4-1","emoji":"✅","added":true}}"#,
        ];
        let events: Vec<Event> =
            lines.iter().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
        for (event, line) in events.iter().zip(lines) {
            assert_eq!(serde_json::to_string(event).unwrap(), line);
        }
        assert!(matches!(&events[0], Event::JobFinished { job, .. } if *job == JobId::new(RELEASE, 13)));
        assert!(matches!(&events[1], Event::ProbeFinished { probe, .. } if *probe == ProbeId::new(RELEASE, 4)));
        assert!(matches!(&events[2], Event::Posted { key: PostKey::Freeze, message } if message == "1a234d95173-18"));
        assert!(matches!(&events[3], Event::Posted { key: PostKey::Approval(0), .. }));
        assert!(matches!(&events[4], Event::Tick { timer } if *timer == TimerId::new(RELEASE, 32)));
        assert!(matches!(&events[5], Event::Reaction { by, .. } if *by == UserRef::new(Platform::Local, "bob")));
    }
}

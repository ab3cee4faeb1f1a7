//! Ids the engine makes and reads back, as types of their own, so that a job id is never taken for
//! a timer and a post key is never parsed out of a string.
//!
//! Each serialises exactly as the string it replaces (`v1.2-production-…#job4`, `approval:0`), so
//! logs stored by earlier builds replay unchanged (`tests/it/replay.rs` holds one). The events
//! and effects the runtime exchanges with the engine still carry plain strings: the runtime
//! (`src/driver`) keys its queue, timers and posts by them, and moves onto these types later.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A string id with a kind: `<release>#<kind><n>`.
macro_rules! release_scoped_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            #[doc = concat!("The `n`th id of release `release`: `<release>#", $kind, "<n>`.")]
            pub fn new(release: &str, n: u64) -> $name {
                $name(format!("{release}#{}{n}", $kind))
            }

            /// The id as it travels in events and effects.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
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
}

//! The change freeze: who must acknowledge, who did, and when it was confirmed.
//!
//! A leaf: it decides what an acknowledgement does and says so in an [`AckOutcome`]; the release
//! turns that into posts, evidence and the next step.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::engine::Timestamp;

/// The change freeze.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Freeze {
    /// User ids of everyone holding a freeze role; all must acknowledge.
    pub required: Vec<String>,
    /// User id → when and how (`command` or `reaction`) they acknowledged.
    pub acks: BTreeMap<String, (Timestamp, String)>,
    /// When the freeze was announced.
    pub opened_at: Option<Timestamp>,
    /// When the last required acknowledgement arrived.
    pub confirmed_at: Option<Timestamp>,
    /// Reminders posted so far (a retrospective input).
    pub reminders: u32,
}

/// What one acknowledgement did to the freeze.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AckOutcome {
    /// The person is not on the freeze list: nothing changed.
    NotListed,
    /// They had acknowledged already: counted once, nothing changed.
    Already,
    /// Counted. `confirmed` when it was the last one missing (the freeze is now confirmed).
    Counted {
        /// Everyone on the list has acknowledged.
        confirmed: bool,
    },
}

impl Freeze {
    /// A freeze announced at `now` that everyone in `required` must acknowledge.
    pub(crate) fn open(required: Vec<String>, now: Timestamp) -> Freeze {
        Freeze { required, acks: BTreeMap::new(), opened_at: Some(now), confirmed_at: None, reminders: 0 }
    }

    /// Whether `user` is on the freeze list.
    pub(crate) fn is_listed(&self, user: &str) -> bool {
        self.required.iter().any(|u| u == user)
    }

    /// Counts `user`'s acknowledgement (`via` is `command` or `reaction`); the last one missing
    /// confirms the freeze.
    pub(crate) fn ack(&mut self, user: &str, via: &str, now: Timestamp) -> AckOutcome {
        if !self.is_listed(user) {
            return AckOutcome::NotListed;
        }
        if self.acks.contains_key(user) {
            return AckOutcome::Already;
        }
        self.acks.insert(user.to_string(), (now, via.to_string()));
        let confirmed = self.missing().is_empty();
        if confirmed {
            self.confirmed_at = Some(now);
        }
        AckOutcome::Counted { confirmed }
    }

    /// Withdraws `user`'s acknowledgement (the reaction was removed). Returns whether there was one.
    pub(crate) fn unack(&mut self, user: &str) -> bool {
        self.acks.remove(user).is_some()
    }

    /// Who acknowledged, in list order.
    pub(crate) fn acknowledged(&self) -> Vec<&String> {
        self.required.iter().filter(|u| self.acks.contains_key(*u)).collect()
    }

    /// Who has not acknowledged yet, in list order.
    pub(crate) fn missing(&self) -> Vec<&String> {
        self.required.iter().filter(|u| !self.acks.contains_key(*u)).collect()
    }

    /// Share of acknowledgements, the `freeze_ack_ratio` metric.
    pub(crate) fn ratio(&self) -> f64 {
        self.acks.len() as f64 / self.required.len() as f64
    }

    /// Counts a reminder sent to the people still missing.
    pub(crate) fn remind(&mut self) {
        self.reminders += 1;
    }
}

/// Emoji names and characters that mean the same acknowledgement (Slack sends names, Discord the
/// character).
pub(crate) fn same_emoji(a: &str, b: &str) -> bool {
    fn norm(s: &str) -> &str {
        match s.trim_matches(':') {
            "✅" | "white_check_mark" | "heavy_check_mark" | "✔️" => "white_check_mark",
            other => other,
        }
    }
    norm(a) == norm(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn freeze() -> Freeze {
        Freeze::open(vec!["bob".into(), "carol".into()], Timestamp(1))
    }

    #[test]
    fn only_people_on_the_list_count() {
        let mut f = freeze();
        assert_eq!(f.ack("mallory", "command", Timestamp(2)), AckOutcome::NotListed);
        assert!(f.acks.is_empty());
        assert_eq!(f.missing(), ["bob", "carol"]);
    }

    #[test]
    fn each_person_counts_once_and_the_last_one_confirms() {
        let mut f = freeze();
        assert_eq!(f.ack("carol", "reaction", Timestamp(2)), AckOutcome::Counted { confirmed: false });
        assert_eq!(f.ack("carol", "command", Timestamp(3)), AckOutcome::Already);
        assert_eq!(f.acks["carol"], (Timestamp(2), "reaction".to_string()));
        assert_eq!(f.ratio(), 0.5);
        assert_eq!(f.confirmed_at, None);
        assert_eq!(f.ack("bob", "command", Timestamp(4)), AckOutcome::Counted { confirmed: true });
        assert_eq!(f.confirmed_at, Some(Timestamp(4)));
        assert_eq!(f.acknowledged(), ["bob", "carol"]);
        assert!(f.missing().is_empty());
    }

    #[test]
    fn slack_names_and_discord_characters_are_the_same_acknowledgement() {
        assert!(same_emoji("✅", "white_check_mark"));
        assert!(same_emoji(":heavy_check_mark:", "white_check_mark"));
        assert!(!same_emoji("thumbsup", "white_check_mark"));
        assert!(same_emoji("thumbsup", ":thumbsup:"));
    }

    #[test]
    fn a_removed_reaction_withdraws_the_acknowledgement() {
        let mut f = freeze();
        f.ack("bob", "reaction", Timestamp(2));
        assert!(f.unack("bob"));
        assert!(!f.unack("bob"));
        assert!(!f.unack("mallory"));
        assert_eq!(f.ratio(), 0.0);
        assert_eq!(f.missing(), ["bob", "carol"]);
    }
}

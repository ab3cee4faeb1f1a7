//! Group commit: deliveries that queued up while the driver was busy are decided one after another
//! in memory and recorded in one write. Each person is still answered only once their event is
//! recorded, and in the order the deliveries arrived; what cannot be decided from memory alone
//! (a deploy, a message raybot has not recorded yet, a stale release) is handled on its own, in
//! its place in the order.
//!
//! On Redis a group costs the same two round trips as one delivery (the idempotency check with the
//! catch-up read, then the appends), so durable events keep up with a busy channel.

use std::collections::{BTreeMap, BTreeSet};

use super::{Driver, refusal_for};
use crate::chat::{Delivery, Inbound};
use crate::clock::now;
use crate::command::Command;
use crate::engine::{Effect, Event, ReleaseId, Timestamp};
use crate::store::{Append, StoreError};

use super::turn::Turn;

/// At most this many deliveries are decided together (what the event loop takes off its queue).
pub const MAX_GROUP: usize = 64;

/// A delivery decided in memory, waiting for its write.
struct Decided {
    release: ReleaseId,
    event: Event,
    at: Timestamp,
    fx: Vec<Effect>,
    turn: Turn,
    /// Its number in the release's log, once its write is prepared.
    number: u64,
}

/// Whether a delivery may join a group: it applies to a release that already exists. Deploys,
/// read-only and chat-level commands go on their own.
fn may_group(d: &Delivery) -> bool {
    match &d.inbound {
        Inbound::Reaction { .. } | Inbound::Click { .. } => true,
        Inbound::Command { command, .. } => matches!(command, Command::Release(_)),
    }
}

impl Driver {
    /// Handles `deliveries` in order, recording consecutive ones that apply to known releases
    /// as one group.
    pub async fn deliver_all(&mut self, deliveries: Vec<Delivery>) {
        let mut group = Vec::new();
        for d in deliveries {
            if may_group(&d) {
                group.push(d);
            } else {
                self.commit_group(std::mem::take(&mut group)).await;
                self.deliver(d).await;
            }
        }
        self.commit_group(group).await;
    }

    async fn commit_group(&mut self, mut group: Vec<Delivery>) {
        if group.len() < 2 {
            if let Some(d) = group.pop() {
                self.deliver(d).await;
            }
            return;
        }
        for d in &group {
            self.metrics.inbound(d.inbound.kind());
        }
        let keys: Vec<Option<String>> = group.iter().map(|d| d.key.as_ref().map(|k| format!("inbound:{k}"))).collect();
        let asked: Vec<Option<&str>> = keys.iter().map(|k| k.as_deref()).collect();
        let read = self.store.seen_all_and_unfinished(&asked, now().0).await;
        let read = match read {
            Ok((seen, open)) => self.catch_up(Some(open.clone())).await.map(|()| (seen, open)),
            Err(e) => Err(e),
        };
        let (seen, open) = match read {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the store");
                for (d, once) in group.into_iter().zip(keys) {
                    let mut turn = Turn::new(d.inbound.user().clone(), once, d.done);
                    self.tell(&mut turn, crate::engine::refuse(crate::engine::refusal::Runtime::StoreDown));
                }
                return;
            }
        };

        // Decide in order, in memory. Once one delivery needs the store on its own, it and every
        // later one are handled one by one after the group's write, so the order holds.
        let mut decided: Vec<Decided> = Vec::new();
        let mut alone: Vec<Delivery> = Vec::new();
        let mut keys_in_group = BTreeSet::new();
        for ((d, once), dup) in group.into_iter().zip(keys).zip(seen) {
            if !alone.is_empty() {
                alone.push(d);
                continue;
            }
            let Some((release, event)) = self.in_memory(&d.inbound) else {
                alone.push(d);
                continue;
            };
            let mut turn = Turn::new(d.inbound.user().clone(), once, d.done);
            // A platform retry of a delivery of this very group counts once, too.
            let retry = turn.once.as_ref().is_some_and(|k| !keys_in_group.insert(k.clone()));
            if dup || retry {
                tracing::debug!(key = ?turn.once, "duplicate delivery ignored");
                turn.duplicate = true;
                continue;
            }
            turn.open = Some(open.clone());
            let at = now();
            // `in_memory` found the release loaded; were it gone, its write below could not be
            // prepared and the whole group would be refused as unwritten, never taken as recorded.
            let fx = self.releases.get_mut(&release).map(|a| a.release.handle(&event, at)).unwrap_or_default();
            decided.push(Decided { release, event, at, fx, turn, number: 0 });
        }

        // One write per release, all or nothing: its events in order with their keys.
        let mut appends: Vec<Append> = Vec::new();
        let mut encoded = true;
        for d in &mut decided {
            match self.prepare_append(&d.release, &d.event, d.at, &d.turn) {
                Ok(Some(a)) => {
                    if let Some(active) = self.releases.get_mut(&d.release) {
                        d.number = active.log_len;
                        active.log_len += 1;
                    }
                    match appends.iter_mut().find(|x| x.release == a.release) {
                        Some(x) => {
                            x.events.extend(a.events);
                            x.once.extend(a.once);
                            x.summary = a.summary;
                        }
                        None => appends.push(a),
                    }
                }
                // The releases stay stale (rebuilt from the store before their next use).
                Ok(None) | Err(_) => encoded = false,
            }
        }
        let results: BTreeMap<String, Result<u64, StoreError>> = if encoded {
            let out = self.store.append_all(&appends).await;
            let recorded = appends.iter().zip(&out).filter(|(_, r)| r.is_ok()).map(|(a, _)| a.events.len() as u64);
            self.metrics.recorded(recorded.sum());
            appends.into_iter().map(|a| a.release).zip(out).collect()
        } else {
            let e = StoreError::Corrupt("an event of the group could not be encoded".into());
            decided.iter().map(|d| (d.release.to_string(), Err(e.clone()))).collect()
        };

        // Answer and act on what was recorded, in order; decide again what another replica beat.
        let mut again = Vec::new();
        let mut done = Vec::new();
        for mut d in decided {
            match results.get(d.release.as_str()) {
                Some(Ok(_)) => {
                    d.turn.once = None;
                    done.push(d);
                }
                Some(Err(StoreError::Conflict { .. } | StoreError::Duplicate { .. })) => again.push(d),
                other => {
                    let e = match other {
                        Some(Err(e)) => e.clone(),
                        _ => StoreError::Corrupt("no answer to the group's write".into()),
                    };
                    if !matches!(e, StoreError::Fenced { .. }) {
                        self.tell(&mut d.turn, refusal_for(&e));
                    }
                    // Nothing was recorded, the key included: a platform retry is handled again.
                    d.turn.once = None;
                }
            }
        }
        for (id, result) in &results {
            match result {
                Ok(_) => {
                    if let Some(a) = self.releases.get_mut(id) {
                        a.stale = false;
                    }
                }
                Err(e @ StoreError::Fenced { .. }) => self.fenced(id, e),
                Err(_) => {}
            }
        }
        let mut shown = BTreeSet::new();
        for mut d in done {
            let origin = super::announce::Origin { event: d.number, at: d.at };
            let follow = self.recorded(&d.release, origin, d.fx, &mut d.turn).await;
            if follow.is_empty() {
                shown.insert(d.release);
            } else if let Err(e) = self.apply_all(&d.release, follow, &mut d.turn).await {
                tracing::warn!(release = %d.release, error = %e, "store write failed");
            }
        }
        for id in shown {
            self.show_status(&id);
        }
        for mut d in again {
            let id = d.release.clone();
            if let Err(e) = self.apply(&id, d.event, &mut d.turn, true).await {
                tracing::warn!(release = %id, error = %e, "store write failed");
            }
        }
        self.publish();
        for d in alone {
            self.deliver(d).await;
        }
    }

    /// The release and event a delivery applies to, when memory alone can tell (the release is
    /// loaded and current, the message is recorded).
    fn in_memory(&self, inbound: &Inbound) -> Option<(ReleaseId, Event)> {
        let (id, event) = match inbound.clone() {
            Inbound::Reaction { user, message, emoji, added } => {
                (self.releases.of_message(&message)?, Event::Reaction { by: user, message, emoji, added })
            }
            Inbound::Click { user, message, button } => {
                (self.releases.of_message(&message)?, Event::Click { by: user, message, button })
            }
            Inbound::Command { user, command: Command::Release(rc) } => {
                (self.releases.route(&rc)?, Event::Command { by: user, command: rc })
            }
            Inbound::Command { .. } => return None,
        };
        let active = self.releases.get(&id)?;
        (!active.stale).then_some((id, event))
    }
}

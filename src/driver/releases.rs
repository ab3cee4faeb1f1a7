//! [`Releases`]: the releases one driver holds, and how it catches up with the store (what other
//! replicas recorded) — loading, reloading, adopting, the refresh every command starts with.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::StoredEvent;
use crate::clock::now;
use crate::engine::{Activity, Platform, Release, ReleaseCommand, ReleaseId};
use crate::store::{ReleaseSummary, Store, StoreError};

/// A release the driver holds.
pub(super) struct Active {
    pub(super) release: Release,
    pub(super) log_len: u64,
    pub(super) lock_token: Option<u64>,
    /// When the environment lock's lease ends (ms); renewed as the release goes on.
    pub(super) lock_expires_at: u64,
    /// The in-memory state holds an event the store did not take: rebuild it before use.
    pub(super) stale: bool,
    /// The status text this driver last sent to its live status message.
    pub(super) status_shown: Option<String>,
    /// This driver asked its outbox to post the release's status message (it started or took
    /// over the release): until the message id is recorded, its edits go through the outbox.
    pub(super) status_posting: bool,
}

impl Active {
    pub(super) fn new(release: Release, log_len: u64, lock_token: Option<u64>, lock_expires_at: u64) -> Active {
        Active {
            release,
            log_len,
            lock_token,
            lock_expires_at,
            stale: false,
            status_shown: None,
            status_posting: false,
        }
    }
}

/// The log of release `id` as stored, oldest first.
pub(super) async fn read_log(store: &dyn Store, id: &str) -> Result<Vec<StoredEvent>, StoreError> {
    let lines = store.read(id).await?;
    lines.iter().map(|l| serde_json::from_str(l).map_err(|e| StoreError::Corrupt(format!("{id}: {e}")))).collect()
}

/// The releases of one platform a driver holds, as far as it has caught up with the store.
pub(super) struct Releases {
    map: BTreeMap<ReleaseId, Active>,
    /// Releases of other chat platforms (never loaded again by this driver).
    pub(super) foreign: BTreeSet<String>,
    platform: Platform,
    store: Arc<dyn Store>,
}

impl Releases {
    pub(super) fn new(platform: Platform, store: Arc<dyn Store>) -> Releases {
        Releases { map: BTreeMap::new(), foreign: BTreeSet::new(), platform, store }
    }

    pub(super) fn get(&self, id: &str) -> Option<&Active> {
        self.map.get(id)
    }

    pub(super) fn get_mut(&mut self, id: &str) -> Option<&mut Active> {
        self.map.get_mut(id)
    }

    pub(super) fn contains_key(&self, id: &str) -> bool {
        self.map.contains_key(id)
    }

    pub(super) fn insert(&mut self, id: ReleaseId, a: Active) {
        self.map.insert(id, a);
    }

    pub(super) fn remove(&mut self, id: &str) -> Option<Active> {
        self.map.remove(id)
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&ReleaseId, &Active)> {
        self.map.iter()
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &Active> {
        self.map.values()
    }

    /// Active (unfinished) releases.
    pub(super) fn active(&self) -> impl Iterator<Item = &Release> {
        self.map.values().map(|a| &a.release).filter(|r| !r.is_finished())
    }

    /// The release that posted `message`, by the message ids recorded in the logs.
    pub(super) fn of_message(&self, message: &str) -> Option<ReleaseId> {
        self.map
            .values()
            .find(|a| a.release.posts.values().any(|ids| ids.iter().any(|m| m == message)))
            .map(|a| a.release.id.clone())
    }

    /// Reads release `id` from the store and rebuilds it (the store is the truth when another
    /// replica wrote to it). Returns the release and its log length, or `None` if it is unknown.
    pub(super) async fn load(&self, id: &str) -> Result<Option<(Release, u64, Option<String>)>, StoreError> {
        let log = read_log(self.store.as_ref(), id).await?;
        let previous = log.iter().rev().find_map(|e| e.replica.clone());
        let events: Vec<_> = log.into_iter().map(|e| (e.at, e.event)).collect();
        Ok(Release::replay(events.iter()).map(|r| (r, events.len() as u64, previous)))
    }

    /// Rebuilds a release from its stored `log` (read by the caller, who needs it again):
    /// the release, its log length and the process that recorded its latest event.
    pub(super) fn rebuild(log: &[StoredEvent]) -> Option<(Release, u64, Option<String>)> {
        let previous = log.iter().rev().find_map(|e| e.replica.clone());
        let events: Vec<_> = log.iter().map(|e| (e.at, e.event.clone())).collect();
        Release::replay(events.iter()).map(|r| (r, events.len() as u64, previous))
    }

    /// Catches up with events another replica recorded for release `id`.
    pub(super) async fn reload(&mut self, id: &str) -> Result<(), StoreError> {
        let Some((release, log_len, _)) = self.load(id).await? else { return Ok(()) };
        if let Some(a) = self.map.get_mut(id) {
            a.release = release;
            a.log_len = log_len;
            a.stale = false;
        }
        Ok(())
    }

    /// Picks up releases other replicas started or moved on since this one last looked, so that
    /// a command reaching any replica finds the release it is for. Reads only the index of
    /// unfinished releases; a release is read again only when its log grew.
    pub async fn refresh(&mut self, open: Vec<ReleaseSummary>) -> Result<(), StoreError> {
        let open_ids: BTreeSet<&str> = open.iter().map(|s| s.id.as_str()).collect();
        // Loaded releases that left the index ended on another replica: catch up once.
        let ended: Vec<ReleaseId> = self
            .map
            .iter()
            .filter(|(id, a)| !a.release.is_finished() && !open_ids.contains(id.as_str()))
            .map(|(id, _)| id.clone())
            .collect();
        for id in ended {
            self.reload(&id).await?;
        }
        for s in &open {
            let up_to_date = match self.map.get(s.id.as_str()) {
                Some(a) => !a.stale && a.log_len == s.events,
                None => self.foreign.contains(&s.id),
            };
            if !up_to_date {
                self.adopt(&s.id).await?;
            }
        }
        Ok(())
    }

    /// Loads release `id` from the store (a release another replica started or moved on).
    pub(super) async fn adopt(&mut self, id: &str) -> Result<(), StoreError> {
        let Some((release, log_len, _)) = self.load(id).await? else { return Ok(()) };
        if release.plan.people.platform != self.platform {
            self.foreign.insert(id.to_string());
            return Ok(());
        }
        match self.map.get_mut(id) {
            Some(a) => {
                a.release = release;
                a.log_len = log_len;
                a.stale = false;
            }
            None => {
                let lock = self.store.lock_holder(&release.env, now().0).await?.filter(|l| l.owner == id);
                let (token, expires) = (lock.as_ref().map(|l| l.token), lock.map(|l| l.expires_at_ms).unwrap_or(0));
                self.map.insert(id.into(), Active::new(release, log_len, token, expires));
            }
        }
        Ok(())
    }

    /// Picks the release a command is for: the one waiting for that kind of input, else the only one.
    pub(super) fn route(&self, rc: &ReleaseCommand) -> Option<ReleaseId> {
        let active: Vec<&Release> = self.active().collect();
        let waiting = active.iter().find(|r| match rc {
            ReleaseCommand::Ack => matches!(r.activity, Activity::Acks { .. }),
            ReleaseCommand::Approve { .. } | ReleaseCommand::Reject { .. } => {
                matches!(r.activity, Activity::Approval { .. })
            }
            ReleaseCommand::Waive { .. } | ReleaseCommand::Retry => matches!(r.activity, Activity::Halted(_)),
            _ => false,
        });
        match (waiting, active.as_slice()) {
            (Some(r), _) => Some(r.id.clone()),
            (None, [only]) => Some(only.id.clone()),
            _ => None,
        }
    }
}

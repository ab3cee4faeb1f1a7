//! The read side: `/ray status`, `/ray history`, `/ray protocols` and `/ray help` answered beside
//! the driver, concurrently with its writes, from the catch-up read alone.
//!
//! The driver publishes each release it holds on a [`Board`] (its log length and status line) after
//! every event it handles. A status question reads the index of unfinished releases (one round
//! trip) and answers from the board when the board is as far as the store for every one of them;
//! when another replica moved a release on since, the question goes to the driver, which catches
//! up first.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};

use async_trait::async_trait;

use super::answers::{self, StatusLine};
use crate::chat::handle::ReadSide;
use crate::command::{Command, HELP};
use crate::protocol::Catalog;
use crate::store::Store;

/// What the driver knows of its releases, as the read side needs it.
#[derive(Debug, Default)]
pub struct Board {
    /// Release id → (events in its log, its status line).
    releases: BTreeMap<String, (u64, StatusLine)>,
    /// Releases of other chat platforms (never shown here).
    foreign: BTreeSet<String>,
}

impl Board {
    /// Publishes release `id` at log length `events`.
    pub fn set(&mut self, id: &str, events: u64, line: StatusLine) {
        self.releases.insert(id.to_string(), (events, line));
    }

    /// Release `id` is no longer held by the driver.
    pub fn remove(&mut self, id: &str) {
        self.releases.remove(id);
    }

    /// Release `id` belongs to another platform.
    pub fn foreign(&mut self, id: &str) {
        self.foreign.insert(id.to_string());
    }

    /// The releases published.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.releases.keys().map(String::as_str)
    }

    /// The log length published for `id`.
    pub fn events(&self, id: &str) -> Option<u64> {
        self.releases.get(id).map(|(n, _)| *n)
    }
}

/// Answers read-only commands for one driver.
pub struct Reader {
    store: Arc<dyn Store>,
    board: Arc<RwLock<Board>>,
    protocols: String,
}

impl Reader {
    /// A reader over `store` and the `board` the driver keeps; `/ray protocols` from `catalog`.
    pub fn new(store: Arc<dyn Store>, board: Arc<RwLock<Board>>, catalog: &Catalog) -> Reader {
        Reader { store, board, protocols: answers::protocols(catalog) }
    }

    async fn status(&self, version: Option<&str>) -> Option<String> {
        let open = match self.store.unfinished().await {
            Ok(open) => open,
            Err(_) => return Some(crate::engine::refuse(crate::engine::refusal::Runtime::StoreDown)),
        };
        let board = self.board.read().ok()?;
        let open_ids: BTreeSet<&str> = open.iter().map(|s| s.id.as_str()).collect();
        // Every unfinished release is on the board as far as the store has it (or is another
        // platform's), and nothing the board calls running has ended elsewhere: else the driver
        // catches up and answers.
        let current = open.iter().all(|s| board.foreign.contains(&s.id) || board.events(&s.id) == Some(s.events))
            && board.releases.iter().all(|(id, (_, line))| line.finished || open_ids.contains(id.as_str()));
        if !current {
            return None;
        }
        Some(answers::status(board.releases.values().map(|(_, line)| line), version))
    }
}

#[async_trait]
impl ReadSide for Reader {
    async fn answer(&self, command: &Command) -> Option<String> {
        match command {
            Command::Help => Some(HELP.to_string()),
            Command::Protocols => Some(self.protocols.clone()),
            Command::History => Some(match self.store.summaries().await {
                Ok(list) => answers::history(&list),
                Err(_) => crate::engine::refuse(crate::engine::refusal::Runtime::StoreDown),
            }),
            Command::Status { version } => self.status(version.as_deref()).await,
            _ => None,
        }
    }
}

//! The daemon's side of the etcd catalogue (`crate::catalogue`): each update the
//! watcher hands in is validated whole and applied at once, live memberships decided
//! again as on a policy reload, or refused whole with the previous catalogue kept.

use crate::catalogue::{Applied, Update};
use serde::Serialize;
use std::time::Instant;
use tokio::sync::watch;
use tracing::{info, warn};

/// Octets of a refusal's reason kept.
const MAX_REFUSAL: usize = 512;

pub(super) struct Catalogue {
    /// What the watcher writes under the switch's status key.
    pub applied: watch::Sender<Applied>,
    pub stats: Stats,
}

#[derive(Debug, Default, Clone, Serialize)]
pub(super) struct Stats {
    /// The etcd revision of the catalogue in force (0: none yet; the policy files').
    pub revision: i64,
    pub applied: u64,
    pub refused: u64,
    /// Full listings after the watched revision was compacted away.
    pub resyncs: u64,
    pub last_refusal: Option<String>,
    /// The store could not keep an applied catalogue (a start without etcd would use
    /// an older one).
    pub store_errors: u64,
}

impl Catalogue {
    pub fn new() -> Self {
        Catalogue { applied: watch::channel(Applied::default()).0, stats: Stats::default() }
    }
}

impl super::Daemon {
    pub(super) fn catalogue_update(&mut self, now: Instant, u: Update) {
        let Some(c) = self.catalogue.as_mut() else { return };
        c.stats.resyncs += u64::from(u.resync);
        let snap = match u.catalogue {
            Ok(s) => s,
            Err((revision, why)) => return self.catalogue_refuse(revision, why),
        };
        if snap.revision <= c.stats.revision {
            return;
        }
        if snap.keys.is_empty() {
            // nothing pushed yet (or everything deleted): not a policy that denies all
            info!(revision = snap.revision, "the catalogue in etcd is empty; the policy in force stays");
            return;
        }
        let policy = match snap.policy() {
            Ok(p) => p,
            Err(e) => return self.catalogue_refuse(snap.revision, e.to_string()),
        };
        if self.mcast.is_none() {
            return;
        }
        let packages = policy.packages.len();
        let revoked = self.policy_swap(now, policy);
        let Some(c) = self.catalogue.as_mut() else { return };
        if let Err(e) = self.store.set_catalogue(&snap) {
            c.stats.store_errors += 1;
            warn!("catalogue revision {} applied but not stored: {e}", snap.revision);
        }
        c.stats.revision = snap.revision;
        c.stats.applied += 1;
        c.stats.last_refusal = None;
        c.applied.send_replace(Applied { revision: snap.revision, refused: None, refused_revision: None });
        info!(
            revision = snap.revision,
            keys = snap.keys.len(),
            packages,
            revoked,
            "catalogue applied; {revoked} memberships no longer allowed"
        );
    }

    fn catalogue_refuse(&mut self, revision: i64, mut why: String) {
        let Some(c) = self.catalogue.as_mut() else { return };
        // a parser's message may quote what etcd held: bounded for the status, the
        // metrics' scrape and the switch's status key
        if why.len() > MAX_REFUSAL {
            let cut = (0..=MAX_REFUSAL).rev().find(|i| why.is_char_boundary(*i)).unwrap_or(0);
            why.truncate(cut);
            why.push_str(" …");
        }
        c.stats.refused += 1;
        warn!(revision, in_force = c.stats.revision, "catalogue refused, nothing changed: {why}");
        c.applied.send_replace(Applied {
            revision: c.stats.revision,
            refused: Some(why.clone()),
            refused_revision: Some(revision),
        });
        c.stats.last_refusal = Some(why);
    }
}

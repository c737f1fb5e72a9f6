//! INVITEs nobody answers at all: not a ring, not a refusal, not even 100 Trying. A
//! PBX answers every INVITE it receives within milliseconds, so these are SIP scanners
//! and floods (SIPVicious' "friendly-scanner" and its kin), or traffic calltap sees only
//! half of. Each costs a dialog until it times out, and each would become a stored
//! record; a flood of them must cost a bounded amount instead:
//! - at most [`NoResponseLimits::max_pending`] such dialogs are held at once; beyond
//!   it the oldest is ended early (memory flat in the flood's size);
//! - of those that end, only a budget per source address and per minute of capture
//!   time (and one for all sources) is stored as records; the rest are counted, per
//!   source, and a log line (at most a few a minute) says a flood is on.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

use serde::Serialize;

use crate::base::Timestamp;

/// Source addresses counted one by one; past this many, the rest are counted together
/// (a flood from spoofed addresses cannot grow the table).
const MAX_SOURCES: usize = 4096;

/// Sources named on `/metrics` and in `/status`, the busiest first.
const TOP_SOURCES: usize = 20;

/// Log lines about floods per minute of capture time, all sources together.
const LOG_LINES_PER_MINUTE: u32 = 5;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoResponseLimits {
    /// Dialogs with no response held at once.
    pub max_pending: usize,
    /// Of those that end, records stored per source address and minute.
    pub per_source_per_minute: u32,
    /// Records stored per minute, all sources together.
    pub per_minute: u32,
}

impl Default for NoResponseLimits {
    fn default() -> Self {
        NoResponseLimits {
            max_pending: 10_000,
            per_source_per_minute: 10,
            per_minute: 300,
        }
    }
}

/// What [`NoResponse`] counted.
#[derive(Clone, Debug, Default, Serialize)]
pub struct NoResponseStats {
    /// INVITEs that opened a dialog and got no response before it ended.
    pub ended: u64,
    /// Of those, stored as records (within the budgets).
    pub stored: u64,
    /// Of those, counted only (past a budget).
    pub not_stored: u64,
    /// Ended early because too many were pending at once.
    pub ended_early: u64,
    /// Dialogs waiting for a first response now.
    pub pending: u64,
    /// The busiest sources, with how many of their INVITEs got no response.
    pub sources: Vec<SourceCount>,
    /// No-response INVITEs from sources past the first few thousand.
    pub other_sources: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SourceCount {
    pub source: String,
    pub invites: u64,
}

/// One source's share of the current minute, and its total.
#[derive(Clone, Copy, Debug, Default)]
struct Source {
    minute: u64,
    stored_this_minute: u32,
    logged_minute: Option<u64>,
    total: u64,
}

/// The no-response dialogs of a [`DialogTable`](super::DialogTable): which are pending,
/// and what their ends may store.
#[derive(Debug)]
pub struct NoResponse {
    limits: NoResponseLimits,
    /// Dialogs that had no response when they opened, oldest first, by Call-ID and
    /// INVITE time (an entry whose dialog has since been answered or gone is skipped).
    queue: VecDeque<(Box<[u8]>, Timestamp)>,
    pending: usize,
    sources: HashMap<IpAddr, Source>,
    /// (minute, stored in it) for all sources together.
    minute: (u64, u32),
    /// (minute, log lines in it).
    logged: (u64, u32),
    /// The minute the source table was last pruned.
    pruned_minute: u64,
    stats: NoResponseStats,
}

impl NoResponse {
    pub fn new(limits: NoResponseLimits) -> NoResponse {
        NoResponse {
            limits,
            queue: VecDeque::new(),
            pending: 0,
            sources: HashMap::new(),
            minute: (0, 0),
            logged: (0, 0),
            pruned_minute: 0,
            stats: NoResponseStats::default(),
        }
    }

    /// A dialog opened by an INVITE and awaiting its first response.
    pub fn opened(&mut self, call_id: &[u8], at: Timestamp) {
        self.pending += 1;
        self.queue.push_back((call_id.into(), at));
    }

    /// A pending dialog got its first response, or ended: it is no longer pending.
    pub fn settled(&mut self) {
        self.pending = self.pending.saturating_sub(1);
    }

    /// The oldest dialog to end early when too many are pending. `still_pending` tells
    /// whether the dialog of an entry is still waiting for its first response.
    pub fn over_limit(
        &mut self,
        still_pending: impl Fn(&[u8], Timestamp) -> bool,
    ) -> Option<Box<[u8]>> {
        if self.pending <= self.limits.max_pending {
            self.compact(&still_pending);
            return None;
        }
        while let Some((call_id, at)) = self.queue.pop_front() {
            if still_pending(&call_id, at) {
                self.stats.ended_early += 1;
                return Some(call_id);
            }
        }
        None
    }

    /// Keeps the queue near the number pending: the entries of dialogs answered long
    /// since are dropped from the front as they are met, and all at once when they
    /// outnumber the live ones (a pending dialog at the front holds back the rest).
    fn compact(&mut self, still_pending: &impl Fn(&[u8], Timestamp) -> bool) {
        while let Some((call_id, at)) = self.queue.front() {
            if still_pending(call_id, *at) {
                break;
            }
            self.queue.pop_front();
        }
        if self.queue.len() > 2 * self.pending + 1024 {
            self.queue
                .retain(|(call_id, at)| still_pending(call_id, *at));
        }
    }

    /// A dialog that never got a response ended: whether its record may be stored (the
    /// budgets of its source's minute and of the minute allow it). Counted either way.
    pub fn admit(&mut self, source: IpAddr, invited: Timestamp) -> bool {
        let minute = invited.unix_secs() / 60;
        self.stats.ended += 1;
        if self.minute.0 != minute {
            self.minute = (minute, 0);
        }
        if !self.sources.contains_key(&source) && self.sources.len() >= MAX_SOURCES {
            // Sources of past minutes have nothing left to budget: they make room, once
            // a minute at most (a spoofed flood brings a new source every INVITE).
            if self.pruned_minute != minute {
                self.pruned_minute = minute;
                self.sources.retain(|_, s| s.minute + 1 >= minute);
            }
            if self.sources.len() >= MAX_SOURCES {
                self.stats.other_sources += 1;
                self.stats.not_stored += 1;
                return false;
            }
        }
        let s = self.sources.entry(source).or_default();
        s.total += 1;
        if s.minute != minute {
            s.minute = minute;
            s.stored_this_minute = 0;
        }
        let admitted = s.stored_this_minute < self.limits.per_source_per_minute
            && self.minute.1 < self.limits.per_minute;
        if admitted {
            s.stored_this_minute += 1;
            self.minute.1 += 1;
            self.stats.stored += 1;
            return true;
        }
        self.stats.not_stored += 1;
        if s.logged_minute != Some(minute) {
            s.logged_minute = Some(minute);
            if self.logged.0 != minute {
                self.logged = (minute, 0);
            }
            if self.logged.1 < LOG_LINES_PER_MINUTE {
                self.logged.1 += 1;
                tracing::warn!(
                    "INVITEs from {source} get no response (a scanner or a flood): {} \
                     stored this minute, the rest only counted ({} so far from it)",
                    s.stored_this_minute,
                    s.total
                );
            }
        }
        false
    }

    pub fn stats(&self) -> NoResponseStats {
        let mut sources: Vec<SourceCount> = self
            .sources
            .iter()
            .map(|(ip, s)| SourceCount {
                source: ip.to_string(),
                invites: s.total,
            })
            .collect();
        sources.sort_by(|a, b| b.invites.cmp(&a.invites).then(a.source.cmp(&b.source)));
        sources.truncate(TOP_SOURCES);
        NoResponseStats {
            pending: self.pending as u64,
            sources,
            ..self.stats.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> Timestamp {
        Timestamp::from_nanos(secs * 1_000_000_000)
    }

    #[test]
    fn a_source_is_stored_up_to_its_budget_each_minute() {
        let mut n = NoResponse::new(NoResponseLimits {
            per_source_per_minute: 3,
            ..NoResponseLimits::default()
        });
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let stored = (0..10).filter(|i| n.admit(a, at(600 + i))).count();
        assert_eq!(stored, 3);
        assert!(n.admit(b, at(610)), "another source has its own budget");
        assert!(n.admit(a, at(660)), "a new minute, a new budget");
        let s = n.stats();
        assert_eq!((s.ended, s.stored, s.not_stored), (12, 5, 7));
        assert_eq!(s.sources[0].source, "192.0.2.1");
        assert_eq!(s.sources[0].invites, 11);
    }

    #[test]
    fn all_sources_together_have_a_budget_too() {
        let mut n = NoResponse::new(NoResponseLimits {
            per_minute: 5,
            ..NoResponseLimits::default()
        });
        let stored = (0..100u32)
            .filter(|i| n.admit(IpAddr::from(i.to_be_bytes()), at(600)))
            .count();
        assert_eq!(stored, 5);
    }

    #[test]
    fn sources_past_the_table_are_counted_together() {
        let mut n = NoResponse::new(NoResponseLimits::default());
        for i in 0..(MAX_SOURCES as u32 + 10) {
            n.admit(IpAddr::from(i.to_be_bytes()), at(600));
        }
        let s = n.stats();
        assert_eq!(s.other_sources, 10);
        assert_eq!(s.sources.len(), TOP_SOURCES);
        // A minute on, the old sources make room.
        n.admit(IpAddr::from([10, 0, 0, 1]), at(800));
        assert_eq!(n.stats().other_sources, 10);
    }

    #[test]
    fn the_oldest_pending_dialog_goes_first_and_answered_ones_are_skipped() {
        let mut n = NoResponse::new(NoResponseLimits {
            max_pending: 2,
            ..NoResponseLimits::default()
        });
        n.opened(b"a", at(1));
        n.opened(b"b", at(2));
        assert_eq!(n.over_limit(|_, _| true), None);
        n.opened(b"c", at(3));
        // "a" was answered meanwhile (its settle came with the answer).
        n.settled();
        n.opened(b"d", at(4));
        let first = n.over_limit(|id, _| id != b"a");
        assert_eq!(first.as_deref(), Some(&b"b"[..]));
    }

    #[test]
    fn the_queue_stays_short_when_everything_is_answered() {
        let mut n = NoResponse::new(NoResponseLimits::default());
        for i in 0..100_000u32 {
            n.opened(&i.to_be_bytes(), at(u64::from(i)));
            n.settled();
            assert_eq!(n.over_limit(|_, _| false), None);
        }
        assert!(n.queue.len() <= 1, "{}", n.queue.len());
    }
}

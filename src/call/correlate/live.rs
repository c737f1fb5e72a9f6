//! Conversations as they happen, for call events: the records wait for every leg to end
//! (and half a minute more), but a CRM must hear of a call while it rings.
//!
//! Each dialog is tracked from its first response until its record is made. A leg the
//! PBX places for a conversation already ringing (the same pairing rules as the records:
//! placed while the inbound leg was ringing or up, with a number in common) belongs to
//! that conversation, and its events are the conversation's:
//! - a conversation is named by its first leg's record id (the `callId` of its events),
//!   known from its first response on;
//! - it rings once (its first leg), is answered once (the first answer on any of its
//!   legs: an operator's phone, or the PBX itself for an IVR), and ends once: when every
//!   leg is over, with the record it will have (the same merge as the records', as of
//!   that moment); an unanswered conversation ends with its first leg.

use std::collections::BTreeMap;

use crate::base::Timestamp;
use crate::dialog::FinishedDialog;
use crate::events::EventKind;

use super::super::classify::Classifier;
use super::super::record::CallRecord;
use super::{callee_ids, caller_ids, Correlator, Leg, Way};

/// How long a conversation whose first leg is over waits for its other legs before it
/// is reported ended anyway (a BYE lost on a phone leg must not hold `call.ended`).
const WAIT_FOR_LEGS: std::time::Duration = std::time::Duration::from_secs(2);

/// One leg, while its conversation lasts. Its `leg.record` is the record as of the
/// leg's end, `None` while it is up.
pub(super) struct LiveLeg {
    leg: Leg,
    /// The conversation it belongs to (the first leg's record id).
    key: String,
}

impl LiveLeg {
    fn is_over(&self) -> bool {
        self.leg.record.is_some()
    }
}

/// One conversation's progress.
#[derive(Default)]
pub(super) struct LiveConversation {
    /// Events given so far, by type (the ordinal of the next one).
    given: BTreeMap<EventKind, u32>,
    answered: bool,
    ended: bool,
    /// When the first leg ended.
    first_over: Option<Timestamp>,
    /// Legs tracked (the conversation goes with the last).
    legs: usize,
    /// Of those, legs not over yet.
    up: usize,
}

/// What a leg's end means for its conversation's events.
pub enum LiveOver {
    Nothing,
    /// The conversation ended unanswered: this record says how.
    Unanswered {
        key: String,
        record: CallRecord,
    },
    /// The conversation ended after an answer, at `at`: its record as it stands.
    Ended {
        key: String,
        record: CallRecord,
        at: Timestamp,
    },
}

/// How a leg's first response was taken.
pub struct LiveStart {
    /// The conversation's name (its first leg's record id).
    pub key: String,
    /// A leg the PBX placed for a conversation already ringing.
    pub placed: bool,
}

impl Correlator {
    /// A leg got its first response.
    pub fn live_started(&mut self, d: &FinishedDialog) -> LiveStart {
        let leg = self.leg(d.clone(), None);
        let parent = match self.place(d) {
            Some((Way::Out, o_role)) => self
                .live
                .values()
                .filter(|l| l.key == l.leg.dialog.record_id && !l.is_over())
                .filter_map(|i| match self.place(&i.leg.dialog) {
                    Some((Way::In, i_role)) => self
                        .score_placed(&i.leg, i_role, &leg, o_role)
                        .map(|s| (s, i.leg.invite_ns(), i.key.clone())),
                    _ => None,
                })
                .max_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)))
                .map(|(_, _, key)| key),
            _ => None,
        };
        let placed = parent.is_some();
        let key = parent.unwrap_or_else(|| d.record_id.clone());
        let c = self.conversations.entry(key.clone()).or_default();
        c.legs += 1;
        c.up += 1;
        self.live.insert(
            d.record_id.clone(),
            LiveLeg {
                leg,
                key: key.clone(),
            },
        );
        LiveStart { key, placed }
    }

    /// A leg was answered: the conversation's name when this is its first answer.
    pub fn live_answered(&mut self, d: &FinishedDialog) -> Option<String> {
        let live = self.live.get_mut(&d.record_id)?;
        live.leg.dialog = d.clone();
        let conversation = self.conversations.get_mut(&live.key)?;
        if std::mem::replace(&mut conversation.answered, true) {
            return None;
        }
        Some(live.key.clone())
    }

    /// Legs the conversation has had, so far.
    pub fn live_legs(&self, key: &str) -> usize {
        self.conversations.get(key).map_or(0, |c| c.legs)
    }

    /// The conversation a tracked leg belongs to.
    pub fn live_key(&self, record_id: &str) -> Option<&str> {
        self.live.get(record_id).map(|l| l.key.as_str())
    }

    /// The ordinal of the conversation's next event of this type (its id derives from
    /// it), counted.
    pub fn live_next(&mut self, key: &str, kind: EventKind) -> u32 {
        let Some(c) = self.conversations.get_mut(key) else {
            return 0;
        };
        let n = c.given.entry(kind).or_default();
        *n += 1;
        *n - 1
    }

    /// A leg is over (hung up, or ended unanswered), with its record as of now.
    pub fn live_over(
        &mut self,
        d: &FinishedDialog,
        record: CallRecord,
        now: Timestamp,
        classifier: &Classifier,
    ) -> LiveOver {
        let Some(live) = self.live.get_mut(&d.record_id) else {
            return LiveOver::Nothing;
        };
        if live.is_over() {
            return LiveOver::Nothing;
        }
        live.leg.dialog = d.clone();
        let key = live.key.clone();
        let is_first = key == d.record_id;
        let Some(c) = self.conversations.get_mut(&key) else {
            return LiveOver::Nothing;
        };
        c.up = c.up.saturating_sub(1);
        if c.ended {
            live.leg.record = Some(record);
            return LiveOver::Nothing;
        }
        if is_first {
            c.first_over.get_or_insert(now);
            if !c.answered {
                c.ended = true;
                live.leg.record = Some(record.clone());
                return LiveOver::Unanswered { key, record };
            }
        }
        let done = c.answered && c.first_over.is_some() && c.up == 0;
        if done && c.legs == 1 {
            // A conversation of one dialog: its record is this one.
            c.ended = true;
            live.leg.record = Some(record.clone());
            return LiveOver::Ended {
                at: Timestamp::from_nanos(record.end_ns),
                key,
                record,
            };
        }
        live.leg.record = Some(record);
        if !done {
            return LiveOver::Nothing;
        }
        self.end_conversation(&key, now, classifier)
    }

    /// Conversations whose first leg ended a while ago while another leg stays up:
    /// reported ended as they stand.
    pub fn live_due(
        &mut self,
        now: Timestamp,
        classifier: &Classifier,
    ) -> Vec<(String, CallRecord, Timestamp)> {
        let due: Vec<String> = self
            .conversations
            .iter()
            .filter(|(_, c)| {
                c.answered
                    && !c.ended
                    && c.first_over.is_some_and(|t| now.since(t) >= WAIT_FOR_LEGS)
            })
            .map(|(k, _)| k.clone())
            .collect();
        due.into_iter()
            .filter_map(|key| match self.end_conversation(&key, now, classifier) {
                LiveOver::Ended { key, record, at } => Some((key, record, at)),
                _ => None,
            })
            .collect()
    }

    /// An attended transfer was confirmed on leg `d`: the consultation's leg to the
    /// target, placed for the transferring operator's own call, carries the client on
    /// from now, so it joins `d`'s conversation (as the records' merge moves it).
    pub fn live_transferred(&mut self, d: &FinishedDialog) {
        let Some(target) = d
            .transfer
            .as_ref()
            .filter(|t| t.kind == "attended")
            .map(|t| t.target.clone())
        else {
            return;
        };
        let Some(key) = self.live.get(&d.record_id).map(|l| l.key.clone()) else {
            return;
        };
        let operator = callee_ids(d);
        let consult = self.live.iter().find_map(|(id, c)| {
            let first = self.live.get(&c.key)?;
            let moves = c.key != key
                && c.key != *id
                && !c.is_over()
                && c.leg.answered()
                && self.place(&c.leg.dialog) == Some((Way::Out, super::Role::Phone))
                && self.any_same(&caller_ids(&first.leg.dialog), &operator)
                && callee_ids(&c.leg.dialog)
                    .iter()
                    .any(|i| self.same_number(&i.user, &target));
            moves.then(|| (id.clone(), c.key.clone()))
        });
        if let Some((id, old)) = consult {
            if let Some(c) = self.conversations.get_mut(&old) {
                c.legs = c.legs.saturating_sub(1);
                c.up = c.up.saturating_sub(1);
            }
            let c = self.conversations.entry(key.clone()).or_default();
            c.legs += 1;
            c.up += 1;
            if let Some(c) = self.live.get_mut(&id) {
                c.key = key;
            }
        }
    }

    /// A leg's record was made: it is no longer tracked (nor its conversation, with its
    /// last leg).
    pub fn live_forget(&mut self, record_id: &str) {
        let Some(live) = self.live.remove(record_id) else {
            return;
        };
        if let Some(c) = self.conversations.get_mut(&live.key) {
            c.legs = c.legs.saturating_sub(1);
            if !live.is_over() {
                c.up = c.up.saturating_sub(1);
            }
            if c.legs == 0 {
                self.conversations.remove(&live.key);
            }
        }
    }

    /// Ends conversation `key`, with its record as of `now`; it ended where the record
    /// says (the first hang-up of its legs).
    fn end_conversation(&mut self, key: &str, now: Timestamp, classifier: &Classifier) -> LiveOver {
        let Some(c) = self.conversations.get_mut(key) else {
            return LiveOver::Nothing;
        };
        c.ended = true;
        match self.live_preview(key, now, classifier) {
            Some(record) => LiveOver::Ended {
                key: key.to_string(),
                at: Timestamp::from_nanos(record.end_ns),
                record,
            },
            None => LiveOver::Nothing,
        }
    }

    /// The conversation's record as it stands: its first leg's, merged with the legs
    /// placed for it exactly as the records will be, each leg as of its end or, still
    /// up, as of now. Of several operator segments (a transfer), the latest.
    pub fn live_preview(
        &mut self,
        key: &str,
        now: Timestamp,
        classifier: &Classifier,
    ) -> Option<CallRecord> {
        let as_of_now = |l: &LiveLeg| {
            let mut leg = l.leg.clone();
            if leg.record.is_none() {
                leg.dialog.end_time = now.max(leg.dialog.invite_time);
                leg.record = Some(classifier.classify(&leg.dialog).0);
            }
            leg
        };
        if self.conversations.get(key).is_none_or(|c| c.legs <= 1) {
            return as_of_now(self.live.get(key)?).record;
        }
        let inbound = as_of_now(self.live.get(key)?);
        let mut placed: Vec<Leg> = self
            .live
            .iter()
            .filter(|(id, l)| l.key == key && id.as_str() != key)
            .map(|(_, l)| as_of_now(l))
            .collect();
        if placed.is_empty() {
            return inbound.record;
        }
        placed.sort_by_key(|l| (l.invite_ns(), l.seq));
        // The merge counts what it does; a preview must not.
        let stats = self.stats.clone();
        let records = self.conversation(inbound.clone(), placed, false, classifier);
        self.stats = stats;
        records
            .into_iter()
            .filter(|r| r.conversation.merged_into.is_none())
            .max_by_key(|r| r.conversation.segment)
            .or(inbound.record)
    }
}

//! One conversation, one record: the legs of a back-to-back user agent put together.
//!
//! Beside Asterisk or FreeSWITCH one conversation is several dialogs, each with its own
//! Call-ID: the leg that enters the PBX (trunk -> PBX for an incoming call, phone -> PBX
//! for an outgoing or internal one) and the legs the PBX places because of it (PBX ->
//! phone, one per ringing phone of a queue or ring group; PBX -> trunk). The correlator
//! sits between the classifier and the store: every finished leg is held until no
//! partner can appear any more, then the legs of one conversation leave as one record
//! per operator segment (DESIGN.md "Call semantics"), the other legs as records merged
//! into it (kept for operations, never exported).
//!
//! How legs are paired, in capture time only:
//! - Place. With `[network] pbx` (or, without it, the PBX calltap guessed: the address
//!   an INVITE goes to while an overlapping INVITE comes from it), a leg whose INVITE
//!   goes into the PBX is *inbound*, one the PBX sends is *outbound*; its far end is a
//!   trunk (in `trunks`, outside a configured `internal`, or, with neither configured,
//!   a party with an external-looking number) or a phone. A leg that does not touch the
//!   PBX is direct and stands alone.
//! - An outbound leg belongs to the inbound leg it was placed for: the outbound INVITE
//!   came while the inbound leg was ringing or up, and a number matches after
//!   normalisation (the caller's, as From or P-Asserted-Identity; or the dialled one,
//!   as To, Request-URI or the outbound leg's Diversion). Two trunk legs never pair.
//! - The configured `[calls] correlation_header`, present on both legs, decides alone:
//!   equal values pair, different values never do.
//! - Among several inbound candidates (two calls from one client number at once), the
//!   best-scoring one wins (header, then dialled number, then caller), then the latest
//!   to start: a PBX places an outbound leg for the call that just came in.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::Duration;

use serde::Serialize;

use crate::base::Timestamp;
use crate::config::Config;
use crate::dialog::{FinishedDialog, Identity, LINGER};

use super::classify::Classifier;
use super::record::{
    Alignment, CallRecord, Conversation, EndReason, MediaFacts, Outcome, Party, WhoHungUp,
};

mod live;

pub use live::{LiveOver, LiveStart};

/// How long a finished leg waits for its partners: 64 x T1, the life of one
/// transaction, covers the PBX relaying a BYE (milliseconds in every capture we have)
/// and a CANCEL's 487 on the legs of a ring group.
pub const HOLD_AFTER_END: Duration = LINGER;

/// Legs held at once. A leg is held for about half a minute after it ends (longer while
/// a partner is still up, e.g. a transferred call's trunk leg), so this covers hundreds
/// of conversations ending per second; past it the oldest legs are released unmerged
/// rather than memory growing. A held leg costs about 4 KB (dialog and record).
pub const MAX_HELD: usize = 10_000;

/// Answered legs still up that held legs may wait for: the dialog table's own bound.
const MAX_OPEN: usize = 100_000;

/// Headers kept on a merged record: both legs' dialplan headers, bounded.
const MAX_MERGED_HEADERS: usize = 32;

/// Digits compared when two numbers differ in their prefix (`+15551230199` against
/// `5551230199`): the national significant number of most plans.
const SUFFIX_MATCH_DIGITS: usize = 9;

/// How soon a relaying SBC places the inner leg of a trunk-to-trunk call: milliseconds
/// in every capture we have; a PBX that answers and then dials out takes longer.
const RELAY_WINDOW: Duration = Duration::from_secs(2);

/// A match on the configured correlation header outranks any heuristic.
const HEADER_SCORE: u32 = 1000;
const DIALLED_SCORE: u32 = 10;
const CALLER_SCORE: u32 = 5;

/// What the correlator counted and decided.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CorrelationStats {
    /// With no `[network] pbx`: the address calltap took for the PBX (an INVITE went to
    /// it while an overlapping INVITE came from it), or the two addresses of one box
    /// ("A and B": a call in on one, relayed out of the other at once), if any.
    pub pbx_guess: Option<String>,
    /// Pairs of overlapping legs that pointed at the guessed address.
    pub pbx_guess_sightings: u64,
    /// Conversation records made of more than one leg.
    pub conversations_merged: u64,
    /// Legs merged into another record (trunk legs, ring-group legs, the other phone
    /// leg of an internal call).
    pub legs_merged: u64,
    /// Conversations paired by the correlation header.
    pub header_matches: u64,
    /// Operator segments after the first (transfers).
    pub transfer_segments: u64,
    /// Legs released before their partners could be ruled out, because too many were
    /// held.
    pub forced_releases: u64,
    /// Legs held and answered legs tracked, now.
    pub held: u64,
    pub open: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Way {
    /// The INVITE went into the PBX.
    In,
    /// The PBX sent the INVITE.
    Out,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Trunk,
    Phone,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Trunk => "trunk",
            Role::Phone => "phone",
        }
    }
}

#[derive(Clone)]
struct Leg {
    dialog: FinishedDialog,
    /// The classified record; `None` while the leg is still up.
    record: Option<CallRecord>,
    /// Value of the correlation header on the initial INVITE.
    header: Option<String>,
    /// Arrival order: groups leave in the order their legs came.
    seq: u64,
}

impl Leg {
    fn invite_ns(&self) -> u64 {
        self.dialog.invite_time.as_nanos()
    }

    /// End in capture time; `u64::MAX` while up.
    fn end_ns(&self) -> u64 {
        match &self.record {
            Some(r) => r.end_ns,
            None => u64::MAX,
        }
    }

    fn src(&self) -> IpAddr {
        self.dialog.invite_src.ip().to_canonical()
    }

    fn dst(&self) -> IpAddr {
        self.dialog.invite_dst.ip().to_canonical()
    }

    fn answered(&self) -> bool {
        self.dialog.answer_time.is_some()
    }

    fn overlaps(&self, other: &Leg) -> bool {
        self.invite_ns() <= other.end_ns() && other.invite_ns() <= self.end_ns()
    }
}

pub struct Correlator {
    config: Config,
    header: Option<String>,
    /// Finished legs not yet released, in arrival order.
    held: Vec<Leg>,
    /// Answered legs still up, by record id.
    open: HashMap<String, Leg>,
    /// Overlapping-leg sightings per address, for the PBX guess.
    /// Sightings per address, or per pair of addresses of one box (lowest first; a single
    /// address is the pair of itself).
    sightings: BTreeMap<(IpAddr, IpAddr), u64>,
    guess: Vec<IpAddr>,
    seq: u64,
    stats: CorrelationStats,
    /// Legs tracked for call events, by record id (see `live`).
    live: HashMap<String, live::LiveLeg>,
    /// Their conversations, by name.
    conversations: HashMap<String, live::LiveConversation>,
}

impl Correlator {
    pub fn new(config: &Config) -> Self {
        Correlator {
            config: config.clone(),
            header: config.calls.correlation_header.clone(),
            held: Vec::new(),
            open: HashMap::new(),
            sightings: BTreeMap::new(),
            guess: Vec::new(),
            seq: 0,
            stats: CorrelationStats::default(),
            live: HashMap::new(),
            conversations: HashMap::new(),
        }
    }

    pub fn stats(&self) -> CorrelationStats {
        let mut s = self.stats.clone();
        s.held = self.held.len() as u64;
        s.open = self.open.len() as u64;
        s
    }

    /// The PBX's addresses calltap guessed (only without `[network] pbx`): one, or two
    /// for a box that takes calls on one and places them from the other.
    pub fn pbx_guess(&self) -> &[IpAddr] {
        &self.guess
    }

    fn leg(&mut self, dialog: FinishedDialog, record: Option<CallRecord>) -> Leg {
        self.seq += 1;
        let header = self.header.as_ref().and_then(|name| {
            dialog
                .headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.trim().to_string())
        });
        Leg {
            dialog,
            record,
            header,
            seq: self.seq,
        }
    }

    /// A leg was answered: held legs may have to wait for it.
    pub fn answered(&mut self, dialog: &FinishedDialog) {
        let leg = self.leg(dialog.clone(), None);
        self.observe(&leg);
        if self.open.len() >= MAX_OPEN {
            // The stalest goes: it can only make held legs wait.
            if let Some(id) = self
                .open
                .iter()
                .min_by_key(|(_, l)| l.seq)
                .map(|(id, _)| id.clone())
            {
                self.open.remove(&id);
            }
        }
        self.open.insert(dialog.record_id.clone(), leg);
    }

    /// A leg ended, classified. It is held, or passed straight through when it cannot
    /// be part of a conversation (no PBX known, or the PBX is not on it).
    pub fn ended(&mut self, dialog: FinishedDialog, record: CallRecord) -> Option<CallRecord> {
        let was_open = self.open.remove(&dialog.record_id).is_some();
        let leg = self.leg(dialog, Some(record));
        if !was_open {
            self.observe(&leg);
        }
        if self.place(&leg.dialog).is_none() {
            return leg.record;
        }
        self.held.push(leg);
        None
    }

    /// Records whose conversations are complete at `now`.
    pub fn release(&mut self, now: Timestamp, classifier: &Classifier) -> Vec<CallRecord> {
        self.release_with(Some(now), classifier)
    }

    /// Everything held, as it stands (end of input).
    pub fn flush(&mut self, classifier: &Classifier) -> Vec<CallRecord> {
        self.open.clear();
        self.release_with(None, classifier)
    }

    fn is_pbx(&self, ip: IpAddr) -> bool {
        let pbx = &self.config.network.pbx;
        if !pbx.is_empty() {
            return pbx.contains(ip);
        }
        self.guess.contains(&ip)
    }

    /// Which way the leg crosses the PBX and what is at its far end; `None` for a leg
    /// the PBX is not on (or both ends are the PBX).
    fn place(&self, d: &FinishedDialog) -> Option<(Way, Role)> {
        let (src, dst) = (
            d.invite_src.ip().to_canonical(),
            d.invite_dst.ip().to_canonical(),
        );
        let (way, far, far_ids) = match (self.is_pbx(src), self.is_pbx(dst)) {
            (false, true) => (Way::In, src, caller_ids(d)),
            (true, false) => (Way::Out, dst, callee_ids(d)),
            _ => return None,
        };
        let net = &self.config.network;
        let role = if net.trunks.contains(far) {
            Role::Trunk
        } else if !net.internal.is_empty() {
            if net.internal.contains(far) {
                Role::Phone
            } else {
                Role::Trunk
            }
        } else if far_ids
            .iter()
            .find(|i| !i.user.is_empty())
            .is_some_and(|i| self.is_external(&i.user))
        {
            Role::Trunk
        } else {
            Role::Phone
        };
        Some((way, role))
    }

    /// A number long enough to be a subscriber's, not an extension.
    fn is_external(&self, user: &str) -> bool {
        let n = self.config.numbers.normalize_number(user);
        let digits = n.strip_prefix('+').unwrap_or(&n);
        !digits.is_empty()
            && digits.bytes().all(|b| b.is_ascii_digit())
            && digits.len() >= self.config.numbers.min_external_digits
    }

    fn same_number(&self, a: &str, b: &str) -> bool {
        if a.is_empty() || b.is_empty() {
            return false;
        }
        let (a, b) = (
            self.config.numbers.normalize_number(a),
            self.config.numbers.normalize_number(b),
        );
        if a.eq_ignore_ascii_case(&b) {
            return true;
        }
        let digits = |s: &str| -> Option<String> {
            let d = s.strip_prefix('+').unwrap_or(s);
            (d.len() >= SUFFIX_MATCH_DIGITS && d.bytes().all(|c| c.is_ascii_digit()))
                .then(|| d[d.len() - SUFFIX_MATCH_DIGITS..].to_string())
        };
        matches!((digits(&a), digits(&b)), (Some(x), Some(y)) if x == y)
    }

    fn any_same(&self, a: &[&Identity], b: &[&Identity]) -> bool {
        a.iter()
            .any(|x| b.iter().any(|y| self.same_number(&x.user, &y.user)))
    }

    /// How well outbound leg `o` fits as placed for inbound leg `i`; `None` if it
    /// cannot be.
    fn score(&self, i: &Leg, o: &Leg) -> Option<u32> {
        let (Some((Way::In, i_role)), Some((Way::Out, o_role))) =
            (self.place(&i.dialog), self.place(&o.dialog))
        else {
            return None;
        };
        self.score_placed(i, i_role, o, o_role)
    }

    /// [`score`](Self::score) with both legs already placed (inbound, outbound).
    fn score_placed(&self, i: &Leg, i_role: Role, o: &Leg, o_role: Role) -> Option<u32> {
        // Placed while the inbound leg was ringing or up.
        if o.invite_ns() < i.invite_ns() || o.invite_ns() > i.end_ns() {
            return None;
        }
        if i_role == Role::Trunk && o_role == Role::Trunk {
            // Trunk to trunk is a relay (an SBC), not a PBX placing a call: only the
            // same caller to the same number, placed at once, is the same call.
            let relayed = o.invite_ns() - i.invite_ns() <= RELAY_WINDOW.as_nanos() as u64
                && self.any_same(&caller_ids(&i.dialog), &caller_ids(&o.dialog))
                && self.any_same(&callee_ids(&i.dialog), &callee_ids(&o.dialog));
            return relayed.then_some(DIALLED_SCORE + CALLER_SCORE);
        }
        if let (Some(a), Some(b)) = (&i.header, &o.header) {
            return (a == b).then_some(HEADER_SCORE);
        }
        let mut score = 0;
        let mut dialled = callee_ids(&o.dialog);
        dialled.extend(o.dialog.diversion.as_ref());
        if self.any_same(&callee_ids(&i.dialog), &dialled) {
            score += DIALLED_SCORE;
        }
        if self.any_same(&caller_ids(&i.dialog), &caller_ids(&o.dialog)) {
            score += CALLER_SCORE;
        }
        (score > 0).then_some(score)
    }

    /// Counts a new leg against the legs it overlaps, for the PBX guess.
    fn observe(&mut self, leg: &Leg) {
        if !self.config.network.pbx.is_empty() {
            return;
        }
        let mut seen = Vec::new();
        for other in self.open.values().chain(self.held.iter()) {
            if !leg.overlaps(other) {
                continue;
            }
            let (first, second) = if other.invite_ns() <= leg.invite_ns() {
                (other, leg)
            } else {
                (leg, other)
            };
            // INVITE into an address, then an INVITE out of it to somebody else.
            if first.dst() == second.src() && first.src() != second.dst() {
                seen.push((first.dst(), first.dst()));
            } else if self.relayed(first, second) {
                // Into one address and out of another at once, same numbers: one box
                // with two addresses (an SBC's outside and inside).
                let (a, b) = (first.dst(), second.src());
                seen.push((a.min(b), a.max(b)));
            }
        }
        for key in seen {
            *self.sightings.entry(key).or_default() += 1;
        }
        // Most sightings; the lowest addresses on a tie, so the guess is deterministic.
        let best = self
            .sightings
            .iter()
            .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
            .map(|(key, n)| (*key, *n));
        if let Some(((a, b), n)) = best {
            let guess = if a == b { vec![a] } else { vec![a, b] };
            let named = guess
                .iter()
                .map(IpAddr::to_string)
                .collect::<Vec<_>>()
                .join(" and ");
            if self.guess != guess {
                tracing::info!("no [network] pbx configured: taking {named} for the PBX");
            }
            self.guess = guess;
            self.stats.pbx_guess = Some(named);
            self.stats.pbx_guess_sightings = n;
        }
    }

    /// Whether `second` looks like `first` relayed by a B2BUA with two addresses: placed
    /// within the relay window from an address other than the one `first` went to, by
    /// neither of `first`'s ends, with the same caller and the same dialled number.
    fn relayed(&self, first: &Leg, second: &Leg) -> bool {
        second.invite_ns().saturating_sub(first.invite_ns()) <= RELAY_WINDOW.as_nanos() as u64
            && first.dst() != second.src()
            && second.src() != first.src()
            && second.dst() != first.dst()
            && second.dst() != first.src()
            && self.any_same(&caller_ids(&first.dialog), &caller_ids(&second.dialog))
            && self.any_same(&callee_ids(&first.dialog), &callee_ids(&second.dialog))
    }

    /// Whether a partner of held leg `h` may still be up.
    fn waits_for_open(&self, h: &Leg) -> bool {
        self.open
            .values()
            .any(|o| self.score(h, o).is_some() || self.score(o, h).is_some())
    }

    fn release_with(&mut self, now: Option<Timestamp>, classifier: &Classifier) -> Vec<CallRecord> {
        if self.held.is_empty() {
            return Vec::new();
        }
        let n = self.held.len();
        let excess = n.saturating_sub(MAX_HELD);
        let hold = HOLD_AFTER_END.as_nanos() as u64;
        let over = |leg: &Leg, now: Timestamp| now.as_nanos() >= leg.end_ns().saturating_add(hold);
        // The common case, once a second: nobody's hold is over yet.
        if let Some(now) = now {
            if excess == 0 && !self.held.iter().any(|l| over(l, now)) {
                return Vec::new();
            }
        }
        // Each outbound leg to its best inbound partner among the held legs; legs are
        // placed once, and only inbound x outbound pairs are scored.
        let places: Vec<Option<(Way, Role)>> =
            self.held.iter().map(|l| self.place(&l.dialog)).collect();
        let inbound: Vec<(usize, Role)> = places
            .iter()
            .enumerate()
            .filter_map(|(k, p)| match p {
                Some((Way::In, r)) => Some((k, *r)),
                _ => None,
            })
            .collect();
        let mut partner: Vec<Option<usize>> = vec![None; n];
        let mut by_header = vec![false; n];
        for (oi, o) in self.held.iter().enumerate() {
            let Some((Way::Out, o_role)) = places[oi] else {
                continue;
            };
            let best = inbound
                .iter()
                .filter_map(|&(ii, i_role)| {
                    let i = &self.held[ii];
                    self.score_placed(i, i_role, o, o_role)
                        .map(|s| (s, i.invite_ns(), ii))
                })
                .max_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
            if let Some((s, _, ii)) = best {
                partner[oi] = Some(ii);
                by_header[oi] = s >= HEADER_SCORE;
            }
        }
        // Groups: an inbound leg and the outbound legs placed for it; a leg with no
        // partner is a group of one. An inbound leg is never itself placed for another.
        let mut group_of: Vec<usize> = (0..n).collect();
        for (oi, p) in partner.iter().enumerate() {
            if let Some(ii) = *p {
                if partner[ii].is_none() {
                    group_of[oi] = ii;
                }
            }
        }
        // Attended transfer: the operator of an outbound phone leg consulted another
        // operator (its own call into the PBX, placed out to the target) and referred
        // the client to them with Replaces. The consultation's outbound leg, still up
        // after the referring leg ended, carries the client on: it joins the client's
        // conversation as the next operator segment; the consultation's inbound leg
        // stays a record of its own.
        let mut moves = Vec::new();
        for (ai, a) in self.held.iter().enumerate() {
            let Some(target) = a
                .dialog
                .transfer
                .as_ref()
                .filter(|t| t.kind == "attended")
                .map(|t| t.target.as_str())
            else {
                continue;
            };
            let Some(g) = partner[ai].filter(|&g| group_of[ai] == g) else {
                continue;
            };
            let operator = callee_ids(&a.dialog);
            let consult = self.held.iter().enumerate().find(|&(ci, c)| {
                let ii = group_of[ci];
                ii != ci
                    && ii != g
                    && places[ci] == Some((Way::Out, Role::Phone))
                    && c.answered()
                    && c.end_ns() > a.end_ns()
                    && self.any_same(&caller_ids(&self.held[ii].dialog), &operator)
                    && callee_ids(&c.dialog)
                        .iter()
                        .any(|i| self.same_number(&i.user, target))
            });
            if let Some((ci, _)) = consult {
                moves.push((ci, g));
            }
        }
        for (ci, g) in moves {
            group_of[ci] = g;
        }
        let mut ready = vec![true; n];
        if let Some(now) = now {
            for (k, leg) in self.held.iter().enumerate() {
                ready[k] = over(leg, now) && !self.waits_for_open(leg);
            }
        }
        let mut group_ready: HashMap<usize, bool> = HashMap::new();
        for k in 0..n {
            let g = group_ready.entry(group_of[k]).or_insert(true);
            *g &= ready[k];
        }
        // The oldest legs past the bound go whatever their state.
        for k in 0..excess {
            if !group_ready[&group_of[k]] {
                group_ready.insert(group_of[k], true);
                self.stats.forced_releases += 1;
            }
        }
        let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        let mut keep = Vec::new();
        for (k, leg) in std::mem::take(&mut self.held).into_iter().enumerate() {
            if group_ready[&group_of[k]] {
                groups.entry(group_of[k]).or_default().push(k);
                keep.push(Some(leg));
            } else {
                self.held.push(leg);
                keep.push(None);
            }
        }
        let mut out = Vec::new();
        for (head, members) in groups {
            let inbound = keep[head].take();
            let header = members.iter().any(|&k| by_header[k]);
            let mut outbound: Vec<Leg> = members
                .iter()
                .filter(|&&k| k != head)
                .filter_map(|&k| keep[k].take())
                .collect();
            outbound.sort_by_key(|l| (l.invite_ns(), l.seq));
            if let Some(inbound) = inbound {
                out.extend(self.conversation(inbound, outbound, header, classifier));
            }
        }
        out
    }

    /// The records of one group: an inbound leg and the legs placed for it.
    fn conversation(
        &mut self,
        inbound: Leg,
        outbound: Vec<Leg>,
        by_header: bool,
        classifier: &Classifier,
    ) -> Vec<CallRecord> {
        let Some(mut alone) = inbound.record.clone() else {
            return Vec::new();
        };
        if outbound.is_empty() {
            return vec![alone];
        }
        let Some((_, in_role)) = self.place(&inbound.dialog) else {
            return std::iter::once(alone)
                .chain(outbound.into_iter().filter_map(|l| l.record))
                .collect();
        };
        self.stats.conversations_merged += 1;
        if by_header {
            self.stats.header_matches += 1;
        }
        let conv_id = format!(
            "v-{}",
            inbound
                .dialog
                .record_id
                .strip_prefix("c-")
                .unwrap_or(&inbound.dialog.record_id)
        );
        let legs: Vec<String> = std::iter::once(&inbound)
            .chain(outbound.iter())
            .map(|l| l.dialog.call_id.clone())
            .collect();
        let role_of = |c: &Correlator, l: &Leg| c.place(&l.dialog).map(|(_, r)| r);
        // The trunk leg: the inbound one of an incoming call, else the answered (or
        // last tried) outbound trunk leg.
        let trunk_leg: Option<&Leg> = if in_role == Role::Trunk {
            Some(&inbound)
        } else {
            let trunks: Vec<&Leg> = outbound
                .iter()
                .filter(|l| role_of(self, l) == Some(Role::Trunk))
                .collect();
            trunks
                .iter()
                .find(|l| l.answered())
                .or(trunks.last())
                .copied()
        };
        let did = trunk_leg
            .filter(|l| std::ptr::eq(*l, &inbound))
            .and_then(|l| {
                callee_ids(&l.dialog)
                    .into_iter()
                    .rev()
                    .map(|i| i.user.as_str())
                    .find(|u| !u.is_empty())
                    .map(|u| self.config.numbers.normalize_number(u))
            });
        let trunk = trunk_leg.map(|l| {
            if std::ptr::eq(l, &inbound) {
                l.src().to_string()
            } else {
                l.dst().to_string()
            }
        });
        let correlated_by = Some(if by_header { "header" } else { "heuristics" }.to_string());
        let facts = Conversation {
            id: Some(conv_id.clone()),
            correlated_by: correlated_by.clone(),
            did: did.clone(),
            trunk: trunk.clone(),
            ..Conversation::default()
        };

        // Operator segments: each answered phone leg of an incoming call; the answered
        // outbound leg of an outgoing call (the first answered trunk leg) or of an
        // internal one (each answered phone leg).
        let answered: Vec<usize> = outbound
            .iter()
            .enumerate()
            .filter(|(_, l)| l.answered())
            .map(|(k, _)| k)
            .collect();
        let segments: Vec<usize> = match in_role {
            Role::Trunk => answered,
            Role::Phone => {
                let trunk_answer = answered
                    .iter()
                    .copied()
                    .find(|&k| role_of(self, &outbound[k]) == Some(Role::Trunk));
                match trunk_answer {
                    Some(k) => vec![k],
                    None => answered,
                }
            }
        };

        let mut records: Vec<CallRecord> = Vec::new();
        let mut used: Vec<bool> = vec![false; outbound.len()];
        let mut inbound_used = false;
        let mut recording_taken_from: Vec<String> = Vec::new();
        for (n, &k) in segments.iter().enumerate() {
            let o = &outbound[k];
            let phone_is_outbound = in_role == Role::Trunk;
            let (phone, other) = if phone_is_outbound {
                (o, &inbound)
            } else {
                (&inbound, o)
            };
            let mut d = if phone_is_outbound {
                // The client from the trunk leg, the operator from the phone leg.
                let mut d = o.dialog.clone();
                d.from = inbound.dialog.from.clone();
                d.p_asserted = inbound.dialog.p_asserted.clone();
                d.invite_src = inbound.dialog.invite_src;
                d
            } else {
                let mut d = inbound.dialog.clone();
                d.to = o.dialog.to.clone();
                d.request_uri = o.dialog.request_uri.clone();
                d.invite_dst = o.dialog.invite_dst;
                if role_of(self, o) == Some(Role::Phone) {
                    // Internal: the call starts when the called operator answers.
                    d.answer_time = o.dialog.answer_time.or(d.answer_time);
                }
                d
            };
            d.record_id = if phone_is_outbound || n > 0 {
                o.dialog.record_id.clone()
            } else {
                inbound.dialog.record_id.clone()
            };
            // The leg whose id the segment took is not emitted again; the other leg of
            // an outgoing or internal call's first segment is merged into it.
            if phone_is_outbound || n > 0 {
                used[k] = true;
            } else {
                inbound_used = true;
            }
            d.invite_time = inbound.dialog.invite_time;
            d.end_time = Timestamp::from_nanos(inbound.end_ns().min(o.end_ns()));
            d.headers = merge_headers(&phone.dialog.headers, &other.dialog.headers);
            d.transfer = phone.dialog.transfer.clone();
            let (end_reason, party) = who_ended(&inbound, o);
            d.end_reason = end_reason;
            d.hung_up_by = party;
            let (mut record, _) = classifier.classify(&d);
            // The operator left by transferring while the client stayed on.
            let transferred = phone.dialog.transfer.is_some() && other.end_ns() > phone.end_ns();
            if transferred {
                record.who_hung_up = WhoHungUp::Operator;
                record.end_reason = EndReason::Bye;
                record.hung_up_by = Some(if phone_is_outbound {
                    Party::Callee
                } else {
                    Party::Caller
                });
            }
            // The recording: the phone leg's, else the other leg's.
            let (media, from_other) = choose_media(
                phone.record.as_ref().map(|r| &r.media),
                other.record.as_ref().map(|r| &r.media),
            );
            let mut media = media;
            if from_other {
                recording_taken_from.push(other.dialog.record_id.clone());
                media.align = borrowed_alignment(&record, other, !phone_is_outbound);
            }
            record.media = media;
            record.conversation = Conversation {
                legs: legs.clone(),
                role: Some(Role::Phone.as_str().into()),
                segment: n as u32,
                transferred,
                ..facts.clone()
            };
            if n > 0 {
                self.stats.transfer_segments += 1;
            }
            records.push(record);
        }

        mark_shared_sources(&mut records);
        let primary = match records.first() {
            Some(r) => r.id.clone(),
            None => {
                // Nobody answered on the placed legs: the inbound leg is the record
                // (an IVR, a queue the client gave up on), the others merge into it.
                alone.conversation = Conversation {
                    legs: legs.clone(),
                    role: Some(in_role.as_str().into()),
                    ..facts.clone()
                };
                inbound_used = true;
                let id = alone.id.clone();
                records.push(alone);
                id
            }
        };
        let mut absorbed = Vec::new();
        if !inbound_used {
            absorbed.push(inbound);
        }
        absorbed.extend(
            outbound
                .into_iter()
                .zip(used)
                .filter(|(_, u)| !u)
                .map(|(l, _)| l),
        );
        for leg in absorbed {
            let role = self.place(&leg.dialog).map(|(_, r)| r.as_str().to_string());
            let Some(mut r) = leg.record else { continue };
            r.exported = false;
            if recording_taken_from.contains(&r.id) {
                r.media.recording = None;
                r.media.no_recording_reason = Some(format!("recording kept on call {primary}"));
            }
            r.conversation = Conversation {
                merged_into: Some(primary.clone()),
                role,
                ..facts.clone()
            };
            self.stats.legs_merged += 1;
            records.push(r);
        }
        records
    }
}

/// The media of an operator segment: the phone leg's, unless its recording is missing,
/// or it is one-way (one direction received nothing) while the other leg's recording
/// has both directions; then the other leg's (keeping the phone leg's DTMF, which the
/// operator's phone sent). The flag says the other leg's recording was taken.
fn choose_media(phone: Option<&MediaFacts>, other: Option<&MediaFacts>) -> (MediaFacts, bool) {
    let other_usable = other.filter(|o| o.recording.is_some());
    let take_other = match (phone, other_usable) {
        (_, None) => false,
        (None, Some(_)) => true,
        (Some(p), Some(o)) => p.recording.is_none() || (p.is_one_way() && o.is_two_way()),
    };
    match (phone, other_usable) {
        (p, Some(o)) if take_other => {
            let mut m = o.clone();
            if let Some(p) = p {
                m.dtmf_digits = p.dtmf_digits.clone();
            }
            (m, true)
        }
        (Some(p), _) => (p.clone(), false),
        (None, _) => (MediaFacts::default(), false),
    }
}

/// How the recording of leg `other` must change to be `record`'s: it was started at
/// that leg's answer, with that leg's operator on the left, where the record starts at
/// its own answer, with the operator's voice left. In the other leg, the operator's
/// voice is what the PBX sends: as the caller of a leg it placed (`other_is_outbound`),
/// as the callee of a leg it received. `None` when nothing needs changing.
fn borrowed_alignment(
    record: &CallRecord,
    other: &Leg,
    other_is_outbound: bool,
) -> Option<Alignment> {
    let other_record = other.record.as_ref()?;
    let file_start = other
        .dialog
        .answer_time
        .unwrap_or(other.dialog.invite_time)
        .as_nanos();
    let head_ns = record
        .answer_ns
        .map_or(0, |start| start as i128 - file_start as i128);
    let head_ns = i64::try_from(head_ns).unwrap_or(0);
    let voice_of_operator = if other_is_outbound {
        Party::Caller
    } else {
        Party::Callee
    };
    let swap = other_record.direction.operator_party() != voice_of_operator;
    let keep_ns = record
        .answer_ns
        .map(|start| record.end_ns.saturating_sub(start));
    Some(Alignment {
        head_ns,
        keep_ns,
        swap,
        source_shared: false,
    })
}

/// Marks the borrowed files a later record takes too, so only the last one's
/// alignment lets the source go.
fn mark_shared_sources(records: &mut [CallRecord]) {
    let mut later: Vec<String> = Vec::new();
    for record in records.iter_mut().rev() {
        let Some(file) = record.media.recording.as_ref().map(|r| r.file.clone()) else {
            continue;
        };
        if let Some(align) = record.media.align.as_mut() {
            align.source_shared = later.contains(&file);
        }
        later.push(file);
    }
}

/// The caller's identities, most trusted first.
fn caller_ids(d: &FinishedDialog) -> Vec<&Identity> {
    d.p_asserted
        .iter()
        .chain(std::iter::once(&d.from))
        .collect()
}

/// The callee's: what was dialled, then where it went.
fn callee_ids(d: &FinishedDialog) -> Vec<&Identity> {
    vec![&d.to, &d.request_uri]
}

fn merge_headers(first: &[(String, String)], second: &[(String, String)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = first.to_vec();
    for (name, value) in second {
        if out.len() >= MAX_MERGED_HEADERS {
            break;
        }
        if !out.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)) {
            out.push((name.clone(), value.clone()));
        }
    }
    out
}

/// How the conversation of inbound leg `i` and outbound leg `o` ended: the leg that
/// ended first decides, and its BYE's direction says which party of the conversation
/// hung up (the caller is the inbound leg's far end, the callee the outbound leg's).
/// A BYE from the PBX's side relays the other party's.
fn who_ended(i: &Leg, o: &Leg) -> (EndReason, Option<Party>) {
    let (Some(ri), Some(ro)) = (&i.record, &o.record) else {
        return (EndReason::EndOfCapture, None);
    };
    let from_far =
        |r: &CallRecord, far: Party| r.end_reason == EndReason::Bye && r.hung_up_by == Some(far);
    // On a tie the leg whose far end sent the BYE is where it started.
    let inbound_first =
        ri.end_ns < ro.end_ns || (ri.end_ns == ro.end_ns && from_far(ri, Party::Caller));
    let (first, first_is_inbound) = if inbound_first {
        (ri, true)
    } else {
        (ro, false)
    };
    if first.outcome != Outcome::Answered || first.end_reason != EndReason::Bye {
        return (first.end_reason, None);
    }
    let Some(sender) = first.hung_up_by else {
        return (first.end_reason, None);
    };
    let far = if first_is_inbound {
        Party::Caller
    } else {
        Party::Callee
    };
    let party = match (first_is_inbound, sender == far) {
        (true, true) | (false, false) => Party::Caller,
        (true, false) | (false, true) => Party::Callee,
    };
    (EndReason::Bye, Some(party))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::record::RecordingFile;

    fn media(file: Option<&str>, caller: u64, callee: u64) -> MediaFacts {
        MediaFacts {
            recording: file.map(|f| RecordingFile {
                file: f.into(),
                bytes: 1,
                sample_rate: 8000,
                duration_ms: 1,
            }),
            caller_packets: caller,
            callee_packets: callee,
            dtmf_digits: if file == Some("phone.wav") {
                "5".into()
            } else {
                String::new()
            },
            ..MediaFacts::default()
        }
    }

    fn file(m: &MediaFacts) -> Option<&str> {
        m.recording.as_ref().map(|r| r.file.as_str())
    }

    #[test]
    fn the_phone_legs_recording_is_preferred_when_two_way() {
        let (p, o) = (
            media(Some("phone.wav"), 50, 50),
            media(Some("trunk.wav"), 50, 50),
        );
        let (m, other) = choose_media(Some(&p), Some(&o));
        assert_eq!((file(&m), other), (Some("phone.wav"), false));
    }

    #[test]
    fn a_one_way_phone_recording_gives_way_to_a_two_way_one() {
        let (p, o) = (
            media(Some("phone.wav"), 50, 0),
            media(Some("trunk.wav"), 50, 50),
        );
        let (m, other) = choose_media(Some(&p), Some(&o));
        assert_eq!((file(&m), other), (Some("trunk.wav"), true));
        // The operator's digits stay.
        assert_eq!(m.dtmf_digits, "5");
        // Both one-way: the phone leg's stays.
        let o = media(Some("trunk.wav"), 0, 50);
        let (m, other) = choose_media(Some(&p), Some(&o));
        assert_eq!((file(&m), other), (Some("phone.wav"), false));
        // No counts (a record from before they were kept): not one-way.
        let p = media(Some("phone.wav"), 0, 0);
        let o = media(Some("trunk.wav"), 50, 50);
        assert_eq!(file(&choose_media(Some(&p), Some(&o)).0), Some("phone.wav"));
    }

    #[test]
    fn a_missing_phone_recording_falls_back() {
        let (p, o) = (media(None, 0, 0), media(Some("trunk.wav"), 50, 0));
        assert_eq!(file(&choose_media(Some(&p), Some(&o)).0), Some("trunk.wav"));
        assert_eq!(file(&choose_media(None, Some(&o)).0), Some("trunk.wav"));
        // Neither has one: the phone leg's facts (its no-recording reason).
        let o = media(None, 50, 50);
        let (m, other) = choose_media(Some(&p), Some(&o));
        assert_eq!((file(&m), other), (None, false));
        assert_eq!(choose_media(None, None).0, MediaFacts::default());
    }
}

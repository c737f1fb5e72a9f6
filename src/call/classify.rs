//! From a finished dialog to a call record: direction, operator, client, who hung up,
//! times and id, by the rules of DESIGN.md ("Call semantics") and the configuration.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::config::{Config, Operator};
use crate::dialog::{FinishedDialog, Identity, Registration};

use super::record::{
    CallRecord, Direction, EndReason, OperatorRef, Outcome, Party, SipFacts, WhoHungUp,
};

/// Digits compared when two numbers differ only in how much prefix they carry
/// (`+15551230101` vs `5551230101`): the national significant number of most plans.
const SUFFIX_MATCH_DIGITS: usize = 9;

/// An internal party found in traffic, not in the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiscoveredOperator {
    pub extension: String,
    pub name: Option<String>,
}

pub struct Classifier {
    config: Config,
    by_extension: HashMap<String, usize>,
    by_phone: HashMap<String, usize>,
    /// Display names phones registered with: an incoming call's To rarely carries the
    /// operator's name, the phone's REGISTER does.
    registered_names: HashMap<String, String>,
    /// Users that registered (lower case) and the addresses they registered from: a
    /// local user named "alice" or "frontdesk" is an extension although no number
    /// shape says so, and so is whoever calls from a phone that registered.
    registered: Registered,
}

/// Who registered, bounded.
#[derive(Clone, Default)]
struct Registered {
    users: std::collections::HashSet<String>,
    addresses: std::collections::HashSet<IpAddr>,
}

/// Registered names remembered: far more extensions than one PBX has, and bounded.
const MAX_REGISTERED_NAMES: usize = 50_000;

/// Which side of the call the operator is on.
#[derive(Clone, Copy, PartialEq, Eq)]
enum OperatorSide {
    Caller,
    Callee,
}

impl Classifier {
    pub fn new(config: &Config) -> Self {
        let mut by_extension = HashMap::new();
        let mut by_phone = HashMap::new();
        for (i, op) in config.operators.iter().enumerate() {
            if let Some(ext) = &op.extension {
                by_extension.insert(ext.to_ascii_lowercase(), i);
            }
            if let Some(phone) = &op.phone {
                by_phone.insert(config.numbers.normalize_number(phone), i);
            }
        }
        Classifier {
            config: config.clone(),
            by_extension,
            by_phone,
            registered_names: HashMap::new(),
            registered: Registered::default(),
        }
    }

    /// Puts a new configuration in force (SIGHUP): operators and numbering change for
    /// the next call classified; the display names phones registered with are kept,
    /// since phones re-register only every hour or so.
    pub fn reload(&mut self, config: &Config) {
        let registered_names = std::mem::take(&mut self.registered_names);
        let registered = std::mem::take(&mut self.registered);
        *self = Classifier::new(config);
        self.registered_names = registered_names;
        self.registered = registered;
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    fn normalize(&self, raw: &str) -> String {
        self.config.numbers.normalize_number(raw)
    }

    /// A short, dialable user part: what PBX extensions look like.
    /// A local user: a short numeric one, or any name a phone registered with.
    fn is_extension(&self, user: &str) -> bool {
        (!user.is_empty()
            && user.len() < self.config.numbers.min_external_digits
            && user.bytes().all(|b| b.is_ascii_digit()))
            || self.registered_user(user)
    }

    fn operator_for(&self, user: &str) -> Option<&Operator> {
        if user.is_empty() {
            return None;
        }
        if let Some(&i) = self.by_extension.get(&user.to_ascii_lowercase()) {
            return self.config.operators.get(i);
        }
        let number = self.normalize(user);
        if let Some(&i) = self.by_phone.get(&number) {
            return self.config.operators.get(i);
        }
        let digits = |s: &str| -> String { s.chars().filter(char::is_ascii_digit).collect() };
        let wanted = digits(&number);
        if wanted.len() < SUFFIX_MATCH_DIGITS {
            return None;
        }
        let tail = &wanted[wanted.len() - SUFFIX_MATCH_DIGITS..];
        self.by_phone
            .iter()
            .find(|(phone, _)| {
                let d = digits(phone);
                d.len() >= SUFFIX_MATCH_DIGITS && d.ends_with(tail)
            })
            .and_then(|(_, &i)| self.config.operators.get(i))
    }

    /// The caller's identities, most trusted first.
    fn caller_ids<'d>(&self, d: &'d FinishedDialog) -> Vec<&'d Identity> {
        d.p_asserted
            .iter()
            .chain(std::iter::once(&d.from))
            .collect()
    }

    /// The callee's identities: what was dialed, then where it went.
    fn callee_ids<'d>(&self, d: &'d FinishedDialog) -> Vec<&'d Identity> {
        [&d.to, &d.request_uri].into_iter().collect()
    }

    fn match_any<'s>(&'s self, ids: &[&Identity]) -> Option<(&'s Operator, String)> {
        ids.iter()
            .find_map(|id| self.operator_for(&id.user).map(|op| (op, id.user.clone())))
    }

    /// Decides direction and which side the operator is on when no configured operator
    /// settles it: trunks, then internal networks, then the shape of the numbers.
    fn guess(&self, d: &FinishedDialog, caller: &str, callee: &str) -> Direction {
        let net = &self.config.network;
        let (src, dst): (IpAddr, IpAddr) = (d.invite_src.ip(), d.invite_dst.ip());
        if !net.trunks.is_empty() {
            if net.trunks.contains(src) {
                return Direction::Incoming;
            }
            if net.trunks.contains(dst) {
                return Direction::Outgoing;
            }
        }
        if !net.internal.is_empty() {
            match (net.internal.contains(src), net.internal.contains(dst)) {
                (false, true) => return Direction::Incoming,
                (true, false) => return Direction::Outgoing,
                _ => {}
            }
        }
        let caller_local =
            self.is_extension(caller) || self.registered.addresses.contains(&src.to_canonical());
        let callee_local = self.is_extension(callee);
        match (caller_local, callee_local) {
            (true, true) => Direction::Internal,
            (true, false) => Direction::Outgoing,
            _ => Direction::Incoming,
        }
    }

    fn registered_user(&self, user: &str) -> bool {
        !user.is_empty() && self.registered.users.contains(&user.to_ascii_lowercase())
    }

    /// The record, and the internal parties found that no configuration names.
    pub fn classify(&self, d: &FinishedDialog) -> (CallRecord, Vec<DiscoveredOperator>) {
        let caller_ids = self.caller_ids(d);
        let callee_ids = self.callee_ids(d);
        let caller_user = caller_ids
            .iter()
            .map(|i| i.user.as_str())
            .find(|u| !u.is_empty())
            .unwrap_or_default();
        let callee_user = callee_ids
            .iter()
            .map(|i| i.user.as_str())
            .find(|u| !u.is_empty())
            .unwrap_or_default();
        let caller_op = self.match_any(&caller_ids);
        let callee_op = self.match_any(&callee_ids);

        let (direction, side) = match (&caller_op, &callee_op) {
            (Some(_), Some(_)) => (Direction::Internal, OperatorSide::Caller),
            (Some(_), None) => (Direction::Outgoing, OperatorSide::Caller),
            (None, Some(_)) => (Direction::Incoming, OperatorSide::Callee),
            (None, None) => match self.guess(d, caller_user, callee_user) {
                Direction::Incoming => (Direction::Incoming, OperatorSide::Callee),
                other => (other, OperatorSide::Caller),
            },
        };

        let callee_configured = callee_op.is_some();
        let (op_ids, matched, client_ids) = match side {
            OperatorSide::Caller => (&caller_ids, caller_op, &callee_ids),
            OperatorSide::Callee => (&callee_ids, callee_op, &caller_ids),
        };
        let mut discovered = Vec::new();
        // Operator to operator: the callee is an operator too.
        if direction == Direction::Internal && !callee_configured {
            let user = callee_ids
                .iter()
                .map(|i| i.user.as_str())
                .find(|u| !u.is_empty());
            if let Some(user) = user.filter(|u| self.is_extension(u)) {
                discovered.push(DiscoveredOperator {
                    extension: user.to_string(),
                    name: callee_ids.iter().find_map(|i| i.display.clone()),
                });
            }
        }
        let operator = match matched {
            Some((op, number)) => OperatorRef {
                id: op.id.clone(),
                name: op.name.clone(),
                number: op.extension.clone().unwrap_or(number),
                department: op.department.clone(),
                configured: true,
            },
            None => {
                let user = op_ids
                    .iter()
                    .map(|i| i.user.as_str())
                    .find(|u| !u.is_empty())
                    .unwrap_or("unknown")
                    .to_string();
                let name = op_ids
                    .iter()
                    .find_map(|i| i.display.clone())
                    .or_else(|| self.registered_names.get(&user).cloned());
                if self.is_extension(&user) || !self.config.network.internal.is_empty() {
                    discovered.push(DiscoveredOperator {
                        extension: user.clone(),
                        name: name.clone(),
                    });
                }
                OperatorRef {
                    id: user.clone(),
                    name: name.unwrap_or_else(|| user.clone()),
                    number: user,
                    department: None,
                    configured: false,
                }
            }
        };
        let client_number = client_ids
            .iter()
            .map(|i| i.user.as_str())
            .find(|u| !u.is_empty())
            .map(|u| self.normalize(u));
        let client_name = client_ids.iter().find_map(|i| i.display.clone());

        let outcome = outcome_of(d);
        let who_hung_up = match (d.end_reason, d.hung_up_by) {
            (EndReason::Bye, Some(party)) => {
                let operator_party = match side {
                    OperatorSide::Caller => Party::Caller,
                    OperatorSide::Callee => Party::Callee,
                };
                if party == operator_party {
                    WhoHungUp::Operator
                } else {
                    WhoHungUp::Client
                }
            }
            _ => WhoHungUp::System,
        };

        let invite_ns = d.invite_time.as_nanos();
        let end_ns = d.end_time.as_nanos().max(invite_ns);
        // The answer's second and the hang-up's: a call answered at 100.9 s and hung up
        // at 102.0 s starts at 100 and ends at 102, and lasted their difference, as
        // the contract's duration = endTime - startTime says.
        let (start_time, end_time) = match d.answer_time {
            Some(answer) => {
                let a = answer.as_nanos();
                (a / 1_000_000_000, end_ns.max(a) / 1_000_000_000)
            }
            None => (invite_ns / 1_000_000_000, invite_ns / 1_000_000_000),
        };
        let duration = end_time - start_time;
        let ring_end = d.answer_time.map_or(end_ns, |a| a.as_nanos());
        let ring_seconds = (ring_end.saturating_sub(invite_ns) / 1_000_000) as f64 / 1000.0;
        let exported = outcome == Outcome::Answered
            && (direction != Direction::Internal || self.config.calls.export_internal);

        let record = CallRecord {
            id: d.record_id.clone(),
            outcome,
            direction,
            exported,
            invite_ns,
            answer_ns: d.answer_time.map(|t| t.as_nanos()),
            end_ns,
            start_time,
            end_time,
            duration,
            ring_seconds,
            operator,
            client_number,
            client_name,
            who_hung_up,
            hung_up_by: d.hung_up_by,
            end_reason: d.end_reason,
            transfer: d.transfer.clone(),
            holds: d.holds,
            sip: SipFacts {
                call_id: d.call_id.clone(),
                from_tag: d.from_tag.clone(),
                to_tag: d.to_tag.clone(),
                from_uri: d.from.uri.clone(),
                to_uri: d.to.uri.clone(),
                request_uri: d.request_uri.uri.clone(),
                p_asserted_identity: d.p_asserted.as_ref().map(|i| i.uri.clone()),
                diversion: d.diversion.as_ref().map(|i| i.uri.clone()),
                final_status: d.final_status,
                reason: d.reason.clone(),
                user_agent: d.user_agent.clone(),
                transport: match d.transport {
                    crate::net::Transport::Udp => "udp".into(),
                    crate::net::Transport::Tcp => "tcp".into(),
                },
                invite_src: d.invite_src.to_string(),
                invite_dst: d.invite_dst.to_string(),
                headers: d.headers.clone(),
            },
            media: Default::default(),
            properties: Default::default(),
            conversation: Default::default(),
            recovered: false,
        };
        (record, discovered)
    }

    /// A REGISTER names an extension: an operator when it looks like one (short and
    /// numeric, or registering from a configured internal network), and not configured.
    pub fn registration(&mut self, r: &Registration) -> Option<DiscoveredOperator> {
        self.remember_registration(r);
        let internal = &self.config.network.internal;
        let from_inside = !internal.is_empty() && internal.contains(r.source.ip());
        if !(self.is_extension(&r.user) || from_inside) || self.operator_for(&r.user).is_some() {
            return None;
        }
        if let Some(name) = r.display.as_ref().filter(|n| !n.is_empty()) {
            if self.registered_names.len() < MAX_REGISTERED_NAMES
                || self.registered_names.contains_key(&r.user)
            {
                self.registered_names.insert(r.user.clone(), name.clone());
            }
        }
        Some(DiscoveredOperator {
            extension: r.user.clone(),
            name: r.display.clone(),
        })
    }
}

impl Classifier {
    /// A REGISTER makes its user, and the address it came from, local: what a PBX's
    /// phones do. Not a REGISTER the PBX itself sends to a trunk (from a configured
    /// `[network] pbx` address, or to a configured trunk): that account is the
    /// provider's, not a phone. Without that configuration a PBX registering upstream
    /// is taken for a phone; `[network] internal` is the sure way.
    fn remember_registration(&mut self, r: &Registration) {
        let net = &self.config.network;
        let ip = r.source.ip().to_canonical();
        let upstream = (!net.pbx.is_empty() && net.pbx.contains(ip))
            || r.registrar
                .is_some_and(|to| !net.trunks.is_empty() && net.trunks.contains(to.ip()));
        if upstream || r.user.is_empty() {
            return;
        }
        let user = r.user.to_ascii_lowercase();
        if self.registered.users.len() < MAX_REGISTERED_NAMES
            || self.registered.users.contains(&user)
        {
            self.registered.users.insert(user);
        }
        if self.registered.addresses.len() < MAX_REGISTERED_NAMES {
            self.registered.addresses.insert(ip);
        }
    }
}

/// The outcome of the attempt, from its final response and how it ended.
pub fn outcome_of(d: &FinishedDialog) -> Outcome {
    if d.answer_time.is_some() {
        return Outcome::Answered;
    }
    if d.cancelled {
        return Outcome::Cancelled;
    }
    match d.final_status {
        486 | 600 => Outcome::Busy,
        403 | 603 | 607 | 608 => Outcome::Rejected,
        408 | 480 | 487 => Outcome::Missed,
        0 if matches!(d.end_reason, EndReason::RingTimeout | EndReason::NoResponse)
            || d.ring_time.is_some() =>
        {
            Outcome::Missed
        }
        _ => Outcome::Failed,
    }
}

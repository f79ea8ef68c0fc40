//! Divergence detection and repair from the primary (`tandem cluster verify`, `VERIFY`, and the
//! periodic check of `--verify-interval-ms`).
//!
//! Every node keeps an order-independent digest of its keyspace, updated in O(1) by every
//! mutation, with the same digest per key-hash bucket (`tandem_core::keyspace`, `digest.rs`).
//! The primary verifies the cluster in up to four steps, each at one log position:
//!
//! 1. **Detect.** Propose a mark ([`Op::VerifyMark`]): every node, applying it, records its
//!    digest at that index. Ask every member for its record ([`VerifyRequest::Digest`]) and
//!    compare with this node's. A member still behind is waited for (bounded); one that cannot
//!    answer is reported as such, never as diverged.
//! 2. **Narrow.** For each member whose digest differs, descend the bucket space Merkle-style:
//!    ask for the sums of [`FANOUT`] sub-ranges of each differing range
//!    ([`VerifyRequest::Ranges`], answered from the same record) and keep the differing ones,
//!    down to single buckets. Three round trips for 4096 buckets.
//! 3. **Find the keys.** Propose a capturing mark naming the differing buckets: every node lists
//!    (key, element) of those buckets at that index and starts watching them for changes. Fetch
//!    the lists ([`VerifyRequest::Keys`]) and compare: the keys whose element differs, or that
//!    exist on one side only.
//! 4. **Repair.** Propose [`Op::RepairKeys`] with this node's current state of each such key
//!    (None: delete). Every node applies it in log order; a key that changed since the capture
//!    is skipped everywhere it changed (never undoing a write), and a node that already holds
//!    the primary's state changes nothing, so only diverged copies are replaced. Then a last
//!    mark confirms that the diverging members now agree.
//!
//! The primary is the reference: a key that differs is made the primary's everywhere, even if
//! the primary is the odd one out. Divergence is a bug or a fault outside the log (memory, an
//! operator editing files, `DEBUG DIVERGE`); this finds and undoes it, the report says where.
//!
//! Everything is bounded: members waited for ([`VerifyOptions::node_wait`]), buckets narrowed
//! ([`DIFF_BUCKETS_MAX`]), keys listed per capture (`CAPTURE_KEYS_MAX`), keys and value bytes
//! repaired per verification ([`REPAIR_KEYS_MAX`], [`REPAIR_BYTES_MAX`]), keys shown in a
//! report ([`REPORT_KEYS_MAX`]). What is left over is reported and found by the next run.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use openraft::async_runtime::watch::WatchReceiver;
use serde::{Deserialize, Serialize};
use tandem_checksum::Algorithm;
use tandem_core::keyspace::{
    escape_key, key_hash, Captured, KeyspaceDigest, MarkRecord, RepairKey, RepairKeyOutcome,
    RepairKeys, VerifyMark, DIGEST_BUCKETS,
};
use tandem_core::{Batch, Frame, Op};
use tandem_transport::CallOptions;
use tracing::{info, warn};

use super::messages::{Request, Response};
use super::network::call;
use super::node::Node;
use super::types::{NodeAddr, NodeId};

/// `--verify-interval-ms` default: the primary verifies the cluster once a minute.
pub const VERIFY_INTERVAL_DEFAULT_MS: u64 = 60_000;
/// How long a verification waits by default for each member to apply a mark.
pub const NODE_WAIT_DEFAULT: Duration = Duration::from_secs(5);
/// Longest wait a `VERIFY ... TIMEOUT ms` may ask for.
pub const NODE_WAIT_MAX: Duration = Duration::from_secs(600);
/// Children per range in the bucket descent (4096 buckets: 3 levels).
pub const FANOUT: usize = 16;
/// Most differing buckets narrowed to keys in one verification (each capture lists at most
/// `tandem_core::keyspace::CAPTURE_BUCKETS_MAX`, which this equals).
pub const DIFF_BUCKETS_MAX: usize = tandem_core::keyspace::CAPTURE_BUCKETS_MAX;
/// Most differing keys repaired by one verification.
pub const REPAIR_KEYS_MAX: usize = 1000;
/// Most value bytes one repair entry carries (values are copied into the log).
pub const REPAIR_BYTES_MAX: usize = 16 << 20;
/// Most keys and members listed one by one in a report (all are counted).
pub const REPORT_KEYS_MAX: usize = 100;
/// How long a member answering a verification request waits to apply the mark before saying
/// it is still behind (the caller asks again until its own deadline).
const ANSWER_WAIT: Duration = Duration::from_millis(500);
/// Pause between asks while a member is behind.
const RETRY_PAUSE: Duration = Duration::from_millis(20);
/// Deadline of one verification RPC (a key list can be megabytes).
const RPC_DEADLINE: Duration = Duration::from_secs(10);

/// What a verifier asks a member about one of its mark records.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum VerifyRequest {
    /// The digest recorded for `round`, whose mark is the log entry at `index`.
    Digest { round: u64, index: u64 },
    /// The digest sums of bucket ranges `lo..hi` in the record of `round`.
    Ranges {
        round: u64,
        index: u64,
        ranges: Vec<(u16, u16)>,
    },
    /// The keys captured by the record of `round`.
    Keys { round: u64, index: u64 },
}

/// A member's answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum VerifyReply {
    /// The mark is not applied here yet.
    Behind {
        applied_index: u64,
    },
    /// Applied past the mark but no record of it: restarted, installed a snapshot, or the
    /// record was pushed out of the ring.
    NoRecord,
    Digest(KeyspaceDigest),
    Ranges(Vec<u128>),
    Keys(Captured),
}

/// How one verification runs.
#[derive(Clone, Debug)]
pub struct VerifyOptions {
    /// Repair the keys found (else only report them).
    pub repair: bool,
    /// How long to wait for each member to apply each mark.
    pub node_wait: Duration,
    /// The batch algorithm of the entries proposed (only values derived at apply time use it;
    /// these entries derive none, but the combiner merges only entries with one algorithm).
    pub algorithm: Algorithm,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            repair: true,
            node_wait: NODE_WAIT_DEFAULT,
            algorithm: Algorithm::DEFAULT,
        }
    }
}

/// What verification found about one member.
#[derive(Clone, Debug, PartialEq)]
pub enum MemberState {
    Agrees,
    Diverges,
    /// Did not apply the mark in time (its applied index).
    Behind(u64),
    /// Applied the mark but kept no record (restarted or installed a snapshot since).
    NoRecord,
    Unreachable(String),
}

#[derive(Clone, Debug)]
pub struct MemberFinding {
    pub id: NodeId,
    pub state: MemberState,
    /// Differing buckets (diverging members).
    pub buckets: Vec<u16>,
    /// Keys differing from the primary's.
    pub keys: usize,
    /// After the repair: does it agree now? (None: not checked.)
    pub converged: Option<bool>,
}

/// What happened to one differing key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyAction {
    /// Sent in a repair entry; the diverging members now hold the primary's state.
    Repaired,
    /// Written by a client after the capture: left alone (the write stands everywhere).
    ChangedSince,
    /// The primary's own copy fails its checksum: not copied anywhere.
    PrimaryDamaged,
    /// Over the per-verification limits: the next verification gets to it.
    OverLimit,
    /// Verification ran without repair.
    Reported,
}

impl KeyAction {
    pub fn name(self) -> &'static str {
        match self {
            KeyAction::Repaired => "repaired",
            KeyAction::ChangedSince => "changed-since",
            KeyAction::PrimaryDamaged => "primary-damaged",
            KeyAction::OverLimit => "over-limit",
            KeyAction::Reported => "reported",
        }
    }
}

#[derive(Clone, Debug)]
pub struct KeyFinding {
    pub key: Bytes,
    pub members: Vec<NodeId>,
    pub action: KeyAction,
}

/// The outcome of one verification.
#[derive(Clone, Debug, Default)]
pub struct VerifyReport {
    /// Log index of the detecting mark: every digest compared is the state at this index.
    pub index: u64,
    /// The primary's digest there.
    pub digest: KeyspaceDigest,
    pub members: Vec<MemberFinding>,
    /// Differing buckets, all members together.
    pub buckets: usize,
    pub keys: Vec<KeyFinding>,
    /// Where limits cut the work short, and other things the operator should know.
    pub notes: Vec<String>,
    pub duration: Duration,
}

impl VerifyReport {
    pub fn diverging(&self) -> impl Iterator<Item = &MemberFinding> {
        self.members
            .iter()
            .filter(|m| m.state == MemberState::Diverges)
    }

    pub fn keys_repaired(&self) -> usize {
        self.keys
            .iter()
            .filter(|k| k.action == KeyAction::Repaired)
            .count()
    }

    /// `clean` (every member compared and agrees), `repaired` (members diverged and agree
    /// now), `diverged` (members diverge still, or repair was off), `incomplete` (no
    /// divergence found, but not every member could be compared).
    pub fn result(&self) -> &'static str {
        let mut diverging = self.diverging().peekable();
        if diverging.peek().is_some() {
            if diverging.all(|m| m.converged == Some(true)) {
                "repaired"
            } else {
                "diverged"
            }
        } else if self.members.iter().all(|m| m.state == MemberState::Agrees) {
            "clean"
        } else {
            "incomplete"
        }
    }

    /// The report as `field:value` lines (as INFO), for VERIFY and the CLI.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut line = |k: &str, v: String| {
            let _ = write!(out, "{k}:{v}\r\n");
        };
        let ids = |state: fn(&MemberState) -> bool| {
            self.members
                .iter()
                .filter(|m| state(&m.state))
                .map(|m| m.id.to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        line("result", self.result().into());
        line("index", self.index.to_string());
        line("digest", self.digest.to_string());
        line("keys", self.digest.keys.to_string());
        line("members_checked", self.members.len().to_string());
        line("members_agreeing", ids(|s| *s == MemberState::Agrees));
        line("members_diverging", ids(|s| *s == MemberState::Diverges));
        line(
            "members_not_compared",
            ids(|s| !matches!(s, MemberState::Agrees | MemberState::Diverges)),
        );
        line("buckets_differing", self.buckets.to_string());
        line("keys_differing", self.keys.len().to_string());
        line("keys_repaired", self.keys_repaired().to_string());
        line("duration_ms", self.duration.as_millis().to_string());
        for m in &self.members {
            let state = match &m.state {
                MemberState::Agrees => "agrees".to_string(),
                MemberState::Diverges => format!(
                    "diverges buckets={} keys={} converged={}",
                    show_list(&m.buckets),
                    m.keys,
                    match m.converged {
                        Some(true) => "yes",
                        Some(false) => "no",
                        None => "unknown",
                    }
                ),
                MemberState::Behind(at) => format!("behind applied_index={at}"),
                MemberState::NoRecord => "no-record".into(),
                MemberState::Unreachable(why) => {
                    format!("unreachable ({})", why.replace(['\r', '\n'], " "))
                }
            };
            line(&format!("member_{}", m.id), state);
        }
        for (i, k) in self.keys.iter().take(REPORT_KEYS_MAX).enumerate() {
            line(
                &format!("key_{i}"),
                format!(
                    "'{}' members={} action={}",
                    escape_key(&k.key),
                    show_list(&k.members),
                    k.action.name()
                ),
            );
        }
        if self.keys.len() > REPORT_KEYS_MAX {
            line(
                "keys_not_shown",
                (self.keys.len() - REPORT_KEYS_MAX).to_string(),
            );
        }
        for (i, n) in self.notes.iter().enumerate() {
            line(&format!("note_{i}"), n.replace(['\r', '\n'], " "));
        }
        out
    }
}

fn show_list<T: std::fmt::Display>(items: &[T]) -> String {
    let mut s = items
        .iter()
        .take(REPORT_KEYS_MAX)
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",");
    if items.len() > REPORT_KEYS_MAX {
        let _ = write!(s, ",...(+{})", items.len() - REPORT_KEYS_MAX);
    }
    s
}

/// The last verification this node ran, for INFO.
#[derive(Clone, Debug, Default)]
pub struct LastVerify {
    pub index: u64,
    pub result: &'static str,
    pub duration_ms: u64,
}

/// Counters and the one-at-a-time lock of the verifier (on every node; only the primary runs
/// verifications).
#[derive(Default)]
pub struct VerifyState {
    running: tokio::sync::Mutex<()>,
    /// Verifications run.
    pub checks: AtomicU64,
    /// Verifications that found at least one member diverging.
    pub found: AtomicU64,
    /// Differing keys found, all verifications together.
    pub keys_found: AtomicU64,
    /// Differing keys repaired.
    pub keys_repaired: AtomicU64,
    pub last: parking_lot::Mutex<Option<LastVerify>>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A mark this node proposed: its log index and this node's record of it.
struct Marked {
    index: u64,
    record: MarkRecord,
}

impl std::ops::Deref for Marked {
    type Target = MarkRecord;

    fn deref(&self) -> &MarkRecord {
        &self.record
    }
}

/// A member to ask.
struct Member {
    id: NodeId,
    addr: NodeAddr,
}

impl Node {
    /// Runs one verification (see the module doc). Only on the primary; one at a time (a
    /// second caller waits for the first).
    pub async fn verify(self: &Arc<Self>, opts: &VerifyOptions) -> Result<VerifyReport, String> {
        let _one = self.verify.running.lock().await;
        let started = Instant::now();
        if !self.is_primary() {
            return Err("this node is not the primary: run VERIFY on the primary".into());
        }
        let mut report = self.verify_steps(opts).await?;
        report.duration = started.elapsed();
        let v = &self.verify;
        v.checks.fetch_add(1, Ordering::Relaxed);
        if report.diverging().next().is_some() {
            v.found.fetch_add(1, Ordering::Relaxed);
        }
        v.keys_found
            .fetch_add(report.keys.len() as u64, Ordering::Relaxed);
        v.keys_repaired
            .fetch_add(report.keys_repaired() as u64, Ordering::Relaxed);
        *v.last.lock() = Some(LastVerify {
            index: report.index,
            result: report.result(),
            duration_ms: report.duration.as_millis() as u64,
        });
        let summary = format!(
            "verification at index {}: {}; {} member(s) diverging, {} key(s) differing, {} repaired, {} ms",
            report.index,
            report.result(),
            report.diverging().count(),
            report.keys.len(),
            report.keys_repaired(),
            report.duration.as_millis()
        );
        if report.result() == "clean" {
            info!("{summary}");
        } else {
            warn!("{summary}");
        }
        Ok(report)
    }

    async fn verify_steps(self: &Arc<Self>, opts: &VerifyOptions) -> Result<VerifyReport, String> {
        let members = self.verify_members();
        let mut report = VerifyReport::default();
        if members.is_empty() {
            // Nothing to compare with: no mark is written to the log for it.
            let st = self.state().read();
            report.index = st.last_applied.map(|l| l.index()).unwrap_or(0);
            report.digest = st.keyspace.digest();
            return Ok(report);
        }

        // 1. Detect.
        let detect = self.verify_mark(opts, Vec::new()).await?;
        report.index = detect.index;
        report.digest = detect.digest;
        let digests = futures::future::join_all(
            members
                .iter()
                .map(|m| self.verify_member_digest(m, detect.round, detect.index, opts.node_wait)),
        )
        .await;
        let mut diverging: Vec<&Member> = Vec::new();
        for (m, state) in members.iter().zip(digests) {
            let state = match state {
                Ok(d) if d == detect.digest => MemberState::Agrees,
                Ok(_) => {
                    diverging.push(m);
                    MemberState::Diverges
                }
                Err(s) => s,
            };
            if let MemberState::Diverges = state {
                warn!(
                    "member {} diverges from the primary at index {}",
                    m.id, detect.index
                );
            }
            report.members.push(MemberFinding {
                id: m.id,
                state,
                buckets: Vec::new(),
                keys: 0,
                converged: None,
            });
        }
        if diverging.is_empty() {
            return Ok(report);
        }

        // 2. Narrow each diverging member to its differing buckets.
        let mut all_buckets: BTreeSet<u16> = BTreeSet::new();
        for m in &diverging {
            let buckets = match self.verify_descend(m, &detect, opts.node_wait).await {
                Ok(b) => b,
                Err(e) => {
                    report
                        .notes
                        .push(format!("member {}: narrowing failed: {e}", m.id));
                    Vec::new()
                }
            };
            all_buckets.extend(buckets.iter().copied());
            finding(&mut report, m.id).buckets = buckets;
        }
        report.buckets = all_buckets.len();
        if all_buckets.len() > DIFF_BUCKETS_MAX {
            report.notes.push(format!(
                "{} buckets differ; keys were looked for in the first {DIFF_BUCKETS_MAX} (run verify again for the rest)",
                all_buckets.len()
            ));
        }
        let capture: Vec<u16> = all_buckets.into_iter().take(DIFF_BUCKETS_MAX).collect();
        if capture.is_empty() {
            report
                .notes
                .push("digests differ but no bucket does: nothing to narrow".into());
            return Ok(report);
        }

        // 3. The keys of those buckets, everywhere at one index.
        let listing = self.verify_mark(opts, capture).await?;
        let mine = listing.captured.clone().unwrap_or_default();
        let mut differing: BTreeMap<Bytes, Vec<NodeId>> = BTreeMap::new();
        for m in &diverging {
            match self
                .verify_member_keys(m, listing.round, listing.index, opts.node_wait)
                .await
            {
                Ok(theirs) => {
                    let keys = diff_keys(&mine, &theirs, &mut report.notes, m.id);
                    finding(&mut report, m.id).keys = keys.len();
                    for k in keys {
                        differing.entry(k).or_default().push(m.id);
                    }
                }
                Err(state) => report.notes.push(format!(
                    "member {}: its keys could not be listed ({state:?})",
                    m.id
                )),
            }
        }
        for (key, ids) in &differing {
            if report.keys.len() < REPORT_KEYS_MAX {
                warn!(key = %escape_key(key), "key differs from the primary's on member(s) {ids:?}");
            }
        }

        // 4. Repair, then confirm.
        report.keys = differing
            .into_iter()
            .map(|(key, members)| KeyFinding {
                key,
                members,
                action: KeyAction::Reported,
            })
            .collect();
        if !opts.repair || report.keys.is_empty() {
            return Ok(report);
        }
        self.verify_repair(opts, listing.round, &mut report).await?;
        if report.keys_repaired() == 0 {
            return Ok(report);
        }
        let confirm = self.verify_mark(opts, Vec::new()).await?;
        for m in &diverging {
            let now = self
                .verify_member_digest(m, confirm.round, confirm.index, opts.node_wait)
                .await;
            finding(&mut report, m.id).converged = Some(now == Ok(confirm.digest));
        }
        Ok(report)
    }

    /// Every member but this node, from the membership (voters and read replicas).
    fn verify_members(&self) -> Vec<Member> {
        let me = self.config.node_id;
        // Clone out of the watch at once (DESIGN.md, traps).
        let m = self.raft.metrics().borrow_watched().clone();
        m.membership_config
            .membership()
            .nodes()
            .filter(|(id, _)| **id != me)
            .map(|(id, addr)| Member {
                id: *id,
                addr: addr.clone(),
            })
            .collect()
    }

    /// Proposes a mark (capturing `capture`'s keys) and returns this node's record of it.
    async fn verify_mark(&self, opts: &VerifyOptions, capture: Vec<u16>) -> Result<Marked, String> {
        let round = rand::random::<u64>();
        let batch = Batch {
            now_ms: now_ms(),
            algorithm: opts.algorithm,
            ops: vec![Op::VerifyMark(VerifyMark { round, capture })],
        };
        let written = self
            .write(batch, 16)
            .await
            .map_err(|e| format!("proposing a verification mark: {e}"))?;
        let record = self
            .state()
            .read()
            .keyspace
            .mark(round)
            .cloned()
            .ok_or_else(|| "this node has no record of its own mark".to_string())?;
        Ok(Marked {
            index: written.index,
            record,
        })
    }

    /// One request to a member, repeated while it is behind the mark, until `wait` has passed.
    async fn verify_ask(
        &self,
        m: &Member,
        request: VerifyRequest,
        wait: Duration,
    ) -> Result<VerifyReply, MemberState> {
        let deadline = Instant::now() + wait;
        let peer = self.ctx.member(m.id, &m.addr);
        let request = Request::Verify(request);
        loop {
            let answer = call(&peer, &request, RPC_DEADLINE, CallOptions::default()).await;
            match answer {
                Ok(Response::Verify(VerifyReply::Behind { applied_index })) => {
                    if Instant::now() >= deadline {
                        return Err(MemberState::Behind(applied_index));
                    }
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                Ok(Response::Verify(VerifyReply::NoRecord)) => return Err(MemberState::NoRecord),
                Ok(Response::Verify(reply)) => return Ok(reply),
                Ok(other) => {
                    return Err(MemberState::Unreachable(format!(
                        "unexpected answer {other:?}"
                    )))
                }
                Err(e) => {
                    if Instant::now() >= deadline {
                        return Err(MemberState::Unreachable(e.to_string()));
                    }
                    tokio::time::sleep(RETRY_PAUSE * 5).await;
                }
            }
        }
    }

    async fn verify_member_digest(
        &self,
        m: &Member,
        round: u64,
        index: u64,
        wait: Duration,
    ) -> Result<KeyspaceDigest, MemberState> {
        match self
            .verify_ask(m, VerifyRequest::Digest { round, index }, wait)
            .await?
        {
            VerifyReply::Digest(d) => Ok(d),
            other => Err(MemberState::Unreachable(format!(
                "unexpected answer {other:?}"
            ))),
        }
    }

    async fn verify_member_keys(
        &self,
        m: &Member,
        round: u64,
        index: u64,
        wait: Duration,
    ) -> Result<Captured, MemberState> {
        match self
            .verify_ask(m, VerifyRequest::Keys { round, index }, wait)
            .await?
        {
            VerifyReply::Keys(c) => Ok(c),
            other => Err(MemberState::Unreachable(format!(
                "unexpected answer {other:?}"
            ))),
        }
    }

    /// The buckets where member `m`'s record of `mine`'s round differs from `mine`, found by
    /// descending from the whole range in steps of [`FANOUT`] (at most [`DIFF_BUCKETS_MAX`]).
    /// `wait` bounds the retries of each step.
    async fn verify_descend(
        &self,
        m: &Member,
        mine: &Marked,
        wait: Duration,
    ) -> Result<Vec<u16>, String> {
        let mut ranges: Vec<(usize, usize)> = vec![(0, DIGEST_BUCKETS)];
        while ranges.iter().any(|(lo, hi)| hi - lo > 1) {
            let children: Vec<(u16, u16)> = ranges
                .iter()
                .flat_map(|&(lo, hi)| {
                    let step = (hi - lo).div_ceil(FANOUT).max(1);
                    (lo..hi)
                        .step_by(step)
                        .map(move |c| (c as u16, (c + step).min(hi) as u16))
                })
                .collect();
            let request = VerifyRequest::Ranges {
                round: mine.round,
                index: mine.index,
                ranges: children.clone(),
            };
            let sums = match self.verify_ask(m, request, wait).await {
                Ok(VerifyReply::Ranges(sums)) if sums.len() == children.len() => sums,
                Ok(other) => return Err(format!("unexpected answer {other:?}")),
                Err(state) => return Err(format!("{state:?}")),
            };
            ranges = children
                .iter()
                .zip(sums)
                .filter(|((lo, hi), sum)| {
                    mine.range_sum(usize::from(*lo), usize::from(*hi)) != *sum
                })
                .map(|((lo, hi), _)| (usize::from(*lo), usize::from(*hi)))
                .take(DIFF_BUCKETS_MAX)
                .collect();
        }
        Ok(ranges.into_iter().map(|(lo, _)| lo as u16).collect())
    }

    /// Step 4: proposes this node's state of each differing key (those unchanged since the
    /// capture, within the limits) and records what happened to each.
    async fn verify_repair(
        &self,
        opts: &VerifyOptions,
        round: u64,
        report: &mut VerifyReport,
    ) -> Result<(), String> {
        let mut op = RepairKeys {
            round,
            keys: Vec::new(),
        };
        let mut sent: Vec<usize> = Vec::new();
        let mut bytes = 0usize;
        {
            let st = self.state().read();
            for (i, k) in report.keys.iter_mut().enumerate() {
                if st.keyspace.changed_since_capture(round, &k.key) {
                    k.action = KeyAction::ChangedSince;
                    continue;
                }
                let state = match st.keyspace.repair_state(&k.key) {
                    Ok(s) => s,
                    Err(()) => {
                        k.action = KeyAction::PrimaryDamaged;
                        continue;
                    }
                };
                let size = k.key.len() + state.as_ref().map_or(0, |s| s.value.bytes.len());
                if op.keys.len() >= REPAIR_KEYS_MAX || bytes + size > REPAIR_BYTES_MAX {
                    k.action = KeyAction::OverLimit;
                    continue;
                }
                bytes += size;
                op.keys.push(RepairKey {
                    key: k.key.clone(),
                    state,
                });
                sent.push(i);
            }
        }
        let over = report
            .keys
            .iter()
            .filter(|k| k.action == KeyAction::OverLimit)
            .count();
        if over > 0 {
            report.notes.push(format!(
                "{over} differing key(s) over the per-verification limits ({REPAIR_KEYS_MAX} keys, {REPAIR_BYTES_MAX} \
                 bytes): run verify again"
            ));
        }
        if op.keys.is_empty() {
            return Ok(());
        }
        let batch = Batch {
            now_ms: now_ms(),
            algorithm: opts.algorithm,
            ops: vec![Op::RepairKeys(op)],
        };
        let written = self
            .write(batch, bytes)
            .await
            .map_err(|e| format!("proposing the repair: {e}"))?;
        // This node's own outcomes: it is the reference, so `Same` (or a skip where a client
        // wrote meanwhile, which every node agreeing with it skips too).
        let codes = match written.frames.first() {
            Some(Frame::Array(items)) => items
                .iter()
                .map(|f| match f {
                    Frame::Integer(n) => RepairKeyOutcome::from_code(*n),
                    _ => None,
                })
                .collect::<Vec<_>>(),
            other => return Err(format!("unexpected repair reply {other:?}")),
        };
        for (i, code) in sent.into_iter().zip(codes) {
            report.keys[i].action = match code {
                Some(RepairKeyOutcome::SkippedChanged) => KeyAction::ChangedSince,
                Some(RepairKeyOutcome::SkippedBadCopy) => KeyAction::PrimaryDamaged,
                _ => KeyAction::Repaired,
            };
        }
        Ok(())
    }

    /// The answering side: this node's record of a mark (see [`VerifyRequest`]). Waits up to
    /// [`ANSWER_WAIT`] for the mark to be applied.
    pub async fn answer_verify(&self, request: VerifyRequest) -> Response {
        let (VerifyRequest::Digest { round, index }
        | VerifyRequest::Ranges { round, index, .. }
        | VerifyRequest::Keys { round, index }) = request;
        let deadline = Instant::now() + ANSWER_WAIT;
        while self.applied_index() < index && Instant::now() < deadline {
            tokio::time::sleep(RETRY_PAUSE).await;
        }
        let st = self.state().read();
        let applied_index = st.last_applied.map(|l| l.index()).unwrap_or(0);
        let reply = match st.keyspace.mark(round) {
            None if applied_index < index => VerifyReply::Behind { applied_index },
            None => VerifyReply::NoRecord,
            Some(record) => match request {
                VerifyRequest::Digest { .. } => VerifyReply::Digest(record.digest),
                VerifyRequest::Ranges { ranges, .. } => VerifyReply::Ranges(
                    ranges
                        .iter()
                        .take(DIGEST_BUCKETS)
                        .map(|&(lo, hi)| record.range_sum(usize::from(lo), usize::from(hi)))
                        .collect(),
                ),
                VerifyRequest::Keys { .. } => {
                    VerifyReply::Keys(record.captured.clone().unwrap_or_default())
                }
            },
        };
        Response::Verify(reply)
    }
}

fn finding(report: &mut VerifyReport, id: NodeId) -> &mut MemberFinding {
    report
        .members
        .iter_mut()
        .find(|m| m.id == id)
        .expect("every diverging member has a finding")
}

/// The keys whose state differs between the primary's capture and a member's: a different
/// element, or present on one side only. Where either capture stopped at a limit, only the
/// hashes both cover are compared (and a note says so).
fn diff_keys(
    mine: &Captured,
    theirs: &Captured,
    notes: &mut Vec<String>,
    id: NodeId,
) -> Vec<Bytes> {
    let limit = match (mine.truncated_at, theirs.truncated_at) {
        (None, None) => None,
        (a, b) => {
            let cut = a.unwrap_or(u64::MAX).min(b.unwrap_or(u64::MAX));
            notes.push(format!(
                "member {id}: the key lists stopped at their limit; keys with hash >= {cut:#x} were not compared \
                 (run verify again after repairing these)"
            ));
            Some(cut)
        }
    };
    let covered = |k: &Bytes| limit.is_none_or(|cut| key_hash(k) < cut);
    let primary: HashMap<&Bytes, u128> = mine
        .entries
        .iter()
        .filter(|(k, _)| covered(k))
        .map(|(k, e)| (k, *e))
        .collect();
    let member: HashMap<&Bytes, u128> = theirs
        .entries
        .iter()
        .filter(|(k, _)| covered(k))
        .map(|(k, e)| (k, *e))
        .collect();
    // Both lists are of the same buckets: every node applied the same capturing mark.
    let mut keys: BTreeSet<Bytes> = BTreeSet::new();
    for (k, e) in &primary {
        if member.get(k) != Some(e) {
            keys.insert((*k).clone());
        }
    }
    for k in member.keys() {
        if !primary.contains_key(k) {
            keys.insert((*k).clone());
        }
    }
    keys.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn captured(entries: &[(&str, u128)], truncated_at: Option<u64>) -> Captured {
        Captured {
            buckets: Vec::new(),
            entries: entries
                .iter()
                .map(|(k, e)| (Bytes::copy_from_slice(k.as_bytes()), *e))
                .collect(),
            truncated_at,
        }
    }

    #[test]
    fn key_lists_differ_by_value_and_by_presence() {
        let mine = captured(&[("a", 1), ("b", 2), ("c", 3)], None);
        let theirs = captured(&[("a", 1), ("b", 9), ("d", 4)], None);
        let mut notes = Vec::new();
        let keys = diff_keys(&mine, &theirs, &mut notes, 4);
        assert_eq!(keys, vec!["b", "c", "d"]);
        assert!(notes.is_empty());
    }

    #[test]
    fn a_truncated_list_is_compared_only_where_both_are_complete() {
        let mut all = vec![("a", 1u128), ("b", 2), ("c", 3), ("d", 4)];
        all.sort_by_key(|(k, _)| key_hash(k.as_bytes()));
        let cut = key_hash(all[2].0.as_bytes());
        let mine = captured(&all, None);
        // The member stopped before the third key, and its second differs.
        let mut theirs = captured(&all[..2], Some(cut));
        theirs.entries[1].1 = 99;
        let mut notes = Vec::new();
        let keys = diff_keys(&mine, &theirs, &mut notes, 2);
        assert_eq!(keys, vec![all[1].0]);
        assert_eq!(notes.len(), 1, "{notes:?}");
    }

    #[test]
    fn a_report_renders_one_field_per_line() {
        let report = VerifyReport {
            index: 42,
            members: vec![
                MemberFinding {
                    id: 2,
                    state: MemberState::Agrees,
                    buckets: vec![],
                    keys: 0,
                    converged: None,
                },
                MemberFinding {
                    id: 4,
                    state: MemberState::Diverges,
                    buckets: vec![7],
                    keys: 1,
                    converged: Some(true),
                },
                MemberFinding {
                    id: 5,
                    state: MemberState::Unreachable("connection refused\r\n".into()),
                    buckets: vec![],
                    keys: 0,
                    converged: None,
                },
            ],
            buckets: 1,
            keys: vec![KeyFinding {
                key: Bytes::from_static(b"user:\r\n1"),
                members: vec![4],
                action: KeyAction::Repaired,
            }],
            ..VerifyReport::default()
        };
        assert_eq!(report.result(), "repaired");
        let text = report.render();
        assert!(text.contains("result:repaired\r\n"), "{text}");
        assert!(text.contains("members_diverging:4\r\n"));
        assert!(text.contains("members_not_compared:5\r\n"));
        assert!(text.contains("member_4:diverges buckets=7 keys=1 converged=yes\r\n"));
        assert!(text.contains("key_0:'user:\\x0d\\x0a1' members=4 action=repaired\r\n"));
        assert!(text.lines().all(|l| l.contains(':')), "{text}");
        assert!(!text.replace("\r\n", "").contains('\n'));
    }
}

//! Resolving each connect() attempt to its true outcome.
//!
//! A non-blocking connect() usually returns EINPROGRESS and the handshake
//! ends later; so does a blocking one interrupted by a signal. The kernel
//! programs report the call and, separately, the end of the handshake it
//! started; this module joins the two and emits exactly one
//! [`ResolvedAttempt`] per call, when its outcome is known, or as
//! [`Outcome::InProgress`] once the resolution timeout passes or the daemon
//! stops.
//!
//! The two arrive in either order: the end of a handshake precedes its call
//! in the ring buffer when it happened on another CPU while the caller was
//! still inside connect(). They are joined by [`HandshakeId`] (socket and
//! SYN time), so a new socket at a reused address never takes an earlier
//! socket's outcome.
//!
//! Repeats (a call on a socket whose attempt is under way or just ended)
//! are marked by the kernel under the rules of
//! `connect_trace_common::outcome::is_repeat`; they resolve at once.

use std::time::Duration;

use connect_trace_common::outcome;
pub use connect_trace_common::outcome::Outcome;
use rustc_hash::FxHashMap;

use crate::decode::{ConnectAttempt, HandshakeOutcome, Record, attempt::HandshakeId};

/// How long an outcome that arrived before its call waits for it. The call
/// follows within microseconds unless its record was lost.
const EARLY_OUTCOME_TTL: Duration = Duration::from_secs(2);

/// Default for how long an attempt may stay unresolved: longer than
/// Linux's default SYN retry schedule (`tcp_syn_retries=6`, about 127 s).
pub const DEFAULT_RESOLVE_TIMEOUT: Duration = Duration::from_secs(150);

/// Default bound on attempts waiting for their outcome.
pub const DEFAULT_MAX_PENDING: usize = 32_768;

/// A connect() attempt with its outcome.
#[derive(Debug, Clone, Copy)]
pub struct ResolvedAttempt {
    /// The call as the kernel reported it.
    pub attempt: ConnectAttempt,
    /// How it ended.
    pub outcome: Outcome,
    /// Nanoseconds from the SYN to the end of the handshake, when one was
    /// followed to its end.
    pub handshake_ns: Option<u64>,
    /// The call was made on a socket already connecting or connected, or
    /// checked the result of an attempt that just ended: it is the same
    /// attempt seen again and must not be counted twice.
    pub repeat: bool,
}

impl ResolvedAttempt {
    /// The slot this attempt is counted in, the one the kernel's exact
    /// counts use for it (`connect_trace_common::outcome::slot`).
    pub fn counting_slot(&self) -> u32 {
        let code = if self.repeat {
            outcome::code::REPEAT
        } else {
            self.outcome.code()
        };
        outcome::slot(self.attempt.family_slot(), code)
    }
}

/// Settings of a [`Resolver`].
#[derive(Debug, Clone)]
pub struct ResolverConfig {
    /// How long an attempt may wait for its outcome.
    pub timeout: Duration,
    /// The most attempts waiting at once; beyond it new ones are reported
    /// at once as in progress, and counted.
    pub max_pending: usize,
    /// The most handshake ends waiting for their call (which follows within
    /// microseconds unless its record was lost); beyond it they are dropped
    /// and counted as unmatched.
    pub max_early: usize,
    /// Report only attempts whose outcome is a failure (or unknown).
    pub failures_only: bool,
}

impl Default for ResolverConfig {
    fn default() -> Self {
        Self {
            timeout: DEFAULT_RESOLVE_TIMEOUT,
            max_pending: DEFAULT_MAX_PENDING,
            max_early: DEFAULT_MAX_PENDING,
            failures_only: false,
        }
    }
}

/// What the resolver has done, for the logs and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResolverStats {
    /// Attempts waiting for their outcome now.
    pub pending: usize,
    /// Attempts reported as in progress because the pending set was full.
    pub evicted: u64,
    /// Attempts reported as in progress at the resolution timeout.
    pub timed_out: u64,
    /// Handshake outcomes whose call never arrived (its record was lost or
    /// filtered out).
    pub unmatched_outcomes: u64,
}

struct Pending {
    attempt: ConnectAttempt,
    deadline_ns: u64,
}

/// Joins calls with handshake outcomes. Time is CLOCK_MONOTONIC
/// nanoseconds, passed in so that tests control it.
pub struct Resolver {
    config: ResolverConfig,
    /// Fx hashing (every event looks here): keys are kernel addresses and
    /// times, and the maps are bounded by `max_pending`.
    pending: FxHashMap<HandshakeId, Pending>,
    /// Outcomes that arrived before their call.
    early: FxHashMap<HandshakeId, (HandshakeOutcome, u64)>,
    stats: ResolverStats,
}

impl Resolver {
    /// A resolver with `config`.
    pub fn new(config: ResolverConfig) -> Self {
        Self {
            config,
            pending: FxHashMap::default(),
            early: FxHashMap::default(),
            stats: ResolverStats::default(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> ResolverStats {
        ResolverStats {
            pending: self.pending.len(),
            ..self.stats
        }
    }

    /// Takes one record; calls `emit` for each attempt it resolves.
    pub fn on_record<E>(
        &mut self,
        record: &Record,
        now_ns: u64,
        emit: &mut impl FnMut(&ResolvedAttempt) -> Result<(), E>,
    ) -> Result<(), E> {
        match record {
            Record::Connect(attempt) => self.on_attempt(attempt, now_ns, emit),
            Record::Outcome(outcome) => self.on_outcome(outcome, now_ns, emit),
        }
    }

    /// The rules are `connect_trace_common::outcome`'s, which the kernel
    /// applies to its exact counts too.
    fn on_attempt<E>(
        &mut self,
        attempt: &ConnectAttempt,
        now_ns: u64,
        emit: &mut impl FnMut(&ResolvedAttempt) -> Result<(), E>,
    ) -> Result<(), E> {
        let errno = attempt.errno();
        if attempt.is_repeat() {
            return self.emit(attempt, Outcome::of_return(errno), None, true, emit);
        }
        let id = attempt.handshake_id();
        let known = attempt.handshake_outcome().or_else(|| {
            id.and_then(|id| self.early.remove(&id))
                .map(|(outcome, _)| outcome)
        });
        if let Some(outcome) = known {
            let resolved = Outcome::of_handshake(outcome.end, errno);
            return self.emit(attempt, resolved, Some(outcome.handshake_ns), false, emit);
        }
        let followed = id.is_some() && !attempt.handshake_untracked();
        if let Some(id) = id
            && outcome::awaits_handshake(errno, followed, false)
        {
            if self.pending.len() >= self.config.max_pending {
                self.stats.evicted += 1;
                return self.emit(attempt, Outcome::InProgress, None, false, emit);
            }
            let deadline_ns = now_ns.saturating_add(duration_ns(self.config.timeout));
            self.pending.insert(
                id,
                Pending {
                    attempt: *attempt,
                    deadline_ns,
                },
            );
            return Ok(());
        }
        self.emit(attempt, Outcome::of_return(errno), None, false, emit)
    }

    fn on_outcome<E>(
        &mut self,
        outcome: &HandshakeOutcome,
        now_ns: u64,
        emit: &mut impl FnMut(&ResolvedAttempt) -> Result<(), E>,
    ) -> Result<(), E> {
        if let Some(pending) = self.pending.remove(&outcome.id) {
            return self.emit(
                &pending.attempt,
                Outcome::of_handshake(outcome.end, 0),
                Some(outcome.handshake_ns),
                false,
                emit,
            );
        }
        if self.early.len() >= self.config.max_early {
            self.stats.unmatched_outcomes += 1;
            return Ok(());
        }
        self.early.insert(outcome.id, (*outcome, now_ns));
        Ok(())
    }

    /// Reports attempts whose resolution timeout has passed as in progress,
    /// and forgets outcomes whose call never came. Call about once a second.
    pub fn expire<E>(
        &mut self,
        now_ns: u64,
        emit: &mut impl FnMut(&ResolvedAttempt) -> Result<(), E>,
    ) -> Result<(), E> {
        let expired: Vec<HandshakeId> = self
            .pending
            .iter()
            .filter(|(_, pending)| pending.deadline_ns <= now_ns)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            if let Some(pending) = self.pending.remove(&id) {
                self.stats.timed_out += 1;
                self.emit(&pending.attempt, Outcome::InProgress, None, false, emit)?;
            }
        }
        let ttl = duration_ns(EARLY_OUTCOME_TTL);
        let before = self.early.len();
        self.early
            .retain(|_, (_, seen_ns)| now_ns.saturating_sub(*seen_ns) < ttl);
        self.stats.unmatched_outcomes += (before - self.early.len()) as u64;
        Ok(())
    }

    /// Gives back the room a burst left in the maps: a map that grew to
    /// hold tens of thousands of handshakes keeps that memory until told.
    /// Returns whether anything was released. Call once a second or so.
    pub fn shrink(&mut self) -> bool {
        shrink(&mut self.pending) | shrink(&mut self.early)
    }

    /// Reports every attempt still waiting as in progress (at shutdown).
    pub fn finish<E>(
        &mut self,
        emit: &mut impl FnMut(&ResolvedAttempt) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut pending: Vec<Pending> = self.pending.drain().map(|(_, pending)| pending).collect();
        pending.sort_by_key(|pending| pending.attempt.start_monotonic_ns());
        for pending in pending {
            self.emit(&pending.attempt, Outcome::InProgress, None, false, emit)?;
        }
        Ok(())
    }

    fn emit<E>(
        &self,
        attempt: &ConnectAttempt,
        outcome: Outcome,
        handshake_ns: Option<u64>,
        repeat: bool,
        emit: &mut impl FnMut(&ResolvedAttempt) -> Result<(), E>,
    ) -> Result<(), E> {
        if self.config.failures_only && outcome == Outcome::Connected {
            return Ok(());
        }
        emit(&ResolvedAttempt {
            attempt: *attempt,
            outcome,
            handshake_ns,
            repeat,
        })
    }
}

/// Shrinks `map` to twice what it holds when it uses less than a quarter of
/// its room, ignoring small maps (growing them again costs little).
fn shrink<K: std::hash::Hash + Eq, V>(map: &mut FxHashMap<K, V>) -> bool {
    if map.capacity() <= 1024 || map.len() >= map.capacity() / 4 {
        return false;
    }
    map.shrink_to(map.len() * 2);
    true
}

fn duration_ns(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use connect_trace_common::abi::{ConnectRecord, Handshake, connect_flags, tcp_state};
    use connect_trace_common::outcome::{EALREADY, EINPROGRESS, EINTR, EISCONN, HandshakeEnd};

    use super::*;
    use crate::decode::attempt::tests::sample_record;

    const SOCK: u64 = 0xffff_8880_1234_0000;
    const SYN: u64 = 10;
    const SECOND: u64 = 1_000_000_000;

    fn call(errno: i32, sock: u64, fd: i32) -> Record {
        let mut raw: ConnectRecord = sample_record();
        raw.ret = -errno;
        raw.fd = fd;
        raw.handshake = Handshake {
            sock,
            syn_ns: if sock == 0 { 0 } else { SYN },
            ..Handshake::default()
        };
        Record::Connect(ConnectAttempt::from_record(raw))
    }

    fn repeat(errno: i32, fd: i32) -> Record {
        let mut raw: ConnectRecord = sample_record();
        raw.ret = -errno;
        raw.fd = fd;
        raw.flags = connect_flags::REPEAT;
        Record::Connect(ConnectAttempt::from_record(raw))
    }

    fn call_with_outcome(errno: i32, state: u32, err: i32) -> Record {
        let mut raw: ConnectRecord = sample_record();
        raw.ret = -errno;
        raw.handshake = Handshake {
            sock: SOCK,
            syn_ns: SYN,
            outcome_ns: 110,
            outcome_state: state,
            outcome_err: err,
        };
        Record::Connect(ConnectAttempt::from_record(raw))
    }

    fn outcome_of(sock: u64, syn_ns: u64, end: HandshakeEnd) -> Record {
        Record::Outcome(HandshakeOutcome {
            id: HandshakeId { sock, syn_ns },
            pid: 42,
            end,
            handshake_ns: 5_000,
        })
    }

    fn outcome(end: HandshakeEnd) -> Record {
        outcome_of(SOCK, SYN, end)
    }

    /// Feeds records at time `now` and returns what came out.
    fn feed(resolver: &mut Resolver, records: &[Record], now: u64) -> Vec<ResolvedAttempt> {
        let mut out = Vec::new();
        for record in records {
            resolver
                .on_record(record, now, &mut |r| {
                    out.push(*r);
                    Ok::<_, ()>(())
                })
                .unwrap();
        }
        out
    }

    fn expire(resolver: &mut Resolver, now: u64) -> Vec<ResolvedAttempt> {
        let mut out = Vec::new();
        resolver
            .expire(now, &mut |r| {
                out.push(*r);
                Ok::<_, ()>(())
            })
            .unwrap();
        out
    }

    #[test]
    fn synchronous_results_resolve_at_once() {
        let mut resolver = Resolver::new(ResolverConfig::default());
        let out = feed(
            &mut resolver,
            &[call(0, 0, 3), call(libc::ECONNREFUSED, 0, 3)],
            0,
        );
        assert_eq!(out[0].outcome, Outcome::Connected);
        assert_eq!(out[1].outcome, Outcome::Failed(Some(libc::ECONNREFUSED)));
        assert_eq!(out[1].outcome.final_errno(), Some(libc::ECONNREFUSED));
        assert!(out.iter().all(|r| !r.repeat && r.handshake_ns.is_none()));
    }

    #[test]
    fn outcome_known_at_exit_is_used() {
        let mut resolver = Resolver::new(ResolverConfig::default());
        let out = feed(
            &mut resolver,
            &[
                call_with_outcome(EINPROGRESS, tcp_state::ESTABLISHED, 0),
                call_with_outcome(EINPROGRESS, tcp_state::CLOSE, libc::ECONNREFUSED),
            ],
            0,
        );
        assert_eq!(out[0].outcome, Outcome::Connected);
        assert_eq!(out[0].handshake_ns, Some(100));
        assert_eq!(out[1].outcome, Outcome::Failed(Some(libc::ECONNREFUSED)));
    }

    #[test]
    fn a_call_that_failed_by_itself_is_not_a_cancel() {
        let mut resolver = Resolver::new(ResolverConfig::default());
        let out = feed(
            &mut resolver,
            &[call_with_outcome(libc::EADDRNOTAVAIL, tcp_state::CLOSE, 0)],
            0,
        );
        assert_eq!(out[0].outcome, Outcome::Failed(Some(libc::EADDRNOTAVAIL)));
        let out = feed(
            &mut resolver,
            &[call_with_outcome(EINPROGRESS, tcp_state::CLOSE, 0)],
            0,
        );
        assert_eq!(out[0].outcome, Outcome::Canceled);
    }

    #[test]
    fn in_progress_waits_for_its_outcome() {
        let mut resolver = Resolver::new(ResolverConfig::default());
        assert!(feed(&mut resolver, &[call(EINPROGRESS, SOCK, 5)], 0).is_empty());
        assert_eq!(resolver.stats().pending, 1);
        let out = feed(
            &mut resolver,
            &[outcome(HandshakeEnd::Closed(Some(libc::ETIMEDOUT)))],
            SECOND,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].outcome, Outcome::Failed(Some(libc::ETIMEDOUT)));
        assert_eq!(out[0].attempt.errno(), EINPROGRESS);
        assert_eq!(out[0].handshake_ns, Some(5_000));
        assert_eq!(resolver.stats().pending, 0);
    }

    #[test]
    fn outcome_before_its_call_is_joined() {
        let mut resolver = Resolver::new(ResolverConfig::default());
        assert!(feed(&mut resolver, &[outcome(HandshakeEnd::Established)], 0).is_empty());
        let out = feed(&mut resolver, &[call(EINPROGRESS, SOCK, 5)], 1);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].outcome, Outcome::Connected);
        assert_eq!(resolver.stats().pending, 0);
    }

    #[test]
    fn an_outcome_of_an_earlier_socket_at_the_same_address_is_not_taken() {
        let mut resolver = Resolver::new(ResolverConfig::default());
        // An earlier handshake on the same socket address ended; its call
        // was never seen (lost, or filtered).
        feed(
            &mut resolver,
            &[outcome_of(SOCK, 1, HandshakeEnd::Closed(Some(0)))],
            0,
        );
        assert!(feed(&mut resolver, &[call(EINPROGRESS, SOCK, 5)], 1).is_empty());
        let out = feed(
            &mut resolver,
            &[outcome(HandshakeEnd::Closed(Some(libc::ETIMEDOUT)))],
            2,
        );
        assert_eq!(out[0].outcome, Outcome::Failed(Some(libc::ETIMEDOUT)));
    }

    #[test]
    fn close_without_error_is_canceled() {
        let mut resolver = Resolver::new(ResolverConfig::default());
        feed(&mut resolver, &[call(EINPROGRESS, SOCK, 5)], 0);
        let out = feed(&mut resolver, &[outcome(HandshakeEnd::Closed(Some(0)))], 1);
        assert_eq!(out[0].outcome, Outcome::Canceled);
        assert_eq!(out[0].outcome.final_errno(), None);
        assert!(out[0].outcome.is_failure());
    }

    #[test]
    fn repeats_marked_by_the_kernel_resolve_at_once() {
        let mut resolver = Resolver::new(ResolverConfig::default());
        let out = feed(
            &mut resolver,
            &[
                call(EINPROGRESS, SOCK, 5),
                repeat(EALREADY, 5),
                repeat(0, 5),
                repeat(EISCONN, 5),
                repeat(libc::ECONNREFUSED, 5),
            ],
            0,
        );
        assert_eq!(out.len(), 4, "{out:?}");
        assert!(out.iter().all(|r| r.repeat));
        assert_eq!(out[0].outcome, Outcome::InProgress);
        assert_eq!(out[1].outcome, Outcome::Connected);
        assert_eq!(out[2].outcome, Outcome::Connected);
        assert_eq!(out[3].outcome, Outcome::Failed(Some(libc::ECONNREFUSED)));
        assert_eq!(
            resolver.stats().pending,
            1,
            "the attempt itself still waits"
        );
    }

    #[test]
    fn interrupted_blocking_connect_continues() {
        let mut resolver = Resolver::new(ResolverConfig::default());
        assert!(feed(&mut resolver, &[call(EINTR, SOCK, 5)], 0).is_empty());
        let out = feed(&mut resolver, &[outcome(HandshakeEnd::Established)], 1);
        assert_eq!(out[0].outcome, Outcome::Connected);
        assert_eq!(out[0].attempt.errno(), EINTR);
    }

    #[test]
    fn timeout_and_finish_report_in_progress() {
        let config = ResolverConfig {
            timeout: Duration::from_secs(10),
            ..ResolverConfig::default()
        };
        let mut resolver = Resolver::new(config);
        feed(
            &mut resolver,
            &[call(EINPROGRESS, SOCK, 5), call(EINPROGRESS, SOCK + 8, 6)],
            0,
        );
        assert!(expire(&mut resolver, 9 * SECOND).is_empty());
        let out = expire(&mut resolver, 10 * SECOND);
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(|r| r.outcome == Outcome::InProgress));
        assert_eq!(resolver.stats().timed_out, 2);

        feed(&mut resolver, &[call(EINPROGRESS, SOCK, 5)], 11 * SECOND);
        let mut out = Vec::new();
        resolver
            .finish(&mut |r| {
                out.push(*r);
                Ok::<_, ()>(())
            })
            .unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].outcome, Outcome::InProgress);
    }

    #[test]
    fn the_pending_set_is_bounded_and_evictions_counted() {
        let config = ResolverConfig {
            max_pending: 2,
            ..ResolverConfig::default()
        };
        let mut resolver = Resolver::new(config);
        let calls: Vec<Record> = (0..5).map(|i| call(EINPROGRESS, SOCK + i * 8, 5)).collect();
        let out = feed(&mut resolver, &calls, 0);
        assert_eq!(out.len(), 3);
        assert!(out.iter().all(|r| r.outcome == Outcome::InProgress));
        assert_eq!(resolver.stats().evicted, 3);
        assert_eq!(resolver.stats().pending, 2);
    }

    #[test]
    fn unmatched_outcomes_expire_and_are_counted() {
        let mut resolver = Resolver::new(ResolverConfig::default());
        feed(&mut resolver, &[outcome(HandshakeEnd::Established)], 0);
        expire(&mut resolver, 3 * SECOND);
        assert_eq!(resolver.stats().unmatched_outcomes, 1);
        let out = feed(&mut resolver, &[call(EINPROGRESS, SOCK, 5)], 3 * SECOND);
        assert!(out.is_empty(), "the late call waits for a new outcome");
    }

    #[test]
    fn the_maps_give_back_what_a_burst_took() {
        let mut resolver = Resolver::new(ResolverConfig::default());
        let calls: Vec<Record> = (0..10_000)
            .map(|i| call(EINPROGRESS, SOCK + i * 8, 5))
            .collect();
        feed(&mut resolver, &calls, 0);
        assert!(!resolver.shrink(), "full maps stay as they are");
        let grown = resolver.pending.capacity();
        for i in 0..10_000 {
            feed(
                &mut resolver,
                &[outcome_of(SOCK + i * 8, SYN, HandshakeEnd::Established)],
                1,
            );
        }
        assert!(resolver.shrink());
        assert!(
            resolver.pending.capacity() < grown / 4,
            "{}",
            resolver.pending.capacity()
        );
        assert!(!resolver.shrink());
    }

    #[test]
    fn failures_only_drops_connected_outcomes() {
        let config = ResolverConfig {
            failures_only: true,
            ..ResolverConfig::default()
        };
        let mut resolver = Resolver::new(config);
        feed(&mut resolver, &[call(EINPROGRESS, SOCK, 5)], 0);
        assert!(feed(&mut resolver, &[outcome(HandshakeEnd::Established)], 1).is_empty());
        feed(&mut resolver, &[call(EINPROGRESS, SOCK, 5)], 2);
        let out = feed(
            &mut resolver,
            &[outcome(HandshakeEnd::Closed(Some(libc::ECONNREFUSED)))],
            3,
        );
        assert_eq!(out.len(), 1);
    }
}

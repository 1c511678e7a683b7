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
//! still inside connect().

use std::time::Duration;

use rustc_hash::FxHashMap;

use crate::attempt::{ConnectAttempt, HandshakeEnd, HandshakeOutcome};
use crate::record::Record;

const EINTR: i32 = libc::EINTR;
const EALREADY: i32 = libc::EALREADY;
const EISCONN: i32 = libc::EISCONN;
const EINPROGRESS: i32 = libc::EINPROGRESS;

/// How long an outcome that arrived before its call waits for it. The call
/// follows within microseconds unless its record was lost.
const EARLY_OUTCOME_TTL: Duration = Duration::from_secs(2);

/// How long after a handshake ended a second connect() on the same socket,
/// to the same place, is taken as the program checking the result (the
/// classic way in C: call connect() again once the socket is writable).
const STATUS_CHECK_TTL: Duration = Duration::from_secs(10);

/// Default for how long an attempt may stay unresolved: longer than
/// Linux's default SYN retry schedule (`tcp_syn_retries=6`, about 127 s).
pub const DEFAULT_RESOLVE_TIMEOUT: Duration = Duration::from_secs(150);

/// Default bound on attempts waiting for their outcome.
pub const DEFAULT_MAX_PENDING: usize = 32_768;

/// The true outcome of a connect() attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The connection was established.
    Connected,
    /// It failed with this errno (`None`: the kernel's error could not be
    /// read).
    Failed(Option<i32>),
    /// The application closed the socket before the handshake finished
    /// (how Go, tokio and others time out a connect); no error is involved.
    Canceled,
    /// Not known: still unresolved at the resolution timeout or when the
    /// daemon stopped, or not a kind of socket whose handshake is followed.
    InProgress,
}

impl Outcome {
    /// The name used in JSON records and metrics.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Connected => "connected",
            Self::Failed(_) => "failed",
            Self::Canceled => "canceled",
            Self::InProgress => "in_progress",
        }
    }

    /// The final errno: 0 when connected, the error when failed, `None`
    /// when there is none (canceled, in progress, unknown error).
    pub const fn final_errno(self) -> Option<i32> {
        match self {
            Self::Connected => Some(0),
            Self::Failed(errno) => errno,
            Self::Canceled | Self::InProgress => None,
        }
    }

    /// Whether this counts as a failed attempt.
    pub const fn is_failure(self) -> bool {
        matches!(self, Self::Failed(_) | Self::Canceled)
    }

    fn of_handshake(end: HandshakeEnd) -> Self {
        match end {
            HandshakeEnd::Established => Self::Connected,
            HandshakeEnd::Closed(Some(0)) => Self::Canceled,
            HandshakeEnd::Closed(errno) => Self::Failed(errno),
        }
    }

    /// The outcome as far as the syscall's own return value tells it.
    fn of_return(errno: i32, repeat: bool) -> Self {
        match errno {
            0 => Self::Connected,
            EISCONN if repeat => Self::Connected,
            EINPROGRESS | EALREADY | EINTR => Self::InProgress,
            errno => Self::Failed(Some(errno)),
        }
    }
}

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
    /// The call was made on a socket already connecting or connected
    /// (EALREADY, EISCONN, or a second call while the first is pending): it
    /// is the same attempt seen again and must not be counted twice.
    pub repeat: bool,
}

/// Settings of a [`Resolver`].
#[derive(Debug, Clone)]
pub struct ResolverConfig {
    /// How long an attempt may wait for its outcome.
    pub timeout: Duration,
    /// The most attempts waiting at once; beyond it new ones are reported
    /// at once as in progress, and counted.
    pub max_pending: usize,
    /// Report only attempts whose outcome is a failure (or unknown).
    pub failures_only: bool,
}

impl Default for ResolverConfig {
    fn default() -> Self {
        Self {
            timeout: DEFAULT_RESOLVE_TIMEOUT,
            max_pending: DEFAULT_MAX_PENDING,
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
    /// (pid, fd) pairs, and the maps are bounded by `max_pending`.
    pending: FxHashMap<u64, Pending>,
    /// (pid, fd) of pending attempts, to recognise a second call on the
    /// same socket (a status check) as a repeat.
    pending_fds: FxHashMap<(u32, i32), u64>,
    early: FxHashMap<u64, (HandshakeOutcome, u64)>,
    /// Attempts that went on past their call and have ended, by (pid, fd):
    /// the destination's hash, the outcome, and when it ended.
    ended: FxHashMap<(u32, i32), (u64, Outcome, u64)>,
    stats: ResolverStats,
}

impl Resolver {
    /// A resolver with `config`.
    pub fn new(config: ResolverConfig) -> Self {
        Self {
            config,
            pending: FxHashMap::default(),
            pending_fds: FxHashMap::default(),
            early: FxHashMap::default(),
            ended: FxHashMap::default(),
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

    fn on_attempt<E>(
        &mut self,
        attempt: &ConnectAttempt,
        now_ns: u64,
        emit: &mut impl FnMut(&ResolvedAttempt) -> Result<(), E>,
    ) -> Result<(), E> {
        let errno = attempt.errno();
        let sock = attempt.handshake_sock();
        let key = (attempt.pid(), attempt.fd());
        let repeat = matches!(errno, EALREADY | EISCONN)
            || (sock.is_none()
                && (self.pending_fds.contains_key(&key)
                    || self.checks_ended_attempt(attempt, errno, now_ns)));
        let known = attempt.handshake_outcome().or_else(|| {
            sock.and_then(|sock| self.early.remove(&sock))
                .map(|(outcome, _)| outcome)
        });
        if let Some(outcome) = known {
            let resolved = match outcome.end {
                // The kernel undid SYN_SENT on the way out of a call that
                // failed by itself (no source port, say): not a cancel.
                HandshakeEnd::Closed(Some(0)) if errno != 0 && !continues(errno) => {
                    Outcome::Failed(Some(errno))
                }
                end => Outcome::of_handshake(end),
            };
            if continues(errno) {
                self.remember_ended(attempt, resolved, now_ns);
            }
            return self.emit(attempt, resolved, Some(outcome.handshake_ns), repeat, emit);
        }
        if let Some(sock) = sock
            && continues(errno)
            && !attempt.handshake_untracked()
        {
            if self.pending.len() >= self.config.max_pending {
                self.stats.evicted += 1;
                return self.emit(attempt, Outcome::InProgress, None, repeat, emit);
            }
            let deadline_ns = now_ns.saturating_add(duration_ns(self.config.timeout));
            self.pending_fds.insert((attempt.pid(), attempt.fd()), sock);
            self.pending.insert(
                sock,
                Pending {
                    attempt: *attempt,
                    deadline_ns,
                },
            );
            return Ok(());
        }
        self.emit(
            attempt,
            Outcome::of_return(errno, repeat),
            None,
            repeat,
            emit,
        )
    }

    fn on_outcome<E>(
        &mut self,
        outcome: &HandshakeOutcome,
        now_ns: u64,
        emit: &mut impl FnMut(&ResolvedAttempt) -> Result<(), E>,
    ) -> Result<(), E> {
        if let Some(pending) = self.take_pending(outcome.sock) {
            let resolved = Outcome::of_handshake(outcome.end);
            self.remember_ended(&pending.attempt, resolved, now_ns);
            return self.emit(
                &pending.attempt,
                resolved,
                Some(outcome.handshake_ns),
                false,
                emit,
            );
        }
        if self.early.len() >= self.config.max_pending {
            self.stats.unmatched_outcomes += 1;
            return Ok(());
        }
        self.early.insert(outcome.sock, (*outcome, now_ns));
        Ok(())
    }

    /// Reports attempts whose resolution timeout has passed as in progress,
    /// and forgets outcomes whose call never came. Call about once a second.
    pub fn expire<E>(
        &mut self,
        now_ns: u64,
        emit: &mut impl FnMut(&ResolvedAttempt) -> Result<(), E>,
    ) -> Result<(), E> {
        let expired: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, pending)| pending.deadline_ns <= now_ns)
            .map(|(sock, _)| *sock)
            .collect();
        for sock in expired {
            if let Some(pending) = self.take_pending(sock) {
                self.stats.timed_out += 1;
                self.emit(&pending.attempt, Outcome::InProgress, None, false, emit)?;
            }
        }
        let check_ttl = duration_ns(STATUS_CHECK_TTL);
        self.ended
            .retain(|_, (_, _, ended_ns)| now_ns.saturating_sub(*ended_ns) < check_ttl);
        let ttl = duration_ns(EARLY_OUTCOME_TTL);
        let before = self.early.len();
        self.early
            .retain(|_, (_, seen_ns)| now_ns.saturating_sub(*seen_ns) < ttl);
        self.stats.unmatched_outcomes += (before - self.early.len()) as u64;
        Ok(())
    }

    /// Reports every attempt still waiting as in progress (at shutdown).
    pub fn finish<E>(
        &mut self,
        emit: &mut impl FnMut(&ResolvedAttempt) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut pending: Vec<Pending> = self.pending.drain().map(|(_, pending)| pending).collect();
        self.pending_fds.clear();
        pending.sort_by_key(|pending| pending.attempt.start_monotonic_ns());
        for pending in pending {
            self.emit(&pending.attempt, Outcome::InProgress, None, false, emit)?;
        }
        Ok(())
    }

    /// Notes that an attempt that went on past its call has ended, so that
    /// the program's own check of the result is not counted again.
    fn remember_ended(&mut self, attempt: &ConnectAttempt, outcome: Outcome, now_ns: u64) {
        if self.ended.len() >= self.config.max_pending {
            return;
        }
        let key = (attempt.pid(), attempt.fd());
        self.ended
            .insert(key, (destination_hash(attempt), outcome, now_ns));
    }

    /// A call without a SYN, on a socket whose attempt ended lately, to the
    /// same destination, returning what that attempt ended with: the
    /// program checking the result, not a new attempt.
    fn checks_ended_attempt(&self, attempt: &ConnectAttempt, errno: i32, now_ns: u64) -> bool {
        let Some((destination, outcome, ended_ns)) = self.ended.get(&(attempt.pid(), attempt.fd()))
        else {
            return false;
        };
        now_ns.saturating_sub(*ended_ns) < duration_ns(STATUS_CHECK_TTL)
            && *destination == destination_hash(attempt)
            && match outcome {
                Outcome::Connected => errno == 0,
                Outcome::Failed(Some(final_errno)) => errno == *final_errno,
                Outcome::Failed(None) | Outcome::Canceled | Outcome::InProgress => false,
            }
    }

    fn take_pending(&mut self, sock: u64) -> Option<Pending> {
        let pending = self.pending.remove(&sock)?;
        let key = (pending.attempt.pid(), pending.attempt.fd());
        if self.pending_fds.get(&key) == Some(&sock) {
            self.pending_fds.remove(&key);
        }
        Some(pending)
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

fn destination_hash(attempt: &ConnectAttempt) -> u64 {
    use std::hash::BuildHasher as _;
    rustc_hash::FxBuildHasher.hash_one(attempt.destination())
}

/// The call returned while its handshake goes on (restart codes already
/// read as EINTR).
const fn continues(errno: i32) -> bool {
    matches!(errno, EINPROGRESS | EINTR)
}

fn duration_ns(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use connect_trace_common::{ConnectRecord, Handshake, tcp_state};

    use super::*;
    use crate::attempt::tests::sample_record;

    const SOCK: u64 = 0xffff_8880_1234_0000;
    const SECOND: u64 = 1_000_000_000;

    fn call(errno: i32, sock: u64, fd: i32) -> Record {
        let mut raw: ConnectRecord = sample_record();
        raw.ret = -errno;
        raw.fd = fd;
        raw.handshake = Handshake {
            sock,
            syn_ns: if sock == 0 { 0 } else { 10 },
            ..Handshake::default()
        };
        Record::Connect(ConnectAttempt::from_record(raw))
    }

    fn call_with_outcome(errno: i32, state: u32, err: i32) -> Record {
        let mut raw: ConnectRecord = sample_record();
        raw.ret = -errno;
        raw.handshake = Handshake {
            sock: SOCK,
            syn_ns: 10,
            outcome_ns: 110,
            outcome_state: state,
            outcome_err: err,
        };
        Record::Connect(ConnectAttempt::from_record(raw))
    }

    fn outcome(end: HandshakeEnd) -> Record {
        Record::Outcome(HandshakeOutcome {
            sock: SOCK,
            pid: 42,
            end,
            handshake_ns: 5_000,
        })
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
    fn close_without_error_is_canceled() {
        let mut resolver = Resolver::new(ResolverConfig::default());
        feed(&mut resolver, &[call(EINPROGRESS, SOCK, 5)], 0);
        let out = feed(&mut resolver, &[outcome(HandshakeEnd::Closed(Some(0)))], 1);
        assert_eq!(out[0].outcome, Outcome::Canceled);
        assert_eq!(out[0].outcome.final_errno(), None);
        assert!(out[0].outcome.is_failure());
    }

    #[test]
    fn repeats_are_marked() {
        let mut resolver = Resolver::new(ResolverConfig::default());
        let out = feed(
            &mut resolver,
            &[
                call(EINPROGRESS, SOCK, 5),
                call(EALREADY, 0, 5),
                call(0, 0, 5),
            ],
            0,
        );
        assert_eq!(out.len(), 2, "{out:?}");
        assert!(out.iter().all(|r| r.repeat));
        assert_eq!(out[0].outcome, Outcome::InProgress);
        assert_eq!(out[1].outcome, Outcome::Connected);
        let out = feed(&mut resolver, &[call(EISCONN, 0, 9)], 0);
        assert!(out[0].repeat);
        assert_eq!(out[0].outcome, Outcome::Connected);
    }

    /// A call like `call` but to another port.
    fn elsewhere(record: Record) -> Record {
        let Record::Connect(attempt) = record else {
            return record;
        };
        let mut raw: ConnectRecord = sample_record();
        raw.ret = attempt.ret();
        raw.fd = attempt.fd();
        raw.addr[2..4].copy_from_slice(&4242u16.to_be_bytes());
        Record::Connect(ConnectAttempt::from_record(raw))
    }

    #[test]
    fn checking_an_ended_attempt_with_connect_is_a_repeat() {
        let mut resolver = Resolver::new(ResolverConfig::default());
        feed(&mut resolver, &[call(EINPROGRESS, SOCK, 5)], 0);
        feed(&mut resolver, &[outcome(HandshakeEnd::Established)], 1);
        let out = feed(&mut resolver, &[call(0, 0, 5)], 2);
        assert!(
            out[0].repeat,
            "connect() again returning 0 checks the result"
        );
        assert_eq!(out[0].outcome, Outcome::Connected);
        // Another destination on the same descriptor is a new attempt.
        let out = feed(&mut resolver, &[elsewhere(call(0, 0, 5))], 3);
        assert!(!out[0].repeat);
        // So is anything after the window.
        expire(&mut resolver, 20 * SECOND);
        let out = feed(&mut resolver, &[call(0, 0, 5)], 20 * SECOND);
        assert!(!out[0].repeat);
    }

    #[test]
    fn checking_a_failed_attempt_repeats_its_error() {
        let mut resolver = Resolver::new(ResolverConfig::default());
        let refused = libc::ECONNREFUSED;
        let out = feed(
            &mut resolver,
            &[call_with_outcome(EINPROGRESS, tcp_state::CLOSE, refused)],
            0,
        );
        assert!(!out[0].repeat);
        let out = feed(&mut resolver, &[call(refused, 0, 3)], 1);
        assert!(out[0].repeat);
        let out = feed(&mut resolver, &[call(libc::ETIMEDOUT, 0, 3)], 2);
        assert!(
            !out[0].repeat,
            "a different error is not a check of this one"
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

//! One owner for every count of what happened to the records: what the
//! kernel counted and lost, what reached the daemon, what it wrote and
//! could not write, what it gave up waiting for.
//!
//! The daemon-side counts live in a [`Ledger`] that the pipeline updates
//! once per batch; the kernel's are read from its maps when asked. The
//! final line, the summaries' `delivery`, the `stopped` record and
//! `/metrics` all report a [`Delivery`] from [`Ledger::snapshot`], so they
//! cannot disagree.

use std::sync::atomic::{AtomicU64, Ordering};

use aya::maps::MapError;
use serde::Serialize;

use crate::{dns::DnsStats, kernel::KernelStats, resolve::ResolverStats};

/// Every count, since the daemon started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Delivery {
    /// Calls that passed the filters, counted in the kernel.
    pub attempts_counted: u64,
    /// Failed or canceled attempts, counted in the kernel (exact).
    pub failures_counted: u64,
    /// Call records that reached the daemon.
    pub records_delivered: u64,
    /// Call records dropped because the ring buffer was full.
    pub records_lost: u64,
    /// Handshake outcomes dropped because the ring buffer was full.
    pub outcomes_lost: u64,
    /// Records that did not decode (an ABI mismatch; never expected).
    pub records_undecodable: u64,
    /// Lines written whole to the output.
    pub records_written: u64,
    /// Records the daemon could not write to its output (disk full, ...).
    pub records_unwritten: u64,
    /// Attempts waiting for their handshake to end now.
    pub pending: u64,
    /// Attempts reported as `in_progress` at `--resolve-timeout`.
    pub unresolved_timeout: u64,
    /// Attempts reported as `in_progress` without being followed, because
    /// a set of pending handshakes (the kernel's or the daemon's) was full.
    pub unresolved_capacity: u64,
    /// Handshake outcomes whose call never arrived (lost or filtered).
    pub outcomes_unmatched: u64,
    /// connect() calls whose start the kernel did not see (already inside
    /// connect() when tracing began, or its program run was skipped) or had
    /// no room to keep: reported with `addr_error: "not_seen"`.
    pub calls_unseen: u64,
    /// Recent attempts displaced from the kernel's status-check table
    /// while a status check could still have come for them.
    pub status_checks_unmatched: u64,
    /// Handshakes the kernel followed whose end it never saw, removed from
    /// its table once older than any handshake lasts.
    pub handshakes_expired: u64,
    /// Handshake ends the kernel never reported as a state change, caught
    /// as the socket was freed and reported then (not lost).
    pub handshake_ends_at_close: u64,
    /// Attempts left out by `--container`, `--pod` or `--namespace` (which
    /// the kernel cannot test, and counts).
    pub records_filtered: u64,
    /// Runs of the programs the kernel skipped because one was already
    /// running on that CPU: each a call's start or end, or a handshake's
    /// start or end, not seen.
    pub events_missed: u64,
    /// DNS responses the kernel dropped because the DNS ring buffer was
    /// full: names those answers gave are missing from later records.
    pub dns_responses_lost: u64,
    /// DNS names dropped from the full name cache while still valid: later
    /// records to those addresses have no name.
    pub dns_names_evicted: u64,
    /// Log records (one per attempt) the OTLP endpoint accepted.
    pub otlp_exported: u64,
    /// Log records never delivered over OTLP: no room in its queue, given
    /// up after retries, refused by the endpoint, or still queued when the
    /// daemon stopped.
    pub otlp_dropped: u64,
}

/// The daemon-side counts, shared with whoever reports them.
#[derive(Debug, Default)]
pub struct Ledger {
    records_delivered: AtomicU64,
    records_undecodable: AtomicU64,
    records_written: AtomicU64,
    records_unwritten: AtomicU64,
    pending: AtomicU64,
    unresolved_timeout: AtomicU64,
    unresolved_capacity: AtomicU64,
    outcomes_unmatched: AtomicU64,
    handshakes_expired: AtomicU64,
    otlp_exported: AtomicU64,
    otlp_dropped: AtomicU64,
    /// Attempts the workload filter left out, counted where it runs.
    filtered: std::sync::OnceLock<std::sync::Arc<AtomicU64>>,
    /// The DNS capture's counts, when destinations are named.
    dns: std::sync::OnceLock<std::sync::Arc<DnsStats>>,
}

impl Ledger {
    /// Adds records taken from the ring buffer (calls, and undecodable
    /// records).
    pub fn delivered(&self, calls: u64, undecodable: u64) {
        self.records_delivered.fetch_add(calls, Ordering::Relaxed);
        self.records_undecodable
            .fetch_add(undecodable, Ordering::Relaxed);
    }

    /// Adds what a flush of the output did.
    pub fn written(&self, written: u64, unwritten: u64) {
        self.records_written.fetch_add(written, Ordering::Relaxed);
        self.records_unwritten
            .fetch_add(unwritten, Ordering::Relaxed);
    }

    /// Takes the resolver's counts as they are now.
    pub fn resolver(&self, stats: ResolverStats) {
        let ResolverStats {
            pending,
            evicted,
            timed_out,
            unmatched_outcomes,
        } = stats;
        self.pending.store(pending as u64, Ordering::Relaxed);
        self.unresolved_capacity.store(evicted, Ordering::Relaxed);
        self.unresolved_timeout.store(timed_out, Ordering::Relaxed);
        self.outcomes_unmatched
            .store(unmatched_outcomes, Ordering::Relaxed);
    }

    /// Reports the attempts the workload filter left out from `filtered`.
    pub fn watch_filtered(&self, filtered: std::sync::Arc<AtomicU64>) {
        let _ = self.filtered.set(filtered);
    }

    /// Reports the DNS capture's losses from `dns`.
    pub fn watch_dns(&self, dns: std::sync::Arc<DnsStats>) {
        let _ = self.dns.set(dns);
    }

    /// Adds kernel entries for handshakes whose end was never seen.
    pub fn handshakes_expired(&self, expired: u64) {
        self.handshakes_expired
            .fetch_add(expired, Ordering::Relaxed);
    }

    /// Adds log records the OTLP endpoint accepted.
    pub fn otlp_exported(&self, records: u64) {
        self.otlp_exported.fetch_add(records, Ordering::Relaxed);
    }

    /// Adds log records that will never reach the OTLP endpoint.
    pub fn otlp_dropped(&self, records: u64) {
        self.otlp_dropped.fetch_add(records, Ordering::Relaxed);
    }

    /// The daemon's own counts, with the kernel's left at zero.
    pub fn daemon_counts(&self) -> Delivery {
        let load = |count: &AtomicU64| count.load(Ordering::Relaxed);
        Delivery {
            records_delivered: load(&self.records_delivered),
            records_undecodable: load(&self.records_undecodable),
            records_written: load(&self.records_written),
            records_unwritten: load(&self.records_unwritten),
            pending: load(&self.pending),
            unresolved_timeout: load(&self.unresolved_timeout),
            unresolved_capacity: load(&self.unresolved_capacity),
            outcomes_unmatched: load(&self.outcomes_unmatched),
            handshakes_expired: load(&self.handshakes_expired),
            records_filtered: self.filtered.get().map_or(0, |filtered| load(filtered)),
            otlp_exported: load(&self.otlp_exported),
            otlp_dropped: load(&self.otlp_dropped),
            ..Delivery::default()
        }
    }

    /// Every count: the daemon's, and the kernel's read from `kernel` now.
    pub fn snapshot(&self, kernel: &KernelStats) -> Result<Delivery, MapError> {
        let counters = kernel.counters()?;
        let outcomes = kernel.outcomes()?;
        let daemon = self.daemon_counts();
        let dns = match self.dns.get() {
            Some(dns) => dns.read()?,
            None => crate::dns::DnsCounters::default(),
        };
        Ok(Delivery {
            attempts_counted: counters.attempts,
            failures_counted: outcomes.failures(),
            records_lost: counters.ringbuf_full,
            outcomes_lost: counters.outcome_ringbuf_full,
            unresolved_capacity: daemon.unresolved_capacity + counters.pending_full,
            // A call the kernel had no room to keep also exits without
            // entry; an io_uring request it had no room for does not.
            calls_unseen: counters.exit_without_entry + counters.io_uring_full,
            status_checks_unmatched: counters.recent_evicted,
            handshake_ends_at_close: counters.ends_at_close,
            events_missed: kernel.skipped_runs(),
            dns_responses_lost: dns.kernel.ringbuf_full,
            dns_names_evicted: dns.cache.evicted,
            ..daemon
        })
    }
}

impl Delivery {
    /// The final line on stderr, for people.
    pub fn describe(&self) -> String {
        let Self {
            attempts_counted,
            failures_counted: _,
            records_delivered,
            records_lost,
            outcomes_lost,
            records_undecodable,
            records_written,
            records_unwritten,
            pending: _,
            unresolved_timeout,
            unresolved_capacity,
            outcomes_unmatched,
            calls_unseen,
            status_checks_unmatched,
            handshakes_expired,
            handshake_ends_at_close,
            records_filtered,
            events_missed,
            dns_responses_lost,
            dns_names_evicted,
            otlp_exported,
            otlp_dropped,
        } = self;
        format!(
            "{attempts_counted} calls counted in the kernel, {records_delivered} records delivered, \
             {records_written} records written, {records_unwritten} not written (output errors), \
             {records_lost} lost (ring buffer full), {outcomes_lost} outcomes lost, \
             {records_undecodable} undecodable, {calls_unseen} calls unseen (in connect() at start), \
             {unresolved_timeout} unresolved at timeout, {unresolved_capacity} not followed (pending sets full), \
             {outcomes_unmatched} outcomes without their call, \
             {status_checks_unmatched} status-check entries displaced, \
             {handshakes_expired} handshakes whose end the kernel never saw, \
             {handshake_ends_at_close} handshake ends caught only at close, \
             {records_filtered} left out by workload filters, \
             {events_missed} program runs the kernel skipped, \
             {dns_responses_lost} DNS responses lost (DNS ring buffer full), \
             {dns_names_evicted} DNS names evicted (name cache full), \
             {otlp_exported} exported over OTLP, {otlp_dropped} not exported over OTLP (dropped)"
        )
    }
}

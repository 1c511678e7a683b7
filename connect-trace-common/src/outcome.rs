//! The one outcome model: what a connect() attempt came to, decided the
//! same way in the kernel (for the exact counts) and in the daemon (for the
//! records, summaries and metrics).
//!
//! - [`user_errno`]: what the calling program sees (the kernel's restart
//!   codes read as `EINTR`).
//! - [`continues`]: the call returned while its handshake goes on.
//! - [`Outcome::of_handshake`] and [`Outcome::of_return`]: an attempt's
//!   outcome from the end of its handshake, or from the call's own result.
//! - [`is_repeat`]: the same attempt seen again, not a new one.
//! - [`Outcome::code`] and [`slot`]: the exact counting codes.

use crate::{
    abi::{Handshake, OUTCOME_ERR_UNKNOWN, tcp_state},
    family,
};

/// `EINTR`: the call was interrupted by a signal.
pub const EINTR: i32 = 4;
/// `EISCONN`: the socket is already connected.
pub const EISCONN: i32 = 106;
/// `EALREADY`: an earlier attempt on the socket is still under way.
pub const EALREADY: i32 = 114;
/// `EINPROGRESS`: a non-blocking attempt goes on after the call.
pub const EINPROGRESS: i32 = 115;
/// `ECANCELED`: an io_uring request was canceled (by a linked timeout or
/// an explicit cancel) before it completed. connect(2) never returns it.
pub const ECANCELED: i32 = 125;

/// How long after an attempt ended a connect() on the same socket that
/// returns what it ended with is taken as the program checking the result
/// (the C idiom, and Perl's `IO::Socket::INET`: call connect() again once
/// the socket is writable).
pub const STATUS_CHECK_WINDOW_NS: u64 = 10_000_000_000;

/// How long a handshake may stay pending in the recent-attempt table and
/// still make a later call on its socket a repeat. Linux gives up on a SYN
/// after about 127 s by default; an entry older than this lost its end.
pub const PENDING_WINDOW_NS: u64 = 600_000_000_000;

/// The errno the calling program sees for the syscall's return value `ret`
/// (0 or a negated errno); 0 on success.
///
/// The exit tracepoint runs before signal handling, so an interrupted
/// connect() shows up there as one of the kernel's internal restart codes.
/// The program sees `EINTR` instead (or, when its handler was installed
/// with `SA_RESTART`, nothing: the call is made again, and that second call
/// is traced as a call of its own).
pub const fn user_errno(ret: i64) -> i32 {
    if ret >= 0 {
        return 0;
    }
    match -ret {
        // ERESTARTSYS, ERESTARTNOINTR, ERESTARTNOHAND, ERESTART_RESTARTBLOCK.
        512..=514 | 516 => EINTR,
        errno if errno <= i32::MAX as i64 => errno as i32,
        _ => i32::MAX,
    }
}

/// Whether a call that returned `errno` left its handshake going on: a
/// non-blocking call, or a blocking one interrupted by a signal.
pub const fn continues(errno: i32) -> bool {
    matches!(errno, EINPROGRESS | EINTR)
}

/// How a followed TCP handshake ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeEnd {
    /// It reached ESTABLISHED.
    Established,
    /// It went to CLOSE with this `sk_err`: 0 means the application closed
    /// the socket; `None` means the error could not be read.
    Closed(Option<i32>),
}

impl HandshakeEnd {
    /// The end a [`Handshake`] records, if it has ended.
    pub const fn of(handshake: &Handshake) -> Option<Self> {
        if handshake.sock == 0 || handshake.outcome_ns == 0 {
            return None;
        }
        match handshake.outcome_state {
            tcp_state::ESTABLISHED => Some(Self::Established),
            tcp_state::CLOSE if handshake.outcome_err == OUTCOME_ERR_UNKNOWN => {
                Some(Self::Closed(None))
            }
            tcp_state::CLOSE => Some(Self::Closed(Some(handshake.outcome_err))),
            _ => None,
        }
    }
}

/// The true outcome of a connect() attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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

/// Counting codes: one per outcome, and one per errno for failures.
pub mod code {
    /// Connected.
    pub const CONNECTED: u32 = 0;
    /// Codes 1..=`MAX_ERRNO`: failed with that errno.
    pub const MAX_ERRNO: u32 = 133;
    /// Failed with an errno above `MAX_ERRNO` or not known.
    pub const FAILED_OTHER: u32 = 134;
    /// The application closed the socket during the handshake.
    pub const CANCELED: u32 = 135;
    /// Still connecting and not followed (not TCP, or no room).
    pub const IN_PROGRESS: u32 = 136;
    /// A repeat: the same attempt seen again, not a new attempt.
    pub const REPEAT: u32 = 137;
    /// Codes per family.
    pub const CODES: u32 = 138;
}

/// Slots of the exact counts: one per (family slot, code).
pub const SLOTS: u32 = family::SLOTS * code::CODES;

/// The slot of a family slot and a code.
pub const fn slot(family_slot: u32, code: u32) -> u32 {
    family_slot * code::CODES + code
}

impl Outcome {
    /// The outcome of an attempt whose handshake ended with `end`, made by
    /// a call that returned `call_errno` (0 when the handshake ended after
    /// the call returned).
    pub const fn of_handshake(end: HandshakeEnd, call_errno: i32) -> Self {
        match end {
            HandshakeEnd::Established => Self::Connected,
            // Closed without an error is a cancel, unless the call itself
            // failed: then the kernel undid SYN_SENT on the call's way out
            // (no source port, say), and the call's error is the outcome.
            HandshakeEnd::Closed(Some(0)) if call_errno != 0 && !continues(call_errno) => {
                Self::Failed(Some(call_errno))
            }
            HandshakeEnd::Closed(Some(0)) => Self::Canceled,
            HandshakeEnd::Closed(error) => Self::Failed(error),
        }
    }

    /// The outcome as far as the call's own return value tells it (no
    /// handshake followed: UDP, unix, a failure before any SYN, a repeat).
    pub const fn of_return(errno: i32) -> Self {
        match errno {
            0 | EISCONN => Self::Connected,
            EINPROGRESS | EALREADY | EINTR => Self::InProgress,
            // The program gave up on the request, whatever became of the
            // handshake after.
            ECANCELED => Self::Canceled,
            errno => Self::Failed(Some(errno)),
        }
    }

    /// The counting code of this outcome ([`code`]).
    pub const fn code(self) -> u32 {
        match self {
            Self::Connected => code::CONNECTED,
            Self::Failed(Some(errno)) if errno > 0 && errno as u32 <= code::MAX_ERRNO => {
                errno as u32
            }
            Self::Failed(_) => code::FAILED_OTHER,
            Self::Canceled => code::CANCELED,
            Self::InProgress => code::IN_PROGRESS,
        }
    }

    /// The outcome a counting code stands for; `None` for [`code::REPEAT`]
    /// and codes out of range. [`code::FAILED_OTHER`] reads as a failure
    /// with an unknown error.
    pub const fn of_code(code: u32) -> Option<Self> {
        match code {
            code::CONNECTED => Some(Self::Connected),
            1..=code::MAX_ERRNO => Some(Self::Failed(Some(code as i32))),
            code::FAILED_OTHER => Some(Self::Failed(None)),
            code::CANCELED => Some(Self::Canceled),
            code::IN_PROGRESS => Some(Self::InProgress),
            _ => None,
        }
    }

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
}

/// Whether a call whose SYN went out waits for its handshake's end to be
/// resolved (and counted): it continues past the call, the kernel follows
/// its handshake, and the end was not already seen inside the call.
pub const fn awaits_handshake(errno: i32, followed: bool, ended: bool) -> bool {
    followed && !ended && continues(errno)
}

/// States of a `RECENT` table entry ([`crate::abi::RecentAttempt`]).
pub mod recent {
    /// The handshake is under way.
    pub const PENDING: u32 = 1;
    /// The handshake ended; `code` says how.
    pub const ENDED: u32 = 2;
}

/// What the recent-attempt table knows of an earlier attempt on the socket
/// a call was made on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Earlier {
    /// Nothing: no TCP attempt on this socket lately.
    None,
    /// An attempt whose SYN went out `ago_ns` ago and has not ended.
    Pending {
        /// Nanoseconds since its SYN.
        ago_ns: u64,
    },
    /// An attempt that ended `ago_ns` ago, with counting code `code`.
    Ended {
        /// How it ended ([`Outcome::code`]).
        code: u32,
        /// Nanoseconds since it ended.
        ago_ns: u64,
    },
}

impl Earlier {
    /// Reads a table entry at time `now_ns`.
    pub const fn of(state: u32, code: u32, since_ns: u64, now_ns: u64) -> Self {
        let ago_ns = now_ns.saturating_sub(since_ns);
        match state {
            recent::PENDING => Self::Pending { ago_ns },
            recent::ENDED => Self::Ended { code, ago_ns },
            _ => Self::None,
        }
    }

    /// Whether a status check could still come for it: pending, or ended
    /// within the status-check window.
    pub const fn still_matters(self) -> bool {
        match self {
            Self::None => false,
            Self::Pending { ago_ns } => ago_ns < PENDING_WINDOW_NS,
            Self::Ended { ago_ns, .. } => ago_ns < STATUS_CHECK_WINDOW_NS,
        }
    }
}

/// Whether a call that returned `errno` is a repeat: the same attempt seen
/// again, which must not be counted as a new one.
///
/// - `EALREADY` and `EISCONN` say so themselves: the socket is already
///   connecting or connected.
/// - Otherwise only a call that sent no SYN can be one: a call on a socket
///   whose attempt is still pending (a blocking call waits for it and
///   returns its result), or a call that, shortly after the attempt ended,
///   returns what it ended with (the program checking the result).
///
/// `earlier` must describe the same socket the call was made on.
pub const fn is_repeat(errno: i32, sent_syn: bool, earlier: Earlier) -> bool {
    if errno == EALREADY || errno == EISCONN {
        return true;
    }
    if sent_syn || !earlier.still_matters() {
        return false;
    }
    match earlier {
        Earlier::None => false,
        Earlier::Pending { .. } => true,
        Earlier::Ended { code, .. } => match code {
            code::CONNECTED => errno == 0,
            1..=code::MAX_ERRNO => errno == code as i32,
            _ => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ECONNREFUSED: i32 = 111;
    const ETIMEDOUT: i32 = 110;
    const EADDRNOTAVAIL: i32 = 99;
    const SECOND: u64 = 1_000_000_000;

    #[test]
    fn restart_codes_read_as_eintr() {
        assert_eq!(user_errno(-512), EINTR);
        assert_eq!(user_errno(-516), EINTR);
        assert_eq!(user_errno(-515), 515);
        assert_eq!(user_errno(-111), ECONNREFUSED);
        assert_eq!(user_errno(0), 0);
        assert_eq!(user_errno(3), 0);
        assert_eq!(user_errno(i64::MIN + 1), i32::MAX);
    }

    #[test]
    fn handshake_ends() {
        let established = HandshakeEnd::Established;
        assert_eq!(
            Outcome::of_handshake(established, EINPROGRESS),
            Outcome::Connected
        );
        let refused = HandshakeEnd::Closed(Some(ECONNREFUSED));
        assert_eq!(
            Outcome::of_handshake(refused, 0),
            Outcome::Failed(Some(ECONNREFUSED))
        );
        let closed = HandshakeEnd::Closed(Some(0));
        assert_eq!(Outcome::of_handshake(closed, 0), Outcome::Canceled);
        assert_eq!(
            Outcome::of_handshake(closed, EINPROGRESS),
            Outcome::Canceled
        );
        assert_eq!(
            Outcome::of_handshake(closed, EADDRNOTAVAIL),
            Outcome::Failed(Some(EADDRNOTAVAIL)),
            "the kernel undid SYN_SENT on a call that failed by itself"
        );
        assert_eq!(
            Outcome::of_handshake(HandshakeEnd::Closed(None), 0),
            Outcome::Failed(None)
        );
    }

    #[test]
    fn handshake_records() {
        let mut handshake = Handshake {
            sock: 8,
            syn_ns: 1,
            ..Handshake::default()
        };
        assert_eq!(HandshakeEnd::of(&handshake), None);
        handshake.outcome_ns = 5;
        handshake.outcome_state = tcp_state::CLOSE;
        handshake.outcome_err = OUTCOME_ERR_UNKNOWN;
        assert_eq!(
            HandshakeEnd::of(&handshake),
            Some(HandshakeEnd::Closed(None))
        );
        handshake.outcome_err = ECONNREFUSED;
        assert_eq!(
            HandshakeEnd::of(&handshake),
            Some(HandshakeEnd::Closed(Some(ECONNREFUSED)))
        );
        handshake.outcome_state = tcp_state::ESTABLISHED;
        assert_eq!(
            HandshakeEnd::of(&handshake),
            Some(HandshakeEnd::Established)
        );
        handshake.sock = 0;
        assert_eq!(HandshakeEnd::of(&handshake), None);
    }

    #[test]
    fn return_values() {
        assert_eq!(Outcome::of_return(0), Outcome::Connected);
        assert_eq!(Outcome::of_return(EISCONN), Outcome::Connected);
        assert_eq!(Outcome::of_return(EALREADY), Outcome::InProgress);
        assert_eq!(Outcome::of_return(EINPROGRESS), Outcome::InProgress);
        assert_eq!(Outcome::of_return(EINTR), Outcome::InProgress);
        assert_eq!(Outcome::of_return(2), Outcome::Failed(Some(2)));
    }

    #[test]
    fn codes_round_trip() {
        for outcome in [
            Outcome::Connected,
            Outcome::Failed(Some(1)),
            Outcome::Failed(Some(ECONNREFUSED)),
            Outcome::Failed(Some(133)),
            Outcome::Failed(None),
            Outcome::Canceled,
            Outcome::InProgress,
        ] {
            assert_eq!(Outcome::of_code(outcome.code()), Some(outcome));
        }
        assert_eq!(Outcome::Failed(Some(600)).code(), code::FAILED_OTHER);
        assert_eq!(Outcome::Failed(Some(-3)).code(), code::FAILED_OTHER);
        assert_eq!(Outcome::of_code(code::REPEAT), None);
        assert_eq!(Outcome::of_code(code::CODES), None);
        assert_eq!(slot(2, code::REPEAT), 2 * code::CODES + code::REPEAT);
        assert!(slot(family::OTHER, code::REPEAT) < SLOTS);
    }

    #[test]
    fn outcome_properties() {
        assert!(Outcome::Canceled.is_failure());
        assert!(Outcome::Failed(None).is_failure());
        assert!(!Outcome::InProgress.is_failure());
        assert_eq!(Outcome::Connected.final_errno(), Some(0));
        assert_eq!(Outcome::Canceled.final_errno(), None);
        assert_eq!(Outcome::InProgress.name(), "in_progress");
    }

    #[test]
    fn only_followed_continuing_calls_await_their_handshake() {
        assert!(awaits_handshake(EINPROGRESS, true, false));
        assert!(awaits_handshake(EINTR, true, false));
        assert!(!awaits_handshake(EINPROGRESS, true, true));
        assert!(!awaits_handshake(EINPROGRESS, false, false));
        assert!(!awaits_handshake(ECONNREFUSED, true, false));
    }

    #[test]
    fn repeats_by_errno() {
        assert!(is_repeat(EALREADY, false, Earlier::None));
        assert!(is_repeat(EISCONN, false, Earlier::None));
        assert!(!is_repeat(0, false, Earlier::None));
    }

    #[test]
    fn a_call_while_pending_is_a_repeat() {
        let pending = Earlier::Pending { ago_ns: SECOND };
        assert!(is_repeat(0, false, pending));
        assert!(is_repeat(ETIMEDOUT, false, pending));
        assert!(!is_repeat(0, true, pending), "a new SYN is a new attempt");
        let stale = Earlier::Pending {
            ago_ns: PENDING_WINDOW_NS,
        };
        assert!(!is_repeat(0, false, stale));
    }

    #[test]
    fn status_checks_repeat_what_the_attempt_ended_with() {
        let refused = Earlier::Ended {
            code: ECONNREFUSED as u32,
            ago_ns: SECOND,
        };
        assert!(is_repeat(ECONNREFUSED, false, refused));
        assert!(!is_repeat(ETIMEDOUT, false, refused));
        assert!(!is_repeat(0, false, refused));
        let connected = Earlier::Ended {
            code: code::CONNECTED,
            ago_ns: SECOND,
        };
        assert!(is_repeat(0, false, connected));
        let canceled = Earlier::Ended {
            code: code::CANCELED,
            ago_ns: SECOND,
        };
        assert!(!is_repeat(0, false, canceled));
        let late = Earlier::Ended {
            code: code::CONNECTED,
            ago_ns: STATUS_CHECK_WINDOW_NS,
        };
        assert!(!is_repeat(0, false, late));
    }

    #[test]
    fn table_entries() {
        assert_eq!(
            Earlier::of(recent::PENDING, 0, 10, 30),
            Earlier::Pending { ago_ns: 20 }
        );
        assert_eq!(
            Earlier::of(recent::ENDED, 111, 10, 30),
            Earlier::Ended {
                code: 111,
                ago_ns: 20
            }
        );
        assert_eq!(Earlier::of(0, 0, 10, 30), Earlier::None);
        assert!(!Earlier::None.still_matters());
    }
}

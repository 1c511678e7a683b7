//! Typed connect() calls and handshake outcomes, as the kernel reported
//! them ([`crate::resolve`] joins the two).

use connect_trace_common::{
    abi::{COMM_LEN, ConnectRecord, Handshake, OutcomeRecord, addr_flags, connect_flags, via},
    family,
    outcome::{self, HandshakeEnd},
};

use super::{DecodeError, read_pod, sockaddr};

/// One connect() call: who made it, where to, and what it returned.
#[derive(Clone, Copy)]
pub struct ConnectAttempt {
    raw: ConnectRecord,
}

impl ConnectAttempt {
    /// Decodes one ring buffer record of kind `CONNECT`.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        read_pod(bytes).map(|raw| Self { raw })
    }

    /// Wraps a record built elsewhere (tests, replays).
    pub const fn from_record(raw: ConnectRecord) -> Self {
        Self { raw }
    }

    /// Process id (tgid).
    pub const fn pid(&self) -> u32 {
        self.raw.tgid
    }

    /// Thread id.
    pub const fn tid(&self) -> u32 {
        self.raw.tid
    }

    /// Real user id.
    pub const fn uid(&self) -> u32 {
        self.raw.uid
    }

    /// Real group id.
    pub const fn gid(&self) -> u32 {
        self.raw.gid
    }

    /// cgroup v2 id.
    pub const fn cgroup_id(&self) -> u64 {
        self.raw.cgroup_id
    }

    /// The inode number of the caller's network namespace (as
    /// `/proc/PID/ns/net` shows it); `None` when the kernel could not tell.
    pub const fn netns(&self) -> Option<u32> {
        match self.raw.netns {
            0 => None,
            inode => Some(inode),
        }
    }

    /// The socket descriptor argument.
    pub const fn fd(&self) -> i32 {
        self.raw.fd
    }

    /// The thread's name, up to its first NUL: raw bytes, not always UTF-8.
    pub fn comm(&self) -> &[u8] {
        let end = self
            .raw
            .comm
            .iter()
            .position(|&byte| byte == 0)
            .unwrap_or(COMM_LEN);
        &self.raw.comm[..end]
    }

    /// The `addrlen` argument.
    pub const fn addrlen(&self) -> i32 {
        self.raw.addrlen
    }

    /// The counting slot of the destination's family, as the kernel's
    /// exact counts have it (`connect_trace_common::family`).
    pub fn family_slot(&self) -> u32 {
        family::slot_of_address(&self.raw.addr, self.raw.addrlen, self.raw.addr_flags)
    }

    /// The destination the caller passed.
    pub fn destination(&self) -> sockaddr::SockAddr<'_> {
        sockaddr::decode(&self.raw.addr, self.raw.addrlen, self.raw.addr_flags)
    }

    /// What connect() returned to the program: 0 or a negated errno (the
    /// kernel's restart codes read as `-EINTR`).
    pub fn ret(&self) -> i32 {
        -self.errno()
    }

    /// The errno the program saw; 0 on success.
    pub fn errno(&self) -> i32 {
        outcome::user_errno(i64::from(self.raw.ret))
    }

    /// CLOCK_MONOTONIC nanoseconds when the call began.
    pub const fn start_monotonic_ns(&self) -> u64 {
        self.raw.start_ns
    }

    /// Nanoseconds spent inside connect(); `None` when the call's start
    /// was not seen, or no call was.
    pub const fn latency_ns(&self) -> Option<u64> {
        if self.raw.addr_flags & addr_flags::NOT_SEEN != 0 || !self.call_seen() {
            return None;
        }
        Some(self.raw.latency_ns)
    }

    /// Whether a call was seen for this attempt; `false` when it was seen
    /// only by its TCP handshake ([`connect_flags::NO_CALL`]), which then
    /// gives it no return value, descriptor or latency.
    pub const fn call_seen(&self) -> bool {
        self.raw.flags & connect_flags::NO_CALL == 0
    }

    /// How the attempt was made.
    pub const fn via(&self) -> Via {
        Via::of(self.raw.via)
    }

    /// The handshake this call started, if it sent a TCP SYN: the socket
    /// (kernel address) and when the SYN went out. Together they name the
    /// attempt that a later [`HandshakeOutcome`] resolves; the socket alone
    /// does not, since a later socket may reuse its address.
    pub const fn handshake_id(&self) -> Option<HandshakeId> {
        match self.raw.handshake.sock {
            0 => None,
            sock => Some(HandshakeId {
                sock,
                syn_ns: self.raw.handshake.syn_ns,
            }),
        }
    }

    /// The call was made on a socket whose attempt was already under way
    /// or had just ended (decided in the kernel): not a new attempt.
    pub const fn is_repeat(&self) -> bool {
        self.raw.flags & connect_flags::REPEAT != 0
    }

    /// The handshake's outcome if it was already known when the call
    /// returned (loopback, or a blocking call).
    pub fn handshake_outcome(&self) -> Option<HandshakeOutcome> {
        HandshakeOutcome::from_handshake(self.raw.handshake, self.raw.tgid)
    }

    /// The call sent a SYN, but the kernel could not follow the handshake
    /// (its pending map was full).
    pub const fn handshake_untracked(&self) -> bool {
        self.raw.flags & connect_flags::UNTRACKED != 0
    }
}

/// Names one TCP handshake: its socket and the time of its SYN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HandshakeId {
    /// The socket (kernel address).
    pub sock: u64,
    /// CLOCK_MONOTONIC nanoseconds when its SYN went out.
    pub syn_ns: u64,
}

/// The end of a handshake that a connect() call started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandshakeOutcome {
    /// Which handshake.
    pub id: HandshakeId,
    /// The process that started it.
    pub pid: u32,
    /// How it ended.
    pub end: HandshakeEnd,
    /// Nanoseconds from the SYN to the end.
    pub handshake_ns: u64,
}

impl HandshakeOutcome {
    /// Decodes one ring buffer record of kind `OUTCOME`.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let raw: OutcomeRecord = read_pod(bytes)?;
        Self::from_handshake(raw.handshake, (raw.pid_tgid >> 32) as u32).ok_or(
            DecodeError::Inconsistent("outcome record without an outcome"),
        )
    }

    fn from_handshake(handshake: Handshake, pid: u32) -> Option<Self> {
        let end = HandshakeEnd::of(&handshake)?;
        Some(Self {
            id: HandshakeId {
                sock: handshake.sock,
                syn_ns: handshake.syn_ns,
            },
            pid,
            end,
            handshake_ns: handshake.outcome_ns.saturating_sub(handshake.syn_ns),
        })
    }
}

impl std::fmt::Debug for ConnectAttempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectAttempt")
            .field("pid", &self.pid())
            .field("tid", &self.tid())
            .field("comm", &String::from_utf8_lossy(self.comm()))
            .field("fd", &self.fd())
            .field("destination", &self.destination())
            .field("ret", &self.ret())
            .field("latency_ns", &self.latency_ns())
            .finish_non_exhaustive()
    }
}

/// How an attempt was made: the record's `via`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Via {
    /// connect(2) from a 64-bit program.
    Syscall,
    /// An io_uring connect request.
    IoUring,
    /// connect(2) or socketcall(2) from a 32-bit program.
    Compat,
    /// sendto(2) or sendmsg(2) with `MSG_FASTOPEN`.
    FastOpen,
    /// A socket of the kernel's own.
    Kernel,
    /// A user task by a path not recognized, or a value this daemon does
    /// not know.
    Other,
}

impl Via {
    /// Every value, in label order.
    pub const ALL: [Self; 6] = [
        Self::Syscall,
        Self::IoUring,
        Self::Compat,
        Self::FastOpen,
        Self::Kernel,
        Self::Other,
    ];

    /// The value a record carries.
    pub const fn of(code: u32) -> Self {
        match code {
            via::SYSCALL => Self::Syscall,
            via::IO_URING => Self::IoUring,
            via::COMPAT => Self::Compat,
            via::FASTOPEN => Self::FastOpen,
            via::KERNEL => Self::Kernel,
            _ => Self::Other,
        }
    }

    /// The name in JSON records, summaries and metric labels.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Syscall => "syscall",
            Self::IoUring => "io_uring",
            Self::Compat => "compat",
            Self::FastOpen => "fastopen",
            Self::Kernel => "kernel",
            Self::Other => "other",
        }
    }

    /// Its position in [`Self::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use connect_trace_common::abi::{SOCKADDR_MAX, record_kind};

    use super::*;

    /// A record to build tests on: pid 42 connecting to 127.0.0.1:80.
    pub(crate) fn sample_record() -> ConnectRecord {
        let mut addr = [0; SOCKADDR_MAX];
        addr[..2].copy_from_slice(&sockaddr::AF_INET.to_ne_bytes());
        addr[2..4].copy_from_slice(&80u16.to_be_bytes());
        addr[4..8].copy_from_slice(&[127, 0, 0, 1]);
        let mut comm = [0; COMM_LEN];
        comm[..4].copy_from_slice(b"curl");
        ConnectRecord {
            kind: record_kind::CONNECT,
            tgid: 42,
            tid: 43,
            uid: 1000,
            gid: 100,
            fd: 3,
            ret: -111,
            addrlen: 16,
            addr_flags: 0,
            flags: 0,
            start_ns: 1_000,
            latency_ns: 12_345,
            cgroup_id: 7,
            netns: 4_026_531_840,
            via: 0,
            handshake: Handshake::default(),
            comm,
            addr,
        }
    }

    /// The bytes of an ABI record.
    pub(crate) fn bytes_of<T: bytemuck::Pod>(record: &T) -> Vec<u8> {
        bytemuck::bytes_of(record).to_vec()
    }

    #[test]
    fn decodes_a_record() {
        let attempt = ConnectAttempt::decode(&bytes_of(&sample_record())).unwrap();
        assert_eq!(attempt.pid(), 42);
        assert_eq!(attempt.tid(), 43);
        assert_eq!(attempt.comm(), b"curl");
        assert_eq!(attempt.errno(), 111);
        assert_eq!(attempt.destination().port, Some(80));
    }

    #[test]
    fn rejects_short_records() {
        let bytes = bytes_of(&sample_record());
        assert_eq!(
            ConnectAttempt::decode(&bytes[..100]).unwrap_err(),
            DecodeError::TooShort {
                len: 100,
                need: 248
            }
        );
    }

    #[test]
    fn handshake_outcomes() {
        use connect_trace_common::abi::tcp_state;
        let mut record = sample_record();
        assert_eq!(ConnectAttempt::from_record(record).handshake_id(), None);
        record.handshake = Handshake {
            sock: 0xffff_8880_0000_1000,
            syn_ns: 1_000,
            outcome_ns: 0,
            outcome_state: 0,
            outcome_err: 0,
        };
        let attempt = ConnectAttempt::from_record(record);
        assert_eq!(
            attempt.handshake_id(),
            Some(HandshakeId {
                sock: 0xffff_8880_0000_1000,
                syn_ns: 1_000
            })
        );
        assert_eq!(attempt.handshake_outcome(), None);
        record.handshake.outcome_ns = 5_000;
        record.handshake.outcome_state = tcp_state::CLOSE;
        record.handshake.outcome_err = 111;
        let outcome = ConnectAttempt::from_record(record)
            .handshake_outcome()
            .unwrap();
        assert_eq!(outcome.end, HandshakeEnd::Closed(Some(111)));
        assert_eq!(outcome.handshake_ns, 4_000);
        assert_eq!(outcome.pid, 42);

        let raw = OutcomeRecord {
            kind: record_kind::OUTCOME,
            reserved: 0,
            pid_tgid: (7 << 32) | 8,
            handshake: Handshake {
                outcome_state: tcp_state::ESTABLISHED,
                ..record.handshake
            },
        };
        let outcome = HandshakeOutcome::decode(&bytes_of(&raw)).unwrap();
        assert_eq!(outcome.end, HandshakeEnd::Established);
        assert_eq!(outcome.pid, 7);
    }

    #[test]
    fn comm_without_nul_uses_all_sixteen_bytes() {
        let mut record = sample_record();
        record.comm = *b"0123456789abcdef";
        assert_eq!(
            ConnectAttempt::from_record(record).comm(),
            b"0123456789abcdef"
        );
    }

    #[test]
    fn restart_codes_read_as_eintr() {
        let mut record = sample_record();
        record.ret = -512;
        let attempt = ConnectAttempt::from_record(record);
        assert_eq!(attempt.ret(), -4);
        assert_eq!(attempt.errno(), 4);
    }
}

//! DNS over TCP: messages come with a two-byte length prefix, several may
//! share a segment and one may span several. The capture sees segments as
//! they reach the socket; this joins them back into messages, within
//! fixed bounds.

use std::{net::IpAddr, num::NonZeroUsize};

use lru::LruCache;

/// Streams followed at once. DNS over TCP is rare and short-lived (one or
/// a few answers per connection), so a small number suffices; the least
/// recently active is dropped for a new one, and counted.
pub const MAX_STREAMS: usize = 64;

/// The most bytes buffered for one stream. A message longer than this is
/// read from what was buffered (the records that fit) and the rest of the
/// stream is not followed.
pub const MAX_BUFFERED: usize = 16 * 1024;

/// One direction of a TCP connection, server to client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Flow {
    /// The receiving socket's network namespace.
    pub netns: u32,
    /// Server address.
    pub saddr: IpAddr,
    /// Server port.
    pub sport: u16,
    /// Client address.
    pub daddr: IpAddr,
    /// Client port.
    pub dport: u16,
}

struct Stream {
    next_seq: u32,
    buffered: Vec<u8>,
}

/// What became of segments that could not simply be joined, since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamCounters {
    /// Partial messages abandoned because a segment was missing, repeated
    /// or out of order (the kernel delivers in order; a gap means a
    /// segment was not captured).
    pub gaps: u64,
    /// Streams dropped to make room for new ones while holding a partial
    /// message.
    pub evicted: u64,
    /// Messages read only in part: longer than [`MAX_BUFFERED`], or a
    /// segment cut by the capture's length limit.
    pub cut: u64,
}

/// Joins DNS-over-TCP segments into messages.
pub struct TcpStreams {
    streams: LruCache<Flow, Stream>,
    counters: StreamCounters,
}

impl Default for TcpStreams {
    fn default() -> Self {
        Self::new()
    }
}

impl TcpStreams {
    /// No streams yet.
    pub fn new() -> Self {
        Self {
            streams: LruCache::new(NonZeroUsize::new(MAX_STREAMS).unwrap_or(NonZeroUsize::MIN)),
            counters: StreamCounters::default(),
        }
    }

    /// Takes one segment's payload (`seq` is its first byte's sequence
    /// number; `whole` is false when the capture cut it) and hands each
    /// message it completes to `on_message`, with `true` when the message
    /// is whole and `false` when only its beginning is known.
    pub fn segment(
        &mut self,
        flow: Flow,
        seq: u32,
        payload: &[u8],
        whole: bool,
        mut on_message: impl FnMut(&[u8], bool),
    ) {
        let mut buffered = match self.streams.pop(&flow) {
            Some(stream) if stream.next_seq == seq => stream.buffered,
            Some(_) => {
                self.counters.gaps += 1;
                Vec::new()
            }
            // A segment that starts a stream is taken to start a message.
            None => Vec::new(),
        };
        let room = MAX_BUFFERED.saturating_sub(buffered.len());
        let overflow = payload.len() > room;
        buffered.extend_from_slice(&payload[..payload.len().min(room)]);

        let mut start = 0;
        while let Some(prefix) = buffered.get(start..start + 2) {
            let len = usize::from(u16::from_be_bytes([prefix[0], prefix[1]]));
            let Some(message) = buffered.get(start + 2..start + 2 + len) else {
                break;
            };
            on_message(message, true);
            start += 2 + len;
        }
        buffered.drain(..start);

        if !whole || overflow {
            // The stream cannot be followed past this point.
            if let Some(partial) = buffered.get(2..).filter(|rest| !rest.is_empty()) {
                self.counters.cut += 1;
                on_message(partial, false);
            }
            return;
        }
        if buffered.is_empty() {
            return;
        }
        let stream = Stream {
            next_seq: seq.wrapping_add(payload.len() as u32),
            buffered,
        };
        if let Some((_, dropped)) = self.streams.push(flow, stream)
            && !dropped.buffered.is_empty()
        {
            self.counters.evicted += 1;
        }
    }

    /// Streams holding a partial message now.
    pub fn len(&self) -> usize {
        self.streams.len()
    }

    /// Whether no stream holds a partial message.
    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }

    /// What could not be joined, so far.
    pub fn counters(&self) -> StreamCounters {
        self.counters
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn flow(dport: u16) -> Flow {
        Flow {
            netns: 1,
            saddr: IpAddr::V4(Ipv4Addr::LOCALHOST),
            sport: 53,
            daddr: IpAddr::V4(Ipv4Addr::LOCALHOST),
            dport,
        }
    }

    fn framed(messages: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for message in messages {
            out.extend_from_slice(&(message.len() as u16).to_be_bytes());
            out.extend_from_slice(message);
        }
        out
    }

    fn feed(
        streams: &mut TcpStreams,
        dport: u16,
        seq: u32,
        payload: &[u8],
        whole: bool,
    ) -> Vec<(Vec<u8>, bool)> {
        let mut out = Vec::new();
        streams.segment(flow(dport), seq, payload, whole, |message, complete| {
            out.push((message.to_vec(), complete));
        });
        out
    }

    #[test]
    fn one_segment_two_messages() {
        let mut streams = TcpStreams::new();
        let got = feed(&mut streams, 1, 100, &framed(&[b"first", b"second"]), true);
        assert_eq!(
            got,
            vec![(b"first".to_vec(), true), (b"second".to_vec(), true)]
        );
        assert!(streams.is_empty());
    }

    #[test]
    fn a_message_across_segments() {
        let mut streams = TcpStreams::new();
        let bytes = framed(&[b"hello world"]);
        assert!(feed(&mut streams, 1, 100, &bytes[..1], true).is_empty());
        assert!(feed(&mut streams, 1, 101, &bytes[1..6], true).is_empty());
        assert_eq!(streams.len(), 1);
        let got = feed(&mut streams, 1, 106, &bytes[6..], true);
        assert_eq!(got, vec![(b"hello world".to_vec(), true)]);
        assert!(streams.is_empty());
    }

    #[test]
    fn a_gap_abandons_the_partial_message() {
        let mut streams = TcpStreams::new();
        let bytes = framed(&[b"hello world"]);
        feed(&mut streams, 1, 100, &bytes[..5], true);
        // The next segment is missing: this one starts elsewhere.
        let got = feed(&mut streams, 1, 200, &framed(&[b"next"]), true);
        assert_eq!(got, vec![(b"next".to_vec(), true)]);
        assert_eq!(streams.counters().gaps, 1);
    }

    #[test]
    fn a_cut_segment_yields_its_beginning() {
        let mut streams = TcpStreams::new();
        let bytes = framed(&[b"a long message"]);
        let got = feed(&mut streams, 1, 100, &bytes[..8], false);
        assert_eq!(got, vec![(b"a long".to_vec(), false)]);
        assert!(streams.is_empty());
        assert_eq!(streams.counters().cut, 1);
    }

    #[test]
    fn streams_are_bounded() {
        let mut streams = TcpStreams::new();
        for port in 0..(MAX_STREAMS as u16 + 10) {
            feed(&mut streams, port, 0, &[0, 10, 1, 2], true);
        }
        assert_eq!(streams.len(), MAX_STREAMS);
        assert_eq!(streams.counters().evicted, 10);
    }

    #[test]
    fn buffering_is_bounded() {
        let mut streams = TcpStreams::new();
        let mut seq = 0u32;
        let mut first = vec![0xff, 0xff];
        first.extend_from_slice(&[7; 1000]);
        let mut got = feed(&mut streams, 1, seq, &first, true);
        seq += first.len() as u32;
        while got.is_empty() {
            got = feed(&mut streams, 1, seq, &[7; 1000], true);
            seq += 1000;
        }
        assert_eq!(got.len(), 1);
        assert!(!got[0].1);
        assert_eq!(got[0].0.len(), MAX_BUFFERED - 2);
        assert!(streams.is_empty());
    }
}

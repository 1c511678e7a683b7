//! Reading DNS responses: which name did the program ask for, and which
//! addresses (with their TTLs) did the answer give it?
//!
//! Every DNS payload is hostile input: any packet from port 53 that reaches
//! a socket on the host is read here. Parsing uses NLnet Labs' `domain`
//! crate, which reads records lazily from the borrowed bytes (no copy, and
//! records before a cut are still usable), follows compression pointers
//! only backwards and at most 255 times per name, and rejects names longer
//! than 255 bytes. This module adds bounds of its own on how many records
//! it examines, how long a CNAME chain it follows and how many addresses
//! one response may name, so that the work per packet stays small
//! whatever the packet claims.
//!
//! Only addresses the answer ties to the question are taken: an A or AAAA
//! record counts when its owner is the question's name or a name the
//! question's CNAME chain leads to. Other records (glue, answers for
//! unrelated names) are ignored, as a stub resolver ignores them.

use std::net::IpAddr;

use domain::{
    base::{
        Message, ParsedName, Rtype,
        iana::{Class, Opcode, Rcode},
    },
    rdata::{A, Aaaa, Cname},
};
use thiserror::Error;

use super::name::ServerName;

/// The most answer records examined in one response. 2048 bytes of UDP
/// payload hold at most about 180 records; a long TCP answer is read up
/// to here.
pub const MAX_RECORDS: usize = 256;

/// The longest CNAME chain followed from the question (resolvers give up
/// sooner: glibc after 16 hops too).
pub const MAX_CHAIN: usize = 16;

/// The most addresses taken from one response.
pub const MAX_ADDRESSES: usize = 64;

/// How a response was delivered, which decides how its name is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Ordinary DNS (port 53, UDP or TCP): the name is the question's.
    Unicast,
    /// Multicast DNS (RFC 6762): responses carry no question, so each
    /// address is named by its own record's owner.
    Multicast,
}

/// One address an answer gave for a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedAddress {
    /// The name the program asked for (the first name of the CNAME chain).
    pub name: ServerName,
    /// The address.
    pub addr: IpAddr,
    /// Seconds the answer may be used: the least TTL along the chain.
    pub ttl: u32,
}

/// What a response says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answer {
    /// The addresses it gives, with their names.
    pub addresses: Vec<NamedAddress>,
    /// Some records could not be read (the message was cut, by the sender
    /// or by the capture's length limit, or is malformed after a point);
    /// the addresses before that point are kept.
    pub incomplete: bool,
    /// Records or addresses beyond [`MAX_RECORDS`] / [`MAX_ADDRESSES`] were
    /// ignored.
    pub over_limit: bool,
}

/// Why a payload gave no answer at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ParseError {
    /// Shorter than a DNS header.
    #[error("shorter than a DNS header")]
    TooShort,
    /// A query, not a response.
    #[error("not a response")]
    NotResponse,
    /// Not a standard query's response (NOTIFY, UPDATE, ...).
    #[error("not a response to a standard query")]
    NotQuery,
    /// A unicast response without exactly one question.
    #[error("a response without exactly one question")]
    QuestionCount,
    /// The question could not be read.
    #[error("the question is malformed")]
    BadQuestion,
}

/// Reads one DNS message (without the TCP length prefix).
///
/// Never panics, whatever the bytes; its work is bounded by the message
/// length and the limits above.
pub fn parse_response(payload: &[u8], transport: Transport) -> Result<Answer, ParseError> {
    let message = Message::from_octets(payload).map_err(|_| ParseError::TooShort)?;
    let header = message.header();
    if !header.qr() {
        return Err(ParseError::NotResponse);
    }
    if header.opcode() != Opcode::QUERY {
        return Err(ParseError::NotQuery);
    }
    match transport {
        Transport::Unicast => unicast(&message),
        Transport::Multicast => Ok(multicast(&message)),
    }
}

/// A name borrowed from the message.
type Name<'a> = ParsedName<&'a [u8]>;

/// `owner CNAME target`.
struct Alias<'a> {
    owner: Name<'a>,
    target: Name<'a>,
    ttl: u32,
}

/// `owner A/AAAA addr`.
struct Address<'a> {
    owner: Name<'a>,
    addr: IpAddr,
    ttl: u32,
}

/// The records of the answer section that can matter, read up to the
/// first one that cannot be read.
struct Records<'a> {
    aliases: Vec<Alias<'a>>,
    addresses: Vec<Address<'a>>,
    incomplete: bool,
    over_limit: bool,
}

/// Reads the answer section; `class_ok` says which record classes count.
fn answer_records<'a>(message: &'a Message<&'a [u8]>, class_ok: fn(Class) -> bool) -> Records<'a> {
    let mut records = Records {
        aliases: Vec::new(),
        addresses: Vec::new(),
        incomplete: false,
        over_limit: false,
    };
    let section = match message.answer() {
        Ok(section) => section,
        Err(_) => {
            records.incomplete = true;
            return records;
        }
    };
    for (index, record) in section.enumerate() {
        if index == MAX_RECORDS {
            records.over_limit = true;
            break;
        }
        let Ok(record) = record else {
            records.incomplete = true;
            break;
        };
        if !class_ok(record.class()) {
            continue;
        }
        let ttl = record.ttl().as_secs();
        let read = match record.rtype() {
            Rtype::A => record.to_record::<A>().map(|record| {
                if let Some(record) = record {
                    let (owner, addr) = (*record.owner(), IpAddr::V4(record.data().addr()));
                    records.addresses.push(Address { owner, addr, ttl });
                }
            }),
            Rtype::AAAA => record.to_record::<Aaaa>().map(|record| {
                if let Some(record) = record {
                    let (owner, addr) = (*record.owner(), IpAddr::V6(record.data().addr()));
                    records.addresses.push(Address { owner, addr, ttl });
                }
            }),
            Rtype::CNAME => record.to_record::<Cname<Name<'_>>>().map(|record| {
                if let Some(record) = record {
                    let (owner, target) = (*record.owner(), *record.data().cname());
                    records.aliases.push(Alias { owner, target, ttl });
                }
            }),
            _ => Ok(()),
        };
        if read.is_err() {
            records.incomplete = true;
            break;
        }
    }
    records
}

fn unicast(message: &Message<&[u8]>) -> Result<Answer, ParseError> {
    if message.header_counts().qdcount() != 1 {
        return Err(ParseError::QuestionCount);
    }
    let question = message.first_question().ok_or(ParseError::BadQuestion)?;
    if question.qclass() != Class::IN {
        return Ok(Answer::default());
    }
    let qname = *question.qname();
    let Some(name) = server_name(&qname) else {
        return Ok(Answer::default());
    };
    if message.header().rcode() != Rcode::NOERROR {
        return Ok(Answer::default());
    }
    let records = answer_records(message, |class| class == Class::IN);

    // The chain from the question: each name with the least TTL on the way.
    let mut chain = vec![(qname, u32::MAX)];
    while chain.len() <= MAX_CHAIN {
        let Some(&(current, ttl)) = chain.last() else {
            break;
        };
        let Some(alias) = records.aliases.iter().find(|alias| alias.owner == current) else {
            break;
        };
        if chain.iter().any(|(seen, _)| *seen == alias.target) {
            break;
        }
        chain.push((alias.target, ttl.min(alias.ttl)));
    }

    let mut answer = Answer {
        addresses: Vec::new(),
        incomplete: records.incomplete,
        over_limit: records.over_limit,
    };
    for address in &records.addresses {
        let Some((_, chain_ttl)) = chain.iter().find(|(name, _)| *name == address.owner) else {
            continue;
        };
        if answer.addresses.len() == MAX_ADDRESSES {
            answer.over_limit = true;
            break;
        }
        answer.addresses.push(NamedAddress {
            name: name.clone(),
            addr: address.addr,
            ttl: address.ttl.min(*chain_ttl),
        });
    }
    Ok(answer)
}

/// Multicast DNS: every A/AAAA record names itself. A TTL of 0 is a
/// "goodbye" (the address is going away), not an answer.
fn multicast(message: &Message<&[u8]>) -> Answer {
    // The top bit of an mDNS record's class is the cache-flush flag.
    let records = answer_records(message, |class| class.to_int() & 0x7fff == 1);
    let mut answer = Answer {
        addresses: Vec::new(),
        incomplete: records.incomplete,
        over_limit: records.over_limit,
    };
    for address in &records.addresses {
        if address.ttl == 0 {
            continue;
        }
        let Some(name) = server_name(&address.owner) else {
            continue;
        };
        if answer.addresses.len() == MAX_ADDRESSES {
            answer.over_limit = true;
            break;
        }
        answer.addresses.push(NamedAddress {
            name,
            addr: address.addr,
            ttl: address.ttl,
        });
    }
    answer
}

fn server_name(name: &Name<'_>) -> Option<ServerName> {
    ServerName::from_labels(name.iter().map(|label| label.as_slice()))
}

#[cfg(test)]
mod tests {
    use std::{
        net::{Ipv4Addr, Ipv6Addr},
        time::{Duration, Instant},
    };

    use proptest::prelude::*;

    use super::*;

    const TYPE_A: u16 = 1;
    const TYPE_CNAME: u16 = 5;
    const TYPE_AAAA: u16 = 28;

    fn wire(labels: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for label in labels {
            out.push(label.len() as u8);
            out.extend_from_slice(label);
        }
        out.push(0);
        out
    }

    fn text(name: &str) -> Vec<u8> {
        let labels: Vec<&[u8]> = name.split('.').map(str::as_bytes).collect();
        wire(&labels)
    }

    /// A response: header flags, question (wire name, A), then records
    /// (owner in wire form or a pointer, type, TTL, data).
    fn build(flags: u16, qname: &[u8], records: &[(Vec<u8>, u16, u32, Vec<u8>)]) -> Vec<u8> {
        let mut out = vec![0x12, 0x34];
        for field in [flags, 1, records.len() as u16, 0, 0] {
            out.extend_from_slice(&field.to_be_bytes());
        }
        out.extend_from_slice(qname);
        out.extend_from_slice(&[0, 1, 0, 1]);
        for (owner, rtype, ttl, data) in records {
            out.extend_from_slice(owner);
            out.extend_from_slice(&rtype.to_be_bytes());
            out.extend_from_slice(&[0, 1]);
            out.extend_from_slice(&ttl.to_be_bytes());
            out.extend_from_slice(&(data.len() as u16).to_be_bytes());
            out.extend_from_slice(data);
        }
        out
    }

    const QNAME: [u8; 2] = [0xc0, 12];

    /// A realistic answer: a two-step CNAME chain, two A and one AAAA.
    fn sample() -> Vec<u8> {
        build(
            0x8180,
            &text("www.example.test"),
            &[
                (QNAME.to_vec(), TYPE_CNAME, 300, text("edge.cdn.test")),
                (text("edge.cdn.test"), TYPE_CNAME, 60, text("n1.cdn.test")),
                (text("n1.cdn.test"), TYPE_A, 20, vec![192, 0, 2, 1]),
                (text("n1.cdn.test"), TYPE_A, 600, vec![192, 0, 2, 2]),
                (
                    text("n1.cdn.test"),
                    TYPE_AAAA,
                    30,
                    Ipv6Addr::LOCALHOST.octets().to_vec(),
                ),
            ],
        )
    }

    fn pairs(answer: &Answer) -> Vec<(String, IpAddr, u32)> {
        answer
            .addresses
            .iter()
            .map(|named| (named.name.as_str().to_owned(), named.addr, named.ttl))
            .collect()
    }

    #[test]
    fn a_cname_chain_names_every_address_by_the_question() {
        let answer = parse_response(&sample(), Transport::Unicast).unwrap();
        let www = "www.example.test".to_owned();
        assert_eq!(
            pairs(&answer),
            vec![
                (www.clone(), IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 20),
                // The chain's least TTL (60) bounds a longer record TTL.
                (www.clone(), IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)), 60),
                (www, IpAddr::V6(Ipv6Addr::LOCALHOST), 30),
            ]
        );
        assert!(!answer.incomplete && !answer.over_limit);
    }

    #[test]
    fn a_cut_message_keeps_the_records_before_the_cut() {
        let bytes = sample();
        let answer = parse_response(&bytes[..bytes.len() - 5], Transport::Unicast).unwrap();
        assert_eq!(answer.addresses.len(), 2);
        assert!(answer.incomplete);
    }

    #[test]
    fn errors_and_queries_give_nothing() {
        let mut query = sample();
        query[2] &= 0x7f;
        assert_eq!(
            parse_response(&query, Transport::Unicast),
            Err(ParseError::NotResponse)
        );
        let mut nxdomain = sample();
        nxdomain[3] = 0x83;
        assert_eq!(
            parse_response(&nxdomain, Transport::Unicast),
            Ok(Answer::default())
        );
        let mut notify = sample();
        notify[2] = 0x80 | (4 << 3);
        assert_eq!(
            parse_response(&notify, Transport::Unicast),
            Err(ParseError::NotQuery)
        );
        assert_eq!(
            parse_response(&[0; 11], Transport::Unicast),
            Err(ParseError::TooShort)
        );
        let mut no_question = sample();
        no_question[5] = 0;
        assert_eq!(
            parse_response(&no_question, Transport::Unicast),
            Err(ParseError::QuestionCount)
        );
    }

    #[test]
    fn multicast_answers_name_themselves() {
        let mut bytes = vec![0, 0, 0x84, 0, 0, 0, 0, 2, 0, 0, 0, 0];
        for (owner, ttl, last) in [("printer.local", 120u32, 9u8), ("gone.local", 0, 10)] {
            bytes.extend_from_slice(&text(owner));
            // Class IN with the cache-flush bit.
            bytes.extend_from_slice(&[0, 1, 0x80, 1]);
            bytes.extend_from_slice(&ttl.to_be_bytes());
            bytes.extend_from_slice(&[0, 4, 192, 0, 2, last]);
        }
        let answer = parse_response(&bytes, Transport::Multicast).unwrap();
        assert_eq!(
            pairs(&answer),
            vec![(
                "printer.local".to_owned(),
                IpAddr::V4(Ipv4Addr::new(192, 0, 2, 9)),
                120
            )]
        );
        // Without a question, ordinary DNS takes nothing from it.
        assert_eq!(
            parse_response(&bytes, Transport::Unicast),
            Err(ParseError::QuestionCount)
        );
    }

    #[test]
    fn addresses_per_response_are_bounded() {
        let records: Vec<_> = (0..200u8)
            .map(|i| (QNAME.to_vec(), TYPE_A, 300, vec![10, 0, 0, i]))
            .collect();
        let bytes = build(0x8180, &text("many.test"), &records);
        let answer = parse_response(&bytes, Transport::Unicast).unwrap();
        assert_eq!(answer.addresses.len(), MAX_ADDRESSES);
        assert!(answer.over_limit);
    }

    /// What every parse result must satisfy, whatever the input.
    fn check_valid(result: &Result<Answer, ParseError>) {
        let Ok(answer) = result else {
            return;
        };
        assert!(answer.addresses.len() <= MAX_ADDRESSES);
        for named in &answer.addresses {
            let bytes = named.name.as_bytes();
            assert!(!bytes.is_empty() && bytes.len() <= super::super::name::MAX_NAME_BYTES);
            assert!(!bytes.iter().any(u8::is_ascii_uppercase));
            assert_eq!(named.name.as_str(), String::from_utf8_lossy(bytes));
            assert_eq!(
                named.name.non_utf8_bytes().is_some(),
                std::str::from_utf8(bytes).is_err()
            );
            // The text splits back into the labels: none empty, none long.
            let labels = split_labels(bytes);
            assert!(
                labels.iter().all(|label| (1..=63).contains(&label.len())),
                "{labels:?}"
            );
        }
    }

    /// Undoes the presentation form: splits at unescaped dots and removes
    /// the escaping backslashes.
    fn split_labels(bytes: &[u8]) -> Vec<Vec<u8>> {
        let mut labels = vec![Vec::new()];
        let mut escaped = false;
        for &byte in bytes {
            match (escaped, byte) {
                (false, b'\\') => escaped = true,
                (false, b'.') => labels.push(Vec::new()),
                _ => {
                    escaped = false;
                    labels.last_mut().unwrap().push(byte);
                }
            }
        }
        assert!(!escaped, "a dangling escape");
        labels
    }

    /// CPU time of this thread: unlike wall-clock time, it does not grow
    /// when a busy machine preempts the test.
    fn thread_cpu_time() -> Duration {
        let mut now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: writes one timespec, which `now` is.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
        assert_eq!(rc, 0);
        Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
    }

    /// Parses under a CPU time limit: a parse is bounded work, far below
    /// this even in a debug build.
    fn parse_timed(bytes: &[u8]) -> Result<Answer, ParseError> {
        let start = thread_cpu_time();
        let result = parse_response(bytes, Transport::Unicast);
        let multicast = parse_response(bytes, Transport::Multicast);
        let spent = thread_cpu_time() - start;
        assert!(spent < Duration::from_millis(50), "took {spent:?} of CPU");
        check_valid(&multicast);
        result
    }

    /// One edit to a valid message.
    #[derive(Debug, Clone)]
    enum Mutation {
        Set(usize, u8),
        Truncate(usize),
        Insert(usize, Vec<u8>),
        Remove(usize, usize),
        /// A compression pointer written somewhere.
        Pointer(usize, u16),
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        prop_oneof![
            4 => (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Set(at, byte)),
            1 => any::<usize>().prop_map(Mutation::Truncate),
            1 => (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..40))
                .prop_map(|(at, bytes)| Mutation::Insert(at, bytes)),
            1 => (any::<usize>(), 1usize..20).prop_map(|(at, len)| Mutation::Remove(at, len)),
            2 => (any::<usize>(), any::<u16>()).prop_map(|(at, to)| Mutation::Pointer(at, to)),
        ]
    }

    fn apply(bytes: &mut Vec<u8>, mutation: &Mutation) {
        let len = bytes.len().max(1);
        match mutation {
            Mutation::Set(at, byte) => {
                if let Some(slot) = bytes.get_mut(at % len) {
                    *slot = *byte;
                }
            }
            Mutation::Truncate(at) => bytes.truncate(at % len),
            Mutation::Insert(at, new) => {
                let at = (at % len).min(bytes.len());
                bytes.splice(at..at, new.iter().copied());
            }
            Mutation::Remove(at, count) => {
                let at = (at % len).min(bytes.len());
                let end = (at + count).min(bytes.len());
                bytes.drain(at..end);
            }
            Mutation::Pointer(at, to) => {
                let at = at % len;
                let pointer = (0xc000 | (to & 0x3fff)).to_be_bytes();
                for (offset, byte) in pointer.iter().enumerate() {
                    if let Some(slot) = bytes.get_mut(at + offset) {
                        *slot = *byte;
                    }
                }
            }
        }
    }

    /// A label of any bytes, 1 to 63 long.
    fn label() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 1..=63)
    }

    /// The daemon's cost per DNS response, for docs/performance.md:
    /// `cargo +1.99.1 test --release -p connect-trace --lib parse_cost --
    /// --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement for the docs, not a check"]
    fn parse_cost() {
        const PARSES: u32 = 200_000;
        let bytes = sample();
        let start = Instant::now();
        let mut addresses = 0;
        for _ in 0..PARSES {
            let answer = parse_response(std::hint::black_box(&bytes), Transport::Unicast);
            addresses += answer.map(|answer| answer.addresses.len()).unwrap_or(0);
        }
        let ns = start.elapsed().as_nanos() as f64 / f64::from(PARSES);
        println!(
            "{ns:.0} ns per response ({} bytes, 2 CNAMEs, 3 addresses; {addresses})",
            bytes.len()
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            check_valid(&parse_timed(&bytes));
        }

        #[test]
        fn random_bytes_behind_a_response_header_never_panic(
            body in proptest::collection::vec(any::<u8>(), 0..600),
            counts in any::<[u16; 4]>(),
        ) {
            let mut bytes = vec![0, 0, 0x81, 0x80];
            for count in counts {
                bytes.extend_from_slice(&count.to_be_bytes());
            }
            bytes.extend_from_slice(&body);
            check_valid(&parse_timed(&bytes));
        }

        #[test]
        fn mutated_answers_never_panic(
            mutations in proptest::collection::vec(mutation(), 1..8),
        ) {
            let mut bytes = sample();
            for mutation in &mutations {
                apply(&mut bytes, mutation);
            }
            check_valid(&parse_timed(&bytes));
        }

        #[test]
        fn any_label_bytes_come_back_escaped(
            labels in proptest::collection::vec(label(), 1..4),
            last in any::<u8>(),
        ) {
            let refs: Vec<&[u8]> = labels.iter().map(Vec::as_slice).collect();
            let qname = wire(&refs);
            prop_assume!(qname.len() <= 255);
            let bytes = build(0x8180, &qname, &[(QNAME.to_vec(), TYPE_A, 60, vec![10, 1, 2, last])]);
            let answer = parse_timed(&bytes).unwrap();
            prop_assert_eq!(answer.addresses.len(), 1);
            let expected: Vec<Vec<u8>> = labels.iter().map(|label| label.to_ascii_lowercase()).collect();
            prop_assert_eq!(split_labels(answer.addresses[0].name.as_bytes()), expected);
            prop_assert_eq!(answer.addresses[0].addr, IpAddr::V4(Ipv4Addr::new(10, 1, 2, last)));
        }
    }
}

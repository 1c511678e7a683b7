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

/// The records of the answer section that can matter, read up to the
/// first one that cannot be read.
struct Records<'a> {
    cnames: Vec<(ParsedName<&'a [u8]>, ParsedName<&'a [u8]>, u32)>,
    addresses: Vec<(ParsedName<&'a [u8]>, IpAddr, u32)>,
    incomplete: bool,
    over_limit: bool,
}

/// Reads the answer section; `class_ok` says which record classes count.
fn answer_records<'a>(message: &'a Message<&'a [u8]>, class_ok: fn(Class) -> bool) -> Records<'a> {
    let mut records = Records {
        cnames: Vec::new(),
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
                    let addr = IpAddr::V4(record.data().addr());
                    records.addresses.push((*record.owner(), addr, ttl));
                }
            }),
            Rtype::AAAA => record.to_record::<Aaaa>().map(|record| {
                if let Some(record) = record {
                    let addr = IpAddr::V6(record.data().addr());
                    records.addresses.push((*record.owner(), addr, ttl));
                }
            }),
            Rtype::CNAME => record
                .to_record::<Cname<ParsedName<&[u8]>>>()
                .map(|record| {
                    if let Some(record) = record {
                        let target = *record.data().cname();
                        records.cnames.push((*record.owner(), target, ttl));
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
        let Some((_, target, cname_ttl)) = records
            .cnames
            .iter()
            .find(|(owner, _, _)| *owner == current)
        else {
            break;
        };
        if chain.iter().any(|(seen, _)| seen == target) {
            break;
        }
        chain.push((*target, ttl.min(*cname_ttl)));
    }

    let mut answer = Answer {
        addresses: Vec::new(),
        incomplete: records.incomplete,
        over_limit: records.over_limit,
    };
    for (owner, addr, ttl) in &records.addresses {
        let Some((_, chain_ttl)) = chain.iter().find(|(name, _)| name == owner) else {
            continue;
        };
        if answer.addresses.len() == MAX_ADDRESSES {
            answer.over_limit = true;
            break;
        }
        answer.addresses.push(NamedAddress {
            name: name.clone(),
            addr: *addr,
            ttl: (*ttl).min(*chain_ttl),
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
    for (owner, addr, ttl) in &records.addresses {
        if *ttl == 0 {
            continue;
        }
        let Some(name) = server_name(owner) else {
            continue;
        };
        if answer.addresses.len() == MAX_ADDRESSES {
            answer.over_limit = true;
            break;
        }
        answer.addresses.push(NamedAddress {
            name,
            addr: *addr,
            ttl: *ttl,
        });
    }
    answer
}

fn server_name(name: &ParsedName<&[u8]>) -> Option<ServerName> {
    ServerName::from_labels(name.iter().map(|label| label.as_slice()))
}

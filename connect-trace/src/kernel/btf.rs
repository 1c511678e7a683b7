//! Just enough of a BTF reader to find where a member of a kernel struct
//! lives on the running kernel.
//!
//! Rust eBPF programs cannot carry CO-RE relocations yet, so the kernel
//! struct members the programs read (listed in
//! [`super::requirements::BTF_MEMBERS`]) are located here, in
//! `/sys/kernel/btf/vmlinux`, at load time and passed to the programs in
//! their configuration. Nothing about this kernel's layout is compiled in.
//!
//! Why not a crate: aya-obj parses BTF but keeps member offsets private,
//! and btf-rs is LGPL-licensed; finding a member offset takes this much.
//! BTF records have kind-specific lengths, so a record of a kind newer than
//! this reader cannot be stepped over: the index then stops there, and the
//! types before it (which include the old core structs) stay usable.

use std::{fs, io, path::Path};

use thiserror::Error;

/// Where the running kernel describes its own types.
pub const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

const MAGIC: u16 = 0xEB9F;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;

/// Why a field could not be located.
#[derive(Debug, Error)]
pub enum BtfError {
    /// The BTF file could not be read.
    #[error("reading kernel BTF from {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: io::Error,
    },
    /// The data is not BTF this reader understands.
    #[error("kernel BTF is malformed: {0}")]
    Malformed(&'static str),
    /// The struct or field does not exist.
    #[error("kernel BTF has no field {field} in struct {name}{}", .unread.map(|(kind, id)| format!(" (types from id {id} on were not read: kind {kind} is newer than this reader)")).unwrap_or_default())]
    NotFound {
        /// The struct.
        name: String,
        /// The field.
        field: String,
        /// The kind and id of the first type record this reader could not
        /// step over, if any: the struct may be beyond it.
        unread: Option<(u32, usize)>,
    },
}

/// Parsed BTF type and string sections.
pub struct Btf {
    data: Vec<u8>,
    strings: std::ops::Range<usize>,
    /// Offsets (into `data`) of every type record read; index = type id - 1.
    index: Vec<usize>,
    /// The kind and id of the first record of an unknown kind, where the
    /// index stops.
    unread: Option<(u32, usize)>,
}

/// One struct or union member.
struct Member {
    name_off: u32,
    type_id: u32,
    bit_offset: u32,
}

impl Btf {
    /// Reads BTF from a file such as [`VMLINUX`].
    pub fn from_file(path: &Path) -> Result<Self, BtfError> {
        let data = fs::read(path).map_err(|source| BtfError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(data)
    }

    /// Parses raw BTF (native endianness).
    pub fn parse(data: Vec<u8>) -> Result<Self, BtfError> {
        let u32_at = |at: usize| read_u32(&data, at).ok_or(BtfError::Malformed("short header"));
        let magic = data
            .get(0..2)
            .map(|bytes| u16::from_ne_bytes([bytes[0], bytes[1]]))
            .ok_or(BtfError::Malformed("short header"))?;
        if magic != MAGIC {
            return Err(BtfError::Malformed("bad magic (or foreign endianness)"));
        }
        let header_len = u32_at(4)? as usize;
        let type_off = u32_at(8)? as usize;
        let type_len = u32_at(12)? as usize;
        let str_off = u32_at(16)? as usize;
        let str_len = u32_at(20)? as usize;
        let types = header_len + type_off..header_len + type_off + type_len;
        let strings = header_len + str_off..header_len + str_off + str_len;
        if types.end > data.len() || strings.end > data.len() {
            return Err(BtfError::Malformed("sections run past the end"));
        }
        let mut btf = Self {
            data,
            strings,
            index: Vec::new(),
            unread: None,
        };
        btf.build_index(types);
        Ok(btf)
    }

    /// The byte offset of `field` in `struct name`, looking through
    /// anonymous structs and unions.
    pub fn member_offset(&self, name: &str, field: &str) -> Result<u32, BtfError> {
        let not_found = || BtfError::NotFound {
            name: name.to_owned(),
            field: field.to_owned(),
            unread: self.unread,
        };
        let id = self
            .index
            .iter()
            .position(|at| self.kind(*at) == Some(KIND_STRUCT) && self.name(*at) == Some(name))
            .ok_or_else(not_found)?;
        self.find_member(&self.index, id, field, 0, 0)
            .map(|bits| bits / 8)
            .ok_or_else(not_found)
    }

    /// Indexes every type record in `types`, up to the first one of a kind
    /// this reader does not know.
    fn build_index(&mut self, types: std::ops::Range<usize>) {
        let mut at = types.start;
        while at + 12 <= types.end {
            let Some(trailing) = self.trailing_len(at) else {
                self.unread = Some((self.kind(at).unwrap_or(0), self.index.len() + 1));
                return;
            };
            self.index.push(at);
            at += 12 + trailing;
        }
    }

    fn find_member(
        &self,
        index: &[usize],
        id: usize,
        field: &str,
        base_bits: u32,
        depth: u32,
    ) -> Option<u32> {
        // Anonymous members nest only a few levels in practice; the bound
        // keeps a malformed file from recursing forever.
        if depth > 8 {
            return None;
        }
        let at = *index.get(id)?;
        for member in self.members(at) {
            let bits = base_bits + member.bit_offset;
            let name = self.string(member.name_off)?;
            if name == field {
                return Some(bits);
            }
            if name.is_empty() {
                let inner = index.get(member.type_id.checked_sub(1)? as usize)?;
                if matches!(self.kind(*inner), Some(KIND_STRUCT | KIND_UNION)) {
                    let found = self.find_member(
                        index,
                        member.type_id as usize - 1,
                        field,
                        bits,
                        depth + 1,
                    );
                    if found.is_some() {
                        return found;
                    }
                }
            }
        }
        None
    }

    fn members(&self, at: usize) -> impl Iterator<Item = Member> + '_ {
        let info = read_u32(&self.data, at + 4).unwrap_or(0);
        let kind_flag = info >> 31 == 1;
        let count = if matches!(self.kind(at), Some(KIND_STRUCT | KIND_UNION)) {
            info & 0xffff
        } else {
            0
        };
        (0..count as usize).filter_map(move |i| {
            let m = at + 12 + i * 12;
            let offset = read_u32(&self.data, m + 8)?;
            Some(Member {
                name_off: read_u32(&self.data, m)?,
                type_id: read_u32(&self.data, m + 4)?,
                // With kind_flag, the top 8 bits hold a bitfield size.
                bit_offset: if kind_flag {
                    offset & 0x00ff_ffff
                } else {
                    offset
                },
            })
        })
    }

    fn kind(&self, at: usize) -> Option<u32> {
        read_u32(&self.data, at + 4).map(|info| (info >> 24) & 0x1f)
    }

    fn name(&self, at: usize) -> Option<&str> {
        self.string(read_u32(&self.data, at)?)
    }

    fn string(&self, offset: u32) -> Option<&str> {
        let start = self.strings.start + offset as usize;
        let bytes = self.data.get(start..self.strings.end)?;
        let end = bytes.iter().position(|&byte| byte == 0)?;
        std::str::from_utf8(&bytes[..end]).ok()
    }

    /// Bytes after the 12-byte common header, by kind.
    fn trailing_len(&self, at: usize) -> Option<usize> {
        let info = read_u32(&self.data, at + 4)?;
        let vlen = (info & 0xffff) as usize;
        Some(match (info >> 24) & 0x1f {
            // int, var, decl_tag
            1 | 14 | 17 => 4,
            // ptr, fwd, typedef, volatile, const, restrict, func, float, type_tag
            2 | 7 | 8 | 9 | 10 | 11 | 12 | 16 | 18 => 0,
            // array
            3 => 12,
            // struct, union, datasec, enum64
            4 | 5 | 15 | 19 => vlen * 12,
            // enum, func_proto
            6 | 13 => vlen * 8,
            _ => return None,
        })
    }
}

fn read_u32(data: &[u8], at: usize) -> Option<u32> {
    data.get(at..at + 4)?
        .try_into()
        .ok()
        .map(u32::from_ne_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny BTF blob: `int`, then `struct sock { int a; union { int b; };
    /// int sk_err; }` with the union anonymous, at byte offsets 0, 4, 8.
    fn sample() -> Vec<u8> {
        let strings = b"\0int\0sock\0a\0b\0sk_err\0";
        let name = |s: &str| {
            let pos = strings
                .windows(s.len() + 1)
                .position(|w| &w[..s.len()] == s.as_bytes() && w[s.len()] == 0);
            pos.map(|p| p as u32).unwrap()
        };
        let mut types = Vec::new();
        let mut push = |words: &[u32]| {
            for word in words {
                types.extend(word.to_ne_bytes());
            }
        };
        // [1] int: name, info(kind 1), size 4, int data
        push(&[name("int"), 1 << 24, 4, 32]);
        // [2] anonymous union { int b; }
        push(&[0, (KIND_UNION << 24) | 1, 4, name("b"), 1, 0]);
        // [3] struct sock { int a @0; union @32; int sk_err @64 }
        push(&[name("sock"), (KIND_STRUCT << 24) | 3, 12]);
        push(&[name("a"), 1, 0, 0, 2, 32, name("sk_err"), 1, 64]);
        let mut data = Vec::new();
        data.extend(MAGIC.to_ne_bytes());
        data.extend([1u8, 0]);
        for word in [
            24u32,
            0,
            types.len() as u32,
            types.len() as u32,
            strings.len() as u32,
        ] {
            data.extend(word.to_ne_bytes());
        }
        data.extend(types);
        data.extend(strings);
        data
    }

    #[test]
    fn finds_direct_and_nested_members() {
        let btf = Btf::parse(sample()).unwrap();
        assert_eq!(btf.member_offset("sock", "a").unwrap(), 0);
        assert_eq!(btf.member_offset("sock", "b").unwrap(), 4);
        assert_eq!(btf.member_offset("sock", "sk_err").unwrap(), 8);
        assert!(matches!(
            btf.member_offset("sock", "nope"),
            Err(BtfError::NotFound { .. })
        ));
        assert!(btf.member_offset("task", "a").is_err());
    }

    #[test]
    fn a_newer_kind_stops_the_index_but_keeps_what_came_before() {
        let mut data = sample();
        // Append a record of kind 31, unknown to this reader, to the type
        // section (which ends where the strings begin).
        let type_len = u32::from_ne_bytes(data[12..16].try_into().unwrap());
        let end = 24 + type_len as usize;
        let record: Vec<u8> = [0u32, 31 << 24, 0]
            .iter()
            .flat_map(|word| word.to_ne_bytes())
            .collect();
        data.splice(end..end, record);
        let grown = type_len + 12;
        data[12..16].copy_from_slice(&grown.to_ne_bytes());
        data[16..20].copy_from_slice(&grown.to_ne_bytes());
        let btf = Btf::parse(data).unwrap();
        assert_eq!(btf.member_offset("sock", "sk_err").unwrap(), 8);
        let error = btf.member_offset("task_struct", "files").unwrap_err();
        assert!(error.to_string().contains("kind 31"), "{error}");
    }

    #[test]
    fn rejects_garbage() {
        assert!(Btf::parse(vec![1, 2, 3]).is_err());
        assert!(Btf::parse(vec![0; 64]).is_err());
        let mut truncated = sample();
        truncated.truncate(30);
        assert!(Btf::parse(truncated).is_err());
    }

    #[test]
    fn running_kernel_has_sock_sk_err() {
        let path = Path::new(VMLINUX);
        if !path.exists() {
            return;
        }
        let offset = Btf::from_file(path)
            .unwrap()
            .member_offset("sock", "sk_err")
            .unwrap();
        assert!(offset > 0 && offset < 4096, "{offset}");
    }
}

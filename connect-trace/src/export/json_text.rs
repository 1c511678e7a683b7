//! JSON values written straight into a byte buffer, byte for byte as
//! serde_json writes them (compact form), for the one line rendered per
//! event ([`super::json::JsonLines::write_attempt`]).
//!
//! serde_json reaches the same bytes through its `Serializer`: a call per
//! key, the key itself escaped byte by byte, a capacity check per piece.
//! Writing the record's constant text (keys, commas, quotes) as whole
//! slices and its numbers with `itoa` took the JSON Lines stage of the
//! daemon's thread from 1,300 to 1,800 ns per event to 730 to 810 ns
//! (`examples/pipeline_cost.rs unix`, alternating runs on the busy 2-core
//! bench machine, buffer reuse in `output` included); the tests hold it
//! to serde_json's output.

/// Appends `text` as a JSON string, quotes included, escaped as serde_json
/// escapes it: `"` and `\` with a backslash, the control characters
/// U+0000 to U+001F as `\b`, `\t`, `\n`, `\f`, `\r` or `\u00xx`, and
/// nothing else (U+007F and non-ASCII stay as they are).
pub(crate) fn string(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    escaped(out, text);
    out.push(b'"');
}

/// Appends `text` escaped as in [`string`], without the quotes.
pub(crate) fn escaped(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    // Most text needs no escape at all: one scan, one copy.
    let mut start = 0;
    for (index, &byte) in bytes.iter().enumerate() {
        if !needs_escape(byte) {
            continue;
        }
        out.extend_from_slice(&bytes[start..index]);
        match byte {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x08 => out.extend_from_slice(b"\\b"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            0x0c => out.extend_from_slice(b"\\f"),
            b'\r' => out.extend_from_slice(b"\\r"),
            control => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(control >> 4)]);
                out.push(HEX[usize::from(control & 0xf)]);
            }
        }
        start = index + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

const fn needs_escape(byte: u8) -> bool {
    byte < 0x20 || byte == b'"' || byte == b'\\'
}

/// Appends an integer.
pub(crate) fn number(out: &mut Vec<u8>, value: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

/// Appends an integer, or `null`.
pub(crate) fn optional_number(out: &mut Vec<u8>, value: Option<impl itoa::Integer>) {
    match value {
        Some(value) => number(out, value),
        None => null(out),
    }
}

/// Appends a string, or `null`.
pub(crate) fn optional_string(out: &mut Vec<u8>, text: Option<&str>) {
    match text {
        Some(text) => string(out, text),
        None => null(out),
    }
}

/// Appends one of our own names (an errno's, an outcome's, ...) as a JSON
/// string: they never need an escape, so they are copied without a scan.
pub(crate) fn name(out: &mut Vec<u8>, name: &'static str) {
    debug_assert!(!name.bytes().any(needs_escape), "{name:?} needs an escape");
    out.push(b'"');
    out.extend_from_slice(name.as_bytes());
    out.push(b'"');
}

/// Appends [`name`], or `null`.
pub(crate) fn optional_name(out: &mut Vec<u8>, name: Option<&'static str>) {
    match name {
        Some(known) => self::name(out, known),
        None => null(out),
    }
}

/// Appends `null`.
pub(crate) fn null(out: &mut Vec<u8>) {
    out.extend_from_slice(b"null");
}

/// Appends `true` or `false`.
pub(crate) fn boolean(out: &mut Vec<u8>, value: bool) {
    out.extend_from_slice(if value { b"true" } else { b"false" });
}

/// Appends an IPv4 address as `Ipv4Addr`'s `Display` writes it, without
/// going through `core::fmt`.
pub(crate) fn ipv4(out: &mut Vec<u8>, ip: std::net::Ipv4Addr) {
    let [a, b, c, d] = ip.octets();
    number(out, a);
    out.push(b'.');
    number(out, b);
    out.push(b'.');
    number(out, c);
    out.push(b'.');
    number(out, d);
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn as_string(write: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        write(&mut out);
        String::from_utf8(out).unwrap()
    }

    /// Every byte that needs an escape, and some that do not, at every
    /// position of strings of several lengths: escaped exactly where
    /// serde_json escapes.
    #[test]
    fn an_escape_is_found_at_any_position() {
        let bytes = (0u8..0x20).chain([b'"', b'\\', b' ', b'~', 0x7f]);
        for byte in bytes {
            for len in [7, 8, 9, 16, 23, 24, 25] {
                for at in 0..len {
                    let mut text = vec![b'a'; len];
                    text[at] = byte;
                    let text = String::from_utf8(text).unwrap();
                    let ours = as_string(|out| string(out, &text));
                    assert_eq!(ours, serde_json::to_string(&text).unwrap(), "{text:?}");
                }
            }
        }
    }

    #[test]
    fn every_escape_is_serde_jsons() {
        for code in 0..=0x80u32 {
            let text = char::from_u32(code).unwrap().to_string();
            assert_eq!(
                as_string(|out| string(out, &text)),
                serde_json::to_string(&text).unwrap(),
                "U+{code:04X}"
            );
        }
        let text = "a\"b\\c\n{\"x\":1}\u{1b}[31m\u{7f}é\u{fffd}";
        assert_eq!(
            as_string(|out| string(out, text)),
            serde_json::to_string(text).unwrap()
        );
    }

    #[test]
    fn numbers_and_literals() {
        assert_eq!(as_string(|out| number(out, -111i32)), "-111");
        assert_eq!(as_string(|out| number(out, u64::MAX)), u64::MAX.to_string());
        assert_eq!(as_string(|out| optional_number(out, None::<u32>)), "null");
        assert_eq!(as_string(|out| optional_string(out, Some("x"))), "\"x\"");
        assert_eq!(as_string(|out| boolean(out, false)), "false");
    }

    proptest! {
        #[test]
        fn strings_match_serde_json(text in any::<String>()) {
            prop_assert_eq!(
                as_string(|out| string(out, &text)),
                serde_json::to_string(&text).unwrap()
            );
        }

        #[test]
        fn ipv4_matches_display(octets in any::<[u8; 4]>()) {
            let ip = std::net::Ipv4Addr::from(octets);
            prop_assert_eq!(as_string(|out| ipv4(out, ip)), ip.to_string());
        }
    }
}

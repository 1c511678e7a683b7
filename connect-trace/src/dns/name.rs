//! The DNS name a program asked for, as it is reported (`server_name`).

use std::{fmt, str, sync::Arc};

/// A DNS name as reported in records: labels joined with `.`, without the
/// root's trailing dot, ASCII letters in lower case (DNS names compare
/// without case, RFC 4343).
///
/// A label may hold any byte. A `.` or `\` inside a label is escaped with
/// a backslash (`\.`, `\\`), as in zone files, so the dots of the text are
/// exactly the label boundaries. Every other byte is kept as it is: the
/// JSON writer escapes control bytes, and when the bytes are not valid
/// UTF-8, [`ServerName::as_str`] replaces each invalid sequence with U+FFFD
/// and [`ServerName::non_utf8_bytes`] keeps the exact bytes, the way
/// `comm` and `comm_hex` work (docs/json-schema.md, "Hostile bytes").
///
/// Cloning is cheap (one reference count), so a cache hit costs no copy.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ServerName(Arc<Inner>);

#[derive(PartialEq, Eq, Hash)]
struct Inner {
    text: Box<str>,
    /// The exact bytes, only when they are not valid UTF-8.
    bytes: Option<Box<[u8]>>,
}

/// The longest presentation form: a wire name has at most 255 bytes, and
/// escaping can double every byte inside a label.
pub const MAX_NAME_BYTES: usize = 512;

impl ServerName {
    /// Builds a name from its labels (wire bytes, without length octets),
    /// most specific first; the root's empty label may end the list. `None`
    /// for the root name itself, which names nothing a program connects to.
    pub fn from_labels<'a>(labels: impl IntoIterator<Item = &'a [u8]>) -> Option<Self> {
        let mut bytes = Vec::with_capacity(64);
        // On the wire only the root label is empty.
        for label in labels.into_iter().filter(|label| !label.is_empty()) {
            if !bytes.is_empty() {
                bytes.push(b'.');
            }
            for &byte in label {
                if byte == b'.' || byte == b'\\' {
                    bytes.push(b'\\');
                }
                bytes.push(byte.to_ascii_lowercase());
            }
            if bytes.len() > MAX_NAME_BYTES {
                return None;
            }
        }
        if bytes.is_empty() {
            return None;
        }
        Some(Self::from_presentation_bytes(bytes))
    }

    /// Wraps presentation bytes as built by [`ServerName::from_labels`].
    fn from_presentation_bytes(bytes: Vec<u8>) -> Self {
        let inner = match String::from_utf8(bytes) {
            Ok(text) => Inner {
                text: text.into_boxed_str(),
                bytes: None,
            },
            Err(error) => {
                let bytes = error.into_bytes();
                Inner {
                    text: String::from_utf8_lossy(&bytes).into(),
                    bytes: Some(bytes.into_boxed_slice()),
                }
            }
        };
        Self(Arc::new(inner))
    }

    /// A name given as text, such as `svc.example.test` (a trailing dot is
    /// dropped). For tests and configuration; names seen on the wire come
    /// through [`ServerName::from_labels`].
    pub fn from_text(text: &str) -> Option<Self> {
        let text = text.strip_suffix('.').unwrap_or(text);
        Self::from_labels(text.split('.').map(str::as_bytes))
    }

    /// The name as text: exact when its bytes are UTF-8, otherwise with
    /// U+FFFD for each invalid sequence (see
    /// [`ServerName::non_utf8_bytes`]).
    pub fn as_str(&self) -> &str {
        &self.0.text
    }

    /// The exact bytes of the name, only when they are not valid UTF-8
    /// (for a `server_name_hex` field).
    pub fn non_utf8_bytes(&self) -> Option<&[u8]> {
        self.0.bytes.as_deref()
    }

    /// The exact bytes of the name.
    pub fn as_bytes(&self) -> &[u8] {
        self.0
            .bytes
            .as_deref()
            .unwrap_or_else(|| self.0.text.as_bytes())
    }
}

impl fmt::Display for ServerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for ServerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.non_utf8_bytes() {
            None => write!(f, "{:?}", self.as_str()),
            Some(bytes) => write!(f, "{:?} (bytes {bytes:02x?})", self.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_labels_and_lowercases() {
        let name = ServerName::from_labels([&b"Svc"[..], b"Example", b"TEST"]).unwrap();
        assert_eq!(name.as_str(), "svc.example.test");
        assert_eq!(name.non_utf8_bytes(), None);
        assert_eq!(name.as_bytes(), b"svc.example.test");
    }

    #[test]
    fn root_is_no_name() {
        assert_eq!(ServerName::from_labels(std::iter::empty()), None);
        assert_eq!(ServerName::from_labels([&b""[..]]), None);
        let name = ServerName::from_labels([&b"a"[..], b"test", b""]).unwrap();
        assert_eq!(name.as_str(), "a.test");
    }

    #[test]
    fn dots_and_backslashes_inside_labels_are_escaped() {
        let name = ServerName::from_labels([&b"a.b"[..], b"c\\d", b"e"]).unwrap();
        assert_eq!(name.as_str(), r"a\.b.c\\d.e");
    }

    #[test]
    fn invalid_utf8_keeps_exact_bytes() {
        let name = ServerName::from_labels([&b"x\xffy"[..], b"test"]).unwrap();
        assert_eq!(name.as_str(), "x\u{fffd}y.test");
        assert_eq!(name.non_utf8_bytes(), Some(&b"x\xffy.test"[..]));
        assert_eq!(name.as_bytes(), b"x\xffy.test");
    }

    #[test]
    fn control_bytes_and_utf8_are_kept() {
        let name = ServerName::from_labels([&b"a\n\"b"[..], "café".as_bytes()]).unwrap();
        assert_eq!(name.as_str(), "a\n\"b.café");
        assert_eq!(name.non_utf8_bytes(), None);
        // The JSON writer escapes what would break a line.
        let json = serde_json::to_string(name.as_str()).unwrap();
        assert_eq!(json, r#""a\n\"b.café""#);
    }

    #[test]
    fn from_text_drops_the_root_dot() {
        assert_eq!(
            ServerName::from_text("Svc.Example.Test.").unwrap().as_str(),
            "svc.example.test"
        );
    }
}

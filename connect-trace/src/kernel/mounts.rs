//! Reading `/proc/self/mounts`: where tracefs and the cgroup hierarchies
//! are mounted.

use std::path::PathBuf;

/// The mount points of every `fstype` mount in a /proc/mounts text.
pub fn mount_points(mounts: &str, fstype: &str) -> Vec<PathBuf> {
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (_source, point, kind) = (fields.next()?, fields.next()?, fields.next()?);
            (kind == fstype).then(|| PathBuf::from(unescape_mount_field(point)))
        })
        .collect()
}

/// Undoes the octal escapes /proc/mounts uses for spaces, tabs, newlines and
/// backslashes (`\040` and so on).
fn unescape_mount_field(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = bytes
            .get(i + 1..i + 4)
            .filter(|_| bytes[i] == b'\\')
            .and_then(|digits| std::str::from_utf8(digits).ok())
            .and_then(|digits| u8::from_str_radix(digits, 8).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points_are_unescaped() {
        let mounts = "none /tmp/my\\040trace tracefs rw 0 0\nnone /a\\134b tracefs rw 0 0\n";
        assert_eq!(
            mount_points(mounts, "tracefs"),
            vec![PathBuf::from("/tmp/my trace"), PathBuf::from("/a\\b")]
        );
        assert!(mount_points(mounts, "cgroup2").is_empty());
        assert_eq!(unescape_mount_field("\\04"), "\\04");
    }
}

//! Turning facts into terminal text: escaping what traced programs chose,
//! fitting text to columns, and short numbers.

use std::borrow::Cow;

use connect_trace::live::snapshot::Counts;
use unicode_width::{UnicodeWidthChar as _, UnicodeWidthStr as _};

/// Text chosen by traced programs (process names, unix paths, container
/// names), made safe to draw: every control character (C0, DEL, C1) and
/// every bidirectional formatting character becomes a visible escape
/// (`\x1b`, `\u{202e}`), so no byte a program picked can move the cursor,
/// set the title or reorder what is shown. Everything else is kept.
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if !needs_escape(c) {
            out.push(c);
        } else if u32::from(c) <= 0xff {
            out.push_str(&format!("\\x{:02x}", u32::from(c)));
        } else {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        }
    }
    Cow::Owned(out)
}

fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` cut to at most `max` columns, keeping its start and its end with
/// `…` between: the port of a long address and the end of a long name stay
/// visible.
pub fn fit_middle(text: &str, max: usize) -> Cow<'_, str> {
    if text.width() <= max {
        return Cow::Borrowed(text);
    }
    if max == 0 {
        return Cow::Borrowed("");
    }
    let room = max - 1;
    let tail_room = room / 2;
    let head_room = room - tail_room;
    let head = take_columns(text.chars(), head_room);
    let mut tail: Vec<char> = take_columns(text.chars().rev(), tail_room)
        .chars()
        .collect();
    tail.reverse();
    let mut out = head;
    out.push('…');
    out.extend(tail);
    Cow::Owned(out)
}

/// `text` cut to at most `max` columns at its end, with `…`.
pub fn fit_end(text: &str, max: usize) -> Cow<'_, str> {
    if text.width() <= max {
        return Cow::Borrowed(text);
    }
    if max == 0 {
        return Cow::Borrowed("");
    }
    let mut out = take_columns(text.chars(), max - 1);
    out.push('…');
    Cow::Owned(out)
}

/// The longest prefix of `chars` that fits in `max` columns.
fn take_columns(chars: impl Iterator<Item = char>, max: usize) -> String {
    let mut used = 0;
    let mut out = String::new();
    for c in chars {
        let w = c.width().unwrap_or(0);
        if used + w > max {
            break;
        }
        used += w;
        out.push(c);
    }
    out
}

/// A count in at most 5 columns: `9999`, `12.3k`, `123k`, `1.2M`, `12G`.
pub fn count(n: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1_000_000_000, "G"), (1_000_000, "M"), (1_000, "k")];
    if n < 10_000 {
        return n.to_string();
    }
    for (size, unit) in UNITS {
        if n >= size {
            let value = n as f64 / size as f64;
            return if value < 99.95 {
                format!("{value:.1}{unit}")
            } else {
                format!("{value:.0}{unit}")
            };
        }
    }
    n.to_string()
}

/// A failure rate in at most 5 columns: `100%`, `35%`, `0.4%`, or `-`
/// when there was no attempt.
pub fn rate(counts: &Counts) -> String {
    if counts.attempts == 0 {
        return "-".to_owned();
    }
    let percent = counts.failure_rate * 100.0;
    if percent > 0.0 && percent < 9.95 {
        format!("{percent:.1}%")
    } else {
        format!("{percent:.0}%")
    }
}

/// A duration in nanoseconds, short: `850ns`, `88µs`, `1.2ms`, `3.0s`.
pub fn duration_ns(ns: u64) -> String {
    match ns {
        0..1_000 => format!("{ns}ns"),
        1_000..10_000 => format!("{:.1}µs", ns as f64 / 1e3),
        10_000..1_000_000 => format!("{}µs", ns / 1_000),
        1_000_000..10_000_000 => format!("{:.1}ms", ns as f64 / 1e6),
        10_000_000..1_000_000_000 => format!("{}ms", ns / 1_000_000),
        _ => format!("{:.1}s", ns as f64 / 1e9),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn width(text: &str) -> usize {
        text.width()
    }

    #[test]
    fn control_characters_become_visible_escapes() {
        assert_eq!(printable("curl"), "curl");
        assert!(matches!(printable("curl"), Cow::Borrowed(_)));
        assert_eq!(printable("\x1b]2;pwned\x07"), "\\x1b]2;pwned\\x07");
        assert_eq!(printable("a\nb\tc\rd\x7f"), "a\\x0ab\\x09c\\x0dd\\x7f");
        // C1 controls: U+009B is a one-character CSI on some terminals.
        assert_eq!(printable("\u{9b}31m"), "\\x9b31m");
        // Bidi overrides would reorder the rest of the line.
        assert_eq!(printable("abc\u{202e}fed"), "abc\\u{202e}fed");
        assert_eq!(printable("é日本"), "é日本");
        for hostile in ["\x1b[2J", "\u{9b}2J", "\x00\x01", "x\u{2066}y"] {
            let safe = printable(hostile);
            assert!(!safe.chars().any(needs_escape), "{safe:?}");
            assert!(safe.is_ascii() || hostile.contains('\u{2066}'));
        }
    }

    #[test]
    fn long_text_keeps_both_ends() {
        assert_eq!(fit_middle("127.0.0.1:9", 20), "127.0.0.1:9");
        let long = "[2001:db8:1234:5678:9abc:def0:1234:5678]:443";
        let fitted = fit_middle(long, 20);
        assert_eq!(width(&fitted), 20);
        assert!(fitted.starts_with("[2001:db8:"), "{fitted}");
        assert!(fitted.ends_with("5678]:443"), "{fitted}");
        assert!(fitted.contains('…'));
        assert_eq!(fit_middle("abc", 0), "");
        assert_eq!(fit_middle("abcdef", 1), "…");
        assert_eq!(fit_end("ECONNREFUSED", 12), "ECONNREFUSED");
        assert_eq!(fit_end("EADDRNOTAVAIL", 12), "EADDRNOTAVA…");
    }

    #[test]
    fn wide_characters_count_as_two_columns() {
        let fitted = fit_end("日本語のプロセス", 7);
        assert!(width(&fitted) <= 7, "{fitted}");
        assert_eq!(fitted, "日本語…");
        let fitted = fit_middle("日本語のプロセス", 9);
        assert!(width(&fitted) <= 9, "{fitted}");
    }

    #[test]
    fn counts_fit_five_columns() {
        for (n, text) in [
            (0, "0"),
            (9_999, "9999"),
            (12_345, "12.3k"),
            (99_949, "99.9k"),
            (99_999, "100k"),
            (123_456, "123k"),
            (1_234_567, "1.2M"),
            (987_654_321, "988M"),
        ] {
            assert_eq!(count(n), text, "{n}");
        }
        for n in [0, 9_999, 10_000, 99_999, 999_999, 1_000_000, 99_999_999_999] {
            assert!(count(n).len() <= 5, "{n}: {}", count(n));
        }
    }

    #[test]
    fn rates() {
        let counts = |attempts, failures| Counts {
            attempts,
            failures,
            failure_rate: if attempts == 0 {
                0.0
            } else {
                failures as f64 / attempts as f64
            },
        };
        assert_eq!(rate(&counts(0, 0)), "-");
        assert_eq!(rate(&counts(4, 4)), "100%");
        assert_eq!(rate(&counts(4, 3)), "75%");
        assert_eq!(rate(&counts(1000, 4)), "0.4%");
        assert_eq!(rate(&counts(10, 0)), "0%");
    }

    #[test]
    fn durations() {
        assert_eq!(duration_ns(850), "850ns");
        assert_eq!(duration_ns(1_500), "1.5µs");
        assert_eq!(duration_ns(88_552), "88µs");
        assert_eq!(duration_ns(1_200_000), "1.2ms");
        assert_eq!(duration_ns(3_000_000_000), "3.0s");
    }
}

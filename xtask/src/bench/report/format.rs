//! How numbers are written in the report.

use crate::bench::stats::{Stat, median};

pub(crate) fn format_cpu((ns, resolution): (f64, f64)) -> String {
    format!("{} ± {} ns", format_ns(ns), format_ns(resolution))
}

/// "median (min–max)", or "—" without measurements.
pub(crate) fn cell(values: &[f64], format: impl Fn(f64) -> String) -> String {
    median(values).map_or_else(|| "—".to_owned(), |stat| cell_of(stat, format))
}

pub(crate) fn cell_of(stat: Stat, format: impl Fn(f64) -> String) -> String {
    format!(
        "{} ({}–{})",
        format(stat.median),
        format(stat.min),
        format(stat.max)
    )
}

pub(crate) fn format_ns(ns: f64) -> String {
    let rounded = ns.round();
    let sign = if rounded < 0.0 { "-" } else { "" };
    format!("{sign}{}", group(rounded.abs() as u64))
}

pub(crate) fn format_ratio(ratio: f64) -> String {
    format!("{ratio:.2}×")
}

pub(crate) fn format_percent(fraction: f64) -> String {
    format!("{:.1}%", fraction * 100.0)
}

pub(crate) fn format_mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// 1234567 as "1,234,567".
pub(crate) fn group(value: u64) -> String {
    let digits = value.to_string();
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    grouped
}

#[cfg(test)]
mod tests {
    use super::group;

    #[test]
    fn groups_thousands() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1000), "1,000");
        assert_eq!(group(1_234_567), "1,234,567");
    }
}

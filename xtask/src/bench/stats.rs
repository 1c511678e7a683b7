//! Medians and spreads of measurements taken over rounds.

/// Median, minimum and maximum of some measurements.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stat {
    pub(crate) median: f64,
    pub(crate) min: f64,
    pub(crate) max: f64,
}

pub(crate) fn median(values: &[f64]) -> Option<Stat> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    sorted.sort_by(f64::total_cmp);
    let (&min, &max) = (sorted.first()?, sorted.last()?);
    let middle = sorted.len() / 2;
    let median = if sorted.len() % 2 == 1 {
        sorted[middle]
    } else {
        (sorted[middle - 1] + sorted[middle]) / 2.0
    };
    Some(Stat { median, min, max })
}

/// 1.4826 × the median absolute deviation: the standard deviation of
/// normally distributed values, but barely moved by one outlier (a round
/// that met a burst of other work). 0 for fewer than two values.
pub(crate) fn robust_spread(values: &[f64]) -> f64 {
    let Some(center) = median(values) else {
        return 0.0;
    };
    let deviations: Vec<f64> = values
        .iter()
        .map(|value| (value - center.median).abs())
        .collect();
    median(&deviations).map_or(0.0, |stat| 1.4826 * stat.median)
}

#[cfg(test)]
mod tests {
    use super::{median, robust_spread};

    #[test]
    fn medians() {
        let stat = median(&[3.0, 1.0, 2.0, 10.0]).unwrap();
        assert!((stat.median - 2.5).abs() < 1e-9);
        assert!((stat.min - 1.0).abs() < 1e-9 && (stat.max - 10.0).abs() < 1e-9);
        assert!(median(&[]).is_none());
    }

    #[test]
    fn spread_ignores_one_outlier() {
        let spread = robust_spread(&[100.0, 102.0, 98.0, 101.0, 500.0]);
        assert!(spread > 1.0 && spread < 5.0, "{spread}");
        assert!(robust_spread(&[7.0]).abs() < 1e-9);
    }
}

//! Samples and their summaries: median and min–max over repetitions, ratios.

use serde::{Deserialize, Serialize};

/// One measured value.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Sample {
    /// System (data plane) or method (control plane) id.
    pub system: String,
    /// Metric key (see [`crate::report::METRICS`]).
    pub metric: String,
    /// Number of macvlans, for the control-plane and scaling metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u64>,
    /// Repetition, from 0.
    pub rep: u32,
    /// The value, in the metric's base unit.
    pub value: f64,
}

/// Median and range of some samples.
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
pub struct Summary {
    /// Median.
    pub median: f64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
    /// How many.
    pub n: usize,
}

/// The `p`th percentile of sorted values (nearest rank).
pub fn percentile_sorted(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// Median (mean of the middle two for an even count), min and max; `None` when empty.
pub fn summarize(values: &[f64]) -> Option<Summary> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let k = v.len();
    let median = if k % 2 == 1 {
        v[k / 2]
    } else {
        (v[k / 2 - 1] + v[k / 2]) / 2.0
    };
    Some(Summary {
        median,
        min: v[0],
        max: v[k - 1],
        n: k,
    })
}

/// The summary of `samples` matching system, metric and n.
pub fn summary_of(
    samples: &[Sample],
    system: &str,
    metric: &str,
    n: Option<u64>,
) -> Option<Summary> {
    let v: Vec<f64> = samples
        .iter()
        .filter(|s| s.system == system && s.metric == metric && s.n == n)
        .map(|s| s.value)
        .collect();
    summarize(&v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_range() {
        let s = summarize(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.n), (2.0, 1.0, 3.0, 3));
        let s = summarize(&[4.0, 1.0, 2.0, 3.0]).unwrap();
        assert_eq!(s.median, 2.5);
        assert!(summarize(&[]).is_none());
        assert!(summarize(&[f64::NAN]).is_none());
    }

    #[test]
    fn percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile_sorted(&v, 99.0), 99.0);
        assert_eq!(percentile_sorted(&v, 50.0), 50.0);
        assert_eq!(percentile_sorted(&v, 100.0), 100.0);
        assert_eq!(percentile_sorted(&[5.0], 99.0), 5.0);
    }
}

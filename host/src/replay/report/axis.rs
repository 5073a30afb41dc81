//! Axis ranges and ticks a person reads at a glance: time in whole seconds, minutes, hours or
//! days; counts in steps of 1, 2 or 5 times a power of ten.

/// Ticks an axis aims for at most.
const MAX_TICKS: f64 = 8.0;

/// Tick steps for a time axis, in seconds; longer spans take whole days from [`nice`].
const TIME_STEPS: [f64; 19] = [
    1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1_800.0, 3_600.0, 7_200.0, 10_800.0, 21_600.0,
    43_200.0, 86_400.0, 172_800.0,
];

/// An axis from 0: its end (a whole number of steps covering the data) and its step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Axis {
    pub end: f64,
    pub step: f64,
}

impl Axis {
    /// The tick values, 0 to `end` inclusive.
    pub fn ticks(self) -> impl Iterator<Item = f64> {
        let n = (self.end / self.step).round() as usize;
        (0..=n).map(move |i| i as f64 * self.step)
    }
}

/// A time axis from 0 covering `max_secs` with at most about eight ticks.
pub(super) fn time(max_secs: f64) -> Axis {
    let max = if max_secs.is_finite() && max_secs > 0.0 { max_secs } else { 60.0 };
    let step = TIME_STEPS
        .iter()
        .copied()
        .find(|step| max / step <= MAX_TICKS)
        .unwrap_or_else(|| 86_400.0 * nice(max / 86_400.0 / MAX_TICKS));
    Axis { end: (max / step).ceil() * step, step }
}

/// A count axis from 0 covering `max` with at most about eight ticks, steps 1, 2 or 5 × 10ⁿ
/// and never below 1 (counts are whole).
pub(super) fn count(max: f64) -> Axis {
    let max = if max.is_finite() && max > 0.0 { max } else { 1.0 };
    let step = nice(max / MAX_TICKS).max(1.0);
    Axis { end: (max / step).ceil() * step, step }
}

/// The smallest of 1, 2, 5 × 10ⁿ at least `x` (> 0).
fn nice(x: f64) -> f64 {
    let power = 10f64.powf(x.log10().floor());
    [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * power).find(|v| *v >= x).unwrap_or(10.0 * power)
}

/// A time tick's label: its non-zero units, largest first (`0`, `45s`, `30m`, `1h 30m`, `2d`).
pub(super) fn time_label(secs: f64) -> String {
    let whole = secs.round().max(0.0) as u64;
    if whole == 0 {
        return "0".to_string();
    }
    let parts = [(whole / 86_400, "d"), (whole / 3_600 % 24, "h"), (whole / 60 % 60, "m"), (whole % 60, "s")];
    parts.iter().filter(|(n, _)| *n > 0).map(|(n, unit)| format!("{n}{unit}")).collect::<Vec<_>>().join(" ")
}

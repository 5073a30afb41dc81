//! Long curves cut to what a chart can show: a run can clone a million repos, a chart is a
//! thousand pixels wide. Both cuts keep the first and the last point, so a curve still starts
//! and ends where the run did.

/// At most `max` points (at least 2) of a step curve sorted by time: the time span is cut into
/// `max / 2` equal buckets and each keeps its first and last point. A rise stays within one
/// bucket's width of where it was, and the curve's endpoints are kept.
pub(super) fn steps(points: &[(f64, u64)], max: usize) -> Vec<(f64, u64)> {
    let max = max.max(2);
    let (Some(&first), Some(&last)) = (points.first(), points.last()) else { return Vec::new() };
    if points.len() <= max {
        return points.to_vec();
    }
    let buckets = max / 2;
    let span = last.0 - first.0;
    let bucket_of = |t: f64| -> usize {
        // A float-to-int cast saturates (NaN is 0), so odd times land in an end bucket.
        let b = if span > 0.0 { ((t - first.0) / span * buckets as f64) as usize } else { 0 };
        b.min(buckets - 1)
    };
    let mut kept = Vec::with_capacity(max);
    // Never decreasing, so points out of time order cannot open more buckets than `buckets`.
    let mut bucket = 0;
    let mut i = 0;
    while i < points.len() {
        bucket = bucket.max(bucket_of(points[i].0));
        let mut j = i;
        while j + 1 < points.len() && bucket_of(points[j + 1].0) <= bucket {
            j += 1;
        }
        kept.push(points[i]);
        if j > i {
            kept.push(points[j]);
        }
        i = j + 1;
    }
    kept
}

/// At most `max` points (at least 2) of a series of per-minute counts, as `(minute, count)`:
/// the minutes are cut into `max / 2` runs and each keeps its lowest and highest minute, in
/// order, so peaks survive. The first and last minute are kept.
pub(super) fn minutes(counts: &[u32], max: usize) -> Vec<(usize, u32)> {
    let max = max.max(4);
    if counts.len() <= max {
        return counts.iter().copied().enumerate().collect();
    }
    let last = counts.len() - 1;
    // Leaves room for the first and last minute beside each bucket's two.
    let buckets = (max - 2) / 2;
    let mut kept = vec![(0, counts[0])];
    for b in 0..buckets {
        let (start, end) = (b * counts.len() / buckets, (b + 1) * counts.len() / buckets);
        let slice = &counts[start..end];
        let low = slice.iter().enumerate().min_by_key(|(_, c)| **c).map(|(i, c)| (start + i, *c));
        let high = slice.iter().enumerate().max_by_key(|(_, c)| **c).map(|(i, c)| (start + i, *c));
        let (Some(low), Some(high)) = (low, high) else { continue };
        let (a, b) = if low.0 <= high.0 { (low, high) } else { (high, low) };
        for point in [a, b] {
            if kept.last().is_none_or(|k: &(usize, u32)| k.0 < point.0) {
                kept.push(point);
            }
        }
    }
    if kept.last().is_none_or(|k| k.0 < last) {
        kept.push((last, counts[last]));
    }
    kept
}

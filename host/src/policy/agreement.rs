//! How a shadow module's order compares with the serving one over the same queued repos:
//! pure functions of the shadow's answers, given in serving order.

use crate::schedule::Priority;

/// The comparison of one tick.
#[derive(Clone, Debug, PartialEq)]
pub struct Agreement {
    pub repos: usize,
    /// Spearman's rank correlation (1: the same order, −1: reversed; repos the shadow
    /// deferred rank after the rest, in serving order).
    pub rank_correlation: f64,
    /// The slots compared: how many repos each order would send now (at most `repos`).
    pub slots: usize,
    /// Share of the serving order's first `slots` repos among the shadow's first `slots`.
    pub top_overlap: f64,
    /// Serving positions of the repos the shadow would send first and the serving order
    /// would not, in the shadow's order (at most [`SHADOW_FIRST`]).
    pub shadow_first: Vec<usize>,
    pub not_now: usize,
}

/// How many repos the shadow would have sent first are named.
pub const SHADOW_FIRST: usize = 10;

/// Compares `shadow` (one answer per queued repo, in serving order) with the serving order,
/// for `slots` free dispatch slots.
pub fn agreement(shadow: &[Priority], slots: usize) -> Agreement {
    let n = shadow.len();
    let order = shadow_order(shadow);
    let slots = slots.min(n);
    // rank[i]: where the shadow puts serving position i.
    let mut rank = vec![0usize; n];
    for (position, &serving) in order.iter().enumerate() {
        rank[serving] = position;
    }
    let rank_correlation = if n < 2 {
        1.0
    } else {
        let sum_d2: f64 = rank.iter().enumerate().map(|(i, &r)| (i as f64 - r as f64).powi(2)).sum();
        let n = n as f64;
        1.0 - 6.0 * sum_d2 / (n * (n * n - 1.0))
    };
    let shadow_top = &order[..slots];
    let overlap = shadow_top.iter().filter(|&&serving| serving < slots).count();
    Agreement {
        repos: n,
        rank_correlation,
        slots,
        top_overlap: if slots == 0 { 1.0 } else { overlap as f64 / slots as f64 },
        shadow_first: shadow_top.iter().copied().filter(|&serving| serving >= slots).take(SHADOW_FIRST).collect(),
        not_now: shadow.iter().filter(|p| matches!(p, Priority::NotNow)).count(),
    }
}

/// Serving positions in the shadow's order: highest score first, ties and deferred repos in
/// serving order, deferred ones last.
pub fn shadow_order(shadow: &[Priority]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..shadow.len()).collect();
    let key = |i: usize| match shadow[i] {
        Priority::Score(score) => (0, -score),
        Priority::NotNow => (1, 0.0),
    };
    order.sort_by(|&a, &b| {
        let (ka, kb) = (key(a), key(b));
        ka.0.cmp(&kb.0).then(ka.1.total_cmp(&kb.1)).then(a.cmp(&b))
    });
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn scores(values: &[f64]) -> Vec<Priority> {
        values.iter().map(|&v| Priority::Score(v)).collect()
    }

    #[test]
    fn the_same_order_agrees_fully_and_the_reverse_not_at_all() {
        let same = agreement(&scores(&[5.0, 4.0, 3.0, 2.0, 1.0]), 2);
        assert_eq!((same.rank_correlation, same.top_overlap), (1.0, 1.0));
        assert!(same.shadow_first.is_empty());
        let reversed = agreement(&scores(&[1.0, 2.0, 3.0, 4.0, 5.0]), 2);
        assert_eq!((reversed.rank_correlation, reversed.top_overlap), (-1.0, 0.0));
        // The shadow would send serving positions 4 and 3 first.
        assert_eq!(reversed.shadow_first, vec![4, 3]);
    }

    #[test]
    fn deferred_repos_rank_last_and_are_counted() {
        let shadow = vec![Priority::NotNow, Priority::Score(1.0), Priority::Score(2.0)];
        let a = agreement(&shadow, 1);
        assert_eq!(a.not_now, 1);
        assert_eq!(shadow_order(&shadow), vec![2, 1, 0]);
        assert_eq!(a.shadow_first, vec![2]);
        assert_eq!(a.top_overlap, 0.0);
    }

    #[test]
    fn tiny_and_empty_batches_are_defined() {
        assert_eq!(agreement(&[], 5).rank_correlation, 1.0);
        assert_eq!(agreement(&[], 5).slots, 0);
        assert_eq!(agreement(&scores(&[3.0]), 0).top_overlap, 1.0);
    }

    proptest! {
        #[test]
        fn figures_stay_in_their_ranges(values in prop::collection::vec(-1e6f64..1e6, 0..200), slots in 0usize..300) {
            let a = agreement(&scores(&values), slots);
            prop_assert!((-1.0..=1.0).contains(&a.rank_correlation), "{}", a.rank_correlation);
            prop_assert!((0.0..=1.0).contains(&a.top_overlap));
            prop_assert!(a.slots <= values.len());
            prop_assert!(a.shadow_first.len() <= SHADOW_FIRST);
            prop_assert!(a.shadow_first.iter().all(|&p| p >= a.slots && p < values.len()));
            // The overlap and the repos only the shadow sends first add up to the slots.
            let only_shadow = (a.top_overlap * a.slots as f64).round() as usize;
            prop_assert!(only_shadow + a.shadow_first.len() <= a.slots || a.shadow_first.len() == SHADOW_FIRST);
        }
    }
}

//! How many images of each label go to Train, Validation and Test: per label within one of
//! its exact share, with the totals as close to the fractions as the per-label rounding
//! allows (largest remainder, Hamilton's method).

use std::cmp::Reverse;

/// Absorbs floating-point error in `n * fraction` (`0.7 * 10` is `7.000000000000001`).
const EPSILON: f64 = 1e-9;

/// Returns `fractions` scaled to sum to 1 (they may be off by the tolerance of `--split`,
/// which on millions of images would be whole images).
fn normalized(fractions: [f64; 3]) -> [f64; 3] {
    let sum: f64 = fractions.iter().sum();
    if sum > 0.0 {
        fractions.map(|f| f / sum)
    } else {
        [1.0, 0.0, 0.0]
    }
}

/// Returns the whole parts and remainders of `n * fractions`.
fn quotas(n: usize, fractions: [f64; 3]) -> ([usize; 3], [f64; 3]) {
    let mut floors = [0; 3];
    let mut remainders = [0.0; 3];
    for s in 0..3 {
        let exact = n as f64 * fractions[s];
        let whole = (exact + EPSILON).floor().max(0.0);
        floors[s] = whole as usize;
        remainders[s] = (exact - whole).max(0.0);
    }
    (floors, remainders)
}

/// Returns `n` apportioned by `fractions` with the largest remainder method: whole parts
/// first, then one more to the parts with the largest remainders (ties to the earlier
/// part).
pub(crate) fn largest_remainder(n: usize, fractions: [f64; 3]) -> [usize; 3] {
    let fractions = normalized(fractions);
    let (mut counts, remainders) = quotas(n, fractions);
    let left = n.saturating_sub(counts.iter().sum());
    let mut order = [0, 1, 2];
    order.sort_by(|&a, &b| remainders[b].total_cmp(&remainders[a]).then(a.cmp(&b)));
    for &s in order.iter().filter(|&&s| fractions[s] > 0.0).take(left) {
        counts[s] += 1;
    }
    counts
}

/// Returns `[train, validation, test]` counts for each label's `per_label` images.
///
/// Each label gets the whole part of its exact share of every split; the one or two images
/// left per label go to the splits whose totals are furthest below their largest-remainder
/// target, labels with more leftovers first (the greedy order that meets every target
/// whenever the per-label bounds allow it), then to the label's largest remainders. A
/// label with any image gets at least one Train image when the Train fraction is
/// positive, taken from its larger other split. `fractions` should sum to about 1.
pub(crate) fn split_counts(per_label: &[usize], fractions: [f64; 3]) -> Vec<[usize; 3]> {
    let fractions = normalized(fractions);
    let total: usize = per_label.iter().sum();
    let target = largest_remainder(total, fractions);
    let mut counts = Vec::with_capacity(per_label.len());
    let mut remainders = Vec::with_capacity(per_label.len());
    for &n in per_label {
        let (floors, rest) = quotas(n, fractions);
        counts.push(floors);
        remainders.push(rest);
    }
    let mut deficit = [0usize; 3];
    for s in 0..3 {
        let given: usize = counts.iter().map(|c| c[s]).sum();
        deficit[s] = target[s].saturating_sub(given);
    }
    let leftover = |l: usize, counts: &[[usize; 3]]| {
        per_label[l].saturating_sub(counts[l].iter().sum::<usize>())
    };
    let mut labels: Vec<usize> = (0..per_label.len()).collect();
    labels.sort_by_key(|&l| Reverse(leftover(l, &counts)));
    for l in labels {
        let left = leftover(l, &counts);
        let mut splits: Vec<usize> = (0..3).filter(|&s| fractions[s] > 0.0).collect();
        splits.sort_by(|&a, &b| {
            let (ra, rb) = (remainders[l][a], remainders[l][b]);
            (rb > EPSILON)
                .cmp(&(ra > EPSILON))
                .then(deficit[b].cmp(&deficit[a]))
                .then(rb.total_cmp(&ra))
                .then(a.cmp(&b))
        });
        for &s in splits.iter().take(left) {
            counts[l][s] += 1;
            deficit[s] = deficit[s].saturating_sub(1);
        }
        debug_assert_eq!(counts[l].iter().sum::<usize>(), per_label[l]);
    }
    if fractions[0] > 0.0 {
        for c in counts.iter_mut().filter(|c| c[0] == 0) {
            let from = if c[1] > c[2] { 1 } else { 2 };
            if c[from] > 0 {
                c[from] -= 1;
                c[0] += 1;
            }
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT: [f64; 3] = [0.8, 0.1, 0.1];

    fn totals(counts: &[[usize; 3]]) -> [usize; 3] {
        let mut t = [0; 3];
        for c in counts {
            for s in 0..3 {
                t[s] += c[s];
            }
        }
        t
    }

    #[test]
    fn largest_remainder_apportions_exactly() {
        assert_eq!(largest_remainder(10, [0.7, 0.2, 0.1]), [7, 2, 1]);
        assert_eq!(largest_remainder(3, DEFAULT), [3, 0, 0]);
        assert_eq!(largest_remainder(15, DEFAULT), [12, 2, 1]);
        assert_eq!(largest_remainder(7, [0.5, 0.5, 0.0]), [4, 3, 0]);
        assert_eq!(largest_remainder(0, DEFAULT), [0, 0, 0]);
    }

    #[test]
    fn per_label_rounding_keeps_totals_on_target() {
        // Ten labels of five: rounding each alone would give Validation all ten leftovers.
        let counts = split_counts(&[5; 10], DEFAULT);
        assert_eq!(totals(&counts), [40, 5, 5]);
        assert!(
            counts.iter().all(|c| c[0] == 4 && c[1] + c[2] == 1),
            "{counts:?}"
        );

        let per_label = [37, 5, 120, 1, 2, 9];
        let counts = split_counts(&per_label, [0.7, 0.15, 0.15]);
        let sum: usize = per_label.iter().sum();
        assert_eq!(totals(&counts), largest_remainder(sum, [0.7, 0.15, 0.15]));
        for (c, &n) in counts.iter().zip(&per_label) {
            assert_eq!(c.iter().sum::<usize>(), n);
            assert!(c[0] >= 1, "every label trains: {counts:?}");
        }
    }

    #[test]
    fn small_labels_train_and_zero_fractions_stay_empty() {
        assert_eq!(
            split_counts(&[1, 2, 0], DEFAULT),
            vec![[1, 0, 0], [2, 0, 0], [0, 0, 0]]
        );
        assert_eq!(split_counts(&[2], [0.0, 0.5, 0.5]), vec![[0, 1, 1]]);
        let counts = split_counts(&[3, 3, 3], [0.2, 0.8, 0.0]);
        assert!(counts.iter().all(|c| c[0] >= 1 && c[2] == 0), "{counts:?}");
        assert_eq!(split_counts(&[10], [1.0, 0.0, 0.0]), vec![[10, 0, 0]]);
    }
}

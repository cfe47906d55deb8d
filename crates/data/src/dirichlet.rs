//! Gamma and Dirichlet sampling on [`SplitMix64`], for label-skewed partitions.
//!
//! Gamma variates use Marsaglia and Tsang's method (2000), with the boost
//! `Gamma(a) = Gamma(a + 1) * U^(1/a)` for shapes below 1. Everything is kept as
//! logarithms until the Dirichlet proportions are normalised, so that very small shapes
//! (where `U^(1/a)` underflows to 0) still give proportions that sum to 1.

use crate::rng::SplitMix64;

/// Returns a standard normal variate (Box–Muller, one of the pair).
fn standard_normal(rng: &mut SplitMix64) -> f64 {
    // 1 - U lies in (0, 1], so the logarithm is finite.
    let u = 1.0 - rng.next_f64();
    let v = rng.next_f64();
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

/// Returns the natural logarithm of a `Gamma(shape, 1)` variate; `shape` must be positive
/// and finite.
pub(crate) fn ln_gamma_variate(rng: &mut SplitMix64, shape: f64) -> f64 {
    debug_assert!(shape > 0.0 && shape.is_finite());
    if shape < 1.0 {
        let u = 1.0 - rng.next_f64();
        return ln_gamma_variate(rng, shape + 1.0) + u.ln() / shape;
    }
    let d = shape - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let x = standard_normal(rng);
        let t = 1.0 + c * x;
        if t <= 0.0 {
            continue;
        }
        let v = t * t * t;
        let u = 1.0 - rng.next_f64();
        let x2 = x * x;
        if u < 1.0 - 0.0331 * x2 * x2 || u.ln() < 0.5 * x2 + d * (1.0 - v + v.ln()) {
            return d.ln() + v.ln();
        }
    }
}

/// Returns proportions drawn from a symmetric Dirichlet distribution `Dir(alpha, ..., alpha)`
/// over `n` parts: non-negative and summing to 1.
pub(crate) fn dirichlet(rng: &mut SplitMix64, alpha: f64, n: usize) -> Vec<f64> {
    let logs: Vec<f64> = (0..n).map(|_| ln_gamma_variate(rng, alpha)).collect();
    let max = logs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let weights: Vec<f64> = logs.iter().map(|l| (l - max).exp()).collect();
    let sum: f64 = weights.iter().sum();
    weights.into_iter().map(|w| w / sum).collect()
}

/// Returns how many of `n` items each part gets for `proportions`, cutting at
/// `floor(cumulative proportion * n)` as Flower Datasets' `DirichletPartitioner` does
/// (the last part takes the rest).
pub(crate) fn cut_by_proportions(n: usize, proportions: &[f64]) -> Vec<usize> {
    let mut counts = Vec::with_capacity(proportions.len());
    let mut cumulative = 0.0;
    let mut previous = 0usize;
    for (i, p) in proportions.iter().enumerate() {
        let cut = if i + 1 == proportions.len() {
            n
        } else {
            cumulative += p;
            ((cumulative * n as f64).floor() as usize).clamp(previous, n)
        };
        counts.push(cut - previous);
        previous = cut;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gamma_variates_have_the_right_mean_and_variance() {
        let mut rng = SplitMix64::new(11);
        for shape in [0.05, 0.3, 1.0, 2.5, 40.0] {
            let n = 40_000;
            let xs: Vec<f64> = (0..n)
                .map(|_| ln_gamma_variate(&mut rng, shape).exp())
                .collect();
            let mean = xs.iter().sum::<f64>() / n as f64;
            let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
            // Gamma(k, 1) has mean k and variance k.
            let tolerance = 4.0 * (shape / n as f64).sqrt() + 1e-3;
            assert!(
                (mean - shape).abs() < tolerance,
                "shape {shape}: mean {mean}"
            );
            assert!(
                (var - shape).abs() < 0.1 * shape + 1e-3,
                "shape {shape}: var {var}"
            );
        }
        // Tiny shapes underflow as plain numbers but stay finite as logarithms.
        let l = ln_gamma_variate(&mut rng, 1e-4);
        assert!(l.is_finite() && l < 0.0, "{l}");
    }

    #[test]
    fn dirichlet_proportions_sum_to_one_and_follow_alpha() {
        let mut rng = SplitMix64::new(3);
        let flat = dirichlet(&mut rng, 1000.0, 5);
        assert!((flat.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!(flat.iter().all(|p| (p - 0.2).abs() < 0.03), "{flat:?}");
        let mut concentrated = 0;
        for _ in 0..100 {
            let p = dirichlet(&mut rng, 0.01, 5);
            assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12);
            assert!(p.iter().all(|x| x.is_finite() && *x >= 0.0));
            if p.iter().any(|&x| x > 0.9) {
                concentrated += 1;
            }
        }
        // About 92 in 100 draws of Dir(0.01) over 5 parts put more than 0.9 on one part.
        assert!(
            concentrated >= 80,
            "alpha 0.01 concentrates the mass: {concentrated}"
        );
    }

    #[test]
    fn cuts_cover_every_item_once() {
        assert_eq!(cut_by_proportions(10, &[0.25, 0.25, 0.5]), [2, 3, 5]);
        assert_eq!(cut_by_proportions(10, &[1.0, 0.0, 0.0]), [10, 0, 0]);
        assert_eq!(cut_by_proportions(0, &[0.5, 0.5]), [0, 0]);
        assert_eq!(cut_by_proportions(7, &[0.999_999_999_999, 1e-12]), [6, 1]);
        let counts = cut_by_proportions(1000, &[0.1; 10]);
        assert_eq!(counts.iter().sum::<usize>(), 1000);
    }
}

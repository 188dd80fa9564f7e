//! The Poisson upper tail, P(X >= k | λ): how likely the theme's normal level would have
//! produced at least `k` negative mentions in a window. Written out here (a few lines)
//! rather than pulling in a statistics crate for one function.

/// P(X >= k) for X ~ Poisson(λ). Exact to about 1e-10 relative for the range the
/// detector uses (k above λ); `1.0` when `k` is not above `λ`, where the answer is large
/// anyway and never significant.
pub fn upper_tail(k: u64, lambda: f64) -> f64 {
    if k == 0 {
        return 1.0;
    }
    // NaN or no expected mentions at all: any count is infinitely unlikely.
    if lambda.is_nan() || lambda <= 0.0 {
        return 0.0;
    }
    if (k as f64) <= lambda {
        return 1.0;
    }
    // Sum the pmf from k upward in log space for the first term, then by the ratio
    // pmf(i+1) = pmf(i) · λ / (i+1), which is below 1 from here on: a geometric decay.
    let mut term = (-lambda + k as f64 * lambda.ln() - ln_factorial(k)).exp();
    let mut sum = 0.0;
    let mut i = k;
    while term > sum * 1e-15 && term > 0.0 {
        sum += term;
        i += 1;
        term *= lambda / i as f64;
    }
    sum.min(1.0)
}

/// ln P(X >= k) for X ~ Poisson(λ): [`upper_tail`] in log space, for ranking tails too
/// small for an `f64` (a large surge's probability underflows to 0, and all zeros tie).
/// `0.0` (probability 1) when `k` is not above `λ`, `-inf` for no expectation at all.
pub fn ln_upper_tail(k: u64, lambda: f64) -> f64 {
    if k == 0 {
        return 0.0;
    }
    if lambda.is_nan() || lambda <= 0.0 {
        return f64::NEG_INFINITY;
    }
    if (k as f64) <= lambda {
        return 0.0;
    }
    // ln pmf(k), plus ln of the sum of pmf(i) / pmf(k) for i >= k: 1 + λ/(k+1) + …,
    // a series that decays at least geometrically above λ.
    let ln_first = -lambda + k as f64 * lambda.ln() - ln_factorial(k);
    let (mut sum, mut term, mut i) = (1.0f64, 1.0f64, k);
    loop {
        i += 1;
        term *= lambda / i as f64;
        if term <= sum * 1e-16 {
            break;
        }
        sum += term;
    }
    (ln_first + sum.ln()).min(0.0)
}

/// The two one-sided tails of `x` successes: (P(X <= x), P(X >= x)), for a discrete
/// distribution given by its ln pmf over the support `lo..=hi` (`x` inside it). Summed
/// relative to the largest term, so tails of large counts neither underflow early nor
/// lose the terms that matter.
fn tails(x: u64, lo: u64, hi: u64, ln_pmf: impl Fn(u64) -> f64) -> (f64, f64) {
    let ln: Vec<f64> = (lo..=hi).map(&ln_pmf).collect();
    let top = ln.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let weights: Vec<f64> = ln.iter().map(|l| (l - top).exp()).collect();
    let total: f64 = weights.iter().sum();
    let at = (x - lo) as usize;
    let below: f64 = weights[..=at].iter().sum();
    let above: f64 = weights[at..].iter().sum();
    ((below / total).min(1.0), (above / total).min(1.0))
}

/// (P(X <= k), P(X >= k)) for X ~ Binomial(n, p), `k <= n`, `0 < p < 1`. The
/// conditional test of two Poisson counts: given their sum `n`, the second is
/// Binomial(n, its share of the exposure) when both have the same rate.
pub(crate) fn binomial_tails(k: u64, n: u64, p: f64) -> (f64, f64) {
    if n == 0 || k > n || !(p > 0.0 && p < 1.0) {
        return (1.0, 1.0);
    }
    let (ln_p, ln_q, ln_n) = (p.ln(), (1.0 - p).ln(), ln_factorial(n));
    tails(k, 0, n, |i| {
        ln_n - ln_factorial(i) - ln_factorial(n - i) + i as f64 * ln_p + (n - i) as f64 * ln_q
    })
}

/// (P(X <= x), P(X >= x)) for X ~ Hypergeometric: `draws` taken without replacement
/// from `population` items of which `marked` are marked; `x` marked ones drawn. The
/// exact test of two proportions (Fisher's, one-sided each way).
pub(crate) fn hypergeometric_tails(x: u64, draws: u64, marked: u64, population: u64) -> (f64, f64) {
    if draws > population || marked > population {
        return (1.0, 1.0);
    }
    let lo = draws.saturating_sub(population - marked);
    let hi = draws.min(marked);
    if x < lo || x > hi || lo == hi {
        return (1.0, 1.0);
    }
    let ln_choose = |n: u64, k: u64| ln_factorial(n) - ln_factorial(k) - ln_factorial(n - k);
    tails(x, lo, hi, |i| {
        ln_choose(marked, i) + ln_choose(population - marked, draws - i)
    })
}

/// ln(k!): exact summation for small `k`, Stirling's series (error < 1e-12) above.
fn ln_factorial(k: u64) -> f64 {
    if k < 20 {
        return (2..=k).map(|i| (i as f64).ln()).sum();
    }
    let n = k as f64;
    n * n.ln() - n + 0.5 * (2.0 * std::f64::consts::PI * n).ln() + 1.0 / (12.0 * n)
        - 1.0 / (360.0 * n.powi(3))
        + 1.0 / (1260.0 * n.powi(5))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        ((a - b) / b).abs() < 1e-6
    }

    #[test]
    fn matches_known_values() {
        // 1 - CDF, computed independently (R: ppois(k - 1, λ, lower = FALSE)).
        assert!(
            close(upper_tail(3, 0.5), 0.014_387_677_8),
            "{}",
            upper_tail(3, 0.5)
        );
        assert!(
            close(upper_tail(5, 1.0), 0.003_659_846_8),
            "{}",
            upper_tail(5, 1.0)
        );
        assert!(
            close(upper_tail(10, 2.0), 4.649_807_5e-5),
            "{}",
            upper_tail(10, 2.0)
        );
        assert!(
            close(upper_tail(40, 20.0), 5.320_202_5e-5),
            "{}",
            upper_tail(40, 20.0)
        );
    }

    #[test]
    fn edges() {
        assert_eq!(upper_tail(0, 3.0), 1.0);
        assert_eq!(upper_tail(2, 3.0), 1.0, "not above λ");
        assert_eq!(upper_tail(1, 0.0), 0.0);
        assert!(upper_tail(1000, 10.0) < 1e-300 || upper_tail(1000, 10.0) == 0.0);
        // Monotone in k.
        let tails: Vec<f64> = (3..30).map(|k| upper_tail(k, 2.5)).collect();
        assert!(tails.windows(2).all(|w| w[1] < w[0]));
    }

    #[test]
    fn the_log_tail_agrees_and_goes_on_where_the_tail_underflows() {
        for (k, lambda) in [(3, 0.5), (5, 1.0), (10, 2.0), (40, 20.0), (12, 0.3)] {
            let direct = upper_tail(k, lambda);
            assert!(
                close(ln_upper_tail(k, lambda).exp(), direct),
                "{k} {lambda}"
            );
        }
        assert_eq!(ln_upper_tail(0, 1.0), 0.0);
        assert_eq!(ln_upper_tail(2, 3.0), 0.0);
        assert_eq!(ln_upper_tail(1, 0.0), f64::NEG_INFINITY);
        assert_eq!(upper_tail(400, 0.01), 0.0, "underflows");
        let (a, b) = (ln_upper_tail(400, 0.01), ln_upper_tail(401, 0.01));
        assert!(a.is_finite() && b < a, "{a} {b}");
    }

    #[test]
    fn ln_factorial_is_continuous_across_the_switch() {
        let exact: f64 = (2..=20u64).map(|i| (i as f64).ln()).sum();
        assert!((ln_factorial(20) - exact).abs() < 1e-10);
    }

    #[test]
    fn binomial_tails_match_hand_computed_values() {
        // Binomial(4, 1/2): pmf 1,4,6,4,1 over 16.
        let (le, ge) = binomial_tails(1, 4, 0.5);
        assert!(close(le, 5.0 / 16.0) && close(ge, 15.0 / 16.0), "{le} {ge}");
        assert_eq!(binomial_tails(0, 0, 0.5), (1.0, 1.0));
        let (le, _) = binomial_tails(0, 10, 0.5);
        assert!(close(le, 1.0 / 1024.0));
        // Large n does not underflow to nonsense.
        let (le, ge) = binomial_tails(400, 1000, 0.5);
        assert!(le > 0.0 && le < 1e-9 && close(ge, 1.0), "{le} {ge}");
    }

    #[test]
    fn hypergeometric_tails_are_fishers_test() {
        // 10 items, 5 marked, draw 5, got 1 marked: P(X <= 1) = (1 + 25) / 252.
        let (le, ge) = hypergeometric_tails(1, 5, 5, 10);
        assert!(close(le, 26.0 / 252.0), "{le}");
        assert!(close(ge, 1.0 - 1.0 / 252.0), "{ge}");
        assert_eq!(
            hypergeometric_tails(0, 0, 3, 10),
            (1.0, 1.0),
            "nothing drawn"
        );
        assert_eq!(hypergeometric_tails(2, 4, 4, 4), (1.0, 1.0), "all marked");
    }
}

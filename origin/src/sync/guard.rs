//! The sync guard: what a run may change without a person looking. A provider's document is
//! input from outside, and a mistake upstream (or a hostile document) must not become the
//! catalog. A run is **held** (nothing applied, logged at ERROR, counted, alerted) when:
//!
//! 1. any offer is priced 0 cents (a free number is never a real price);
//! 2. at least `SYNC_GUARD_MAX_SUSPICIOUS_PCT` % of the provider's existing products move by a
//!    factor of `SYNC_GUARD_MAX_MOVE` or more, **up or down** (prices × 100 are as wrong as ÷ 100);
//! 3. half or more of the products on sale would leave sale;
//! 4. the provider's median price would drift more than `SYNC_GUARD_MAX_DRIFT_PCT` % from its
//!    **baseline**: the median when a person last accepted the catalog (`origin sync --accept`),
//!    or when it was last older than `SYNC_GUARD_BASELINE_SECS`. Measured against the baseline,
//!    not the previous run, so many runs of modest cuts cannot walk the catalog down (each step
//!    passes rule 2; their sum does not pass rule 4).
//!
//! Small catalogs (fewer than [`super::GUARD_MIN_ROWS`] products) are judged by rules 1 and 4
//! only. `origin sync --provider P --accept` applies a held run on purpose and makes it the new
//! baseline.

use std::collections::HashMap;
use std::time::Duration;

use super::GUARD_MIN_ROWS;

/// The guard's limits (`SYNC_GUARD_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_move: i64,
    pub max_suspicious_pct: u32,
    pub max_drift_pct: u32,
    pub baseline_max_age: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_move: 10,
            max_suspicious_pct: 10,
            max_drift_pct: 50,
            baseline_max_age: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// A provider's baseline: its median price and product count, and its age.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Baseline {
    pub median_cents: i64,
    pub products: i32,
    pub age: Duration,
}

/// What to do with a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Apply it; and record this baseline (median, products) when one is due.
    Apply {
        baseline: Option<(i64, i32)>,
    },
    Hold(String),
}

type Key = (i32, i32);

/// Judges a run: the provider's rows now (`current`), the document's (`wanted`), how many would
/// leave sale (`zeroed`) of how many on sale (`on_sale`), and the baseline.
pub fn judge(
    current: &HashMap<Key, (i64, i64)>,
    wanted: &HashMap<Key, (i64, i64)>,
    zeroed: usize,
    on_sale: usize,
    baseline: Option<Baseline>,
    limits: Limits,
) -> Verdict {
    let free = wanted.values().filter(|(price, _)| *price == 0).count();
    if free > 0 {
        return Verdict::Hold(format!("{free} offers would be priced 0 cents: held back"));
    }
    let (mut existing, mut suspicious) = (0usize, 0usize);
    for (key, &(price, _)) in wanted {
        let Some(&(old, _)) = current.get(key) else {
            continue;
        };
        existing += 1;
        if old > 0
            && (price >= old.saturating_mul(limits.max_move)
                || price.saturating_mul(limits.max_move) <= old)
        {
            suspicious += 1;
        }
    }
    if existing >= GUARD_MIN_ROWS
        && suspicious * 100 >= existing * limits.max_suspicious_pct as usize
    {
        return Verdict::Hold(format!(
            "{suspicious} of {existing} prices would move by a factor of {} or more: held back",
            limits.max_move
        ));
    }
    if on_sale >= GUARD_MIN_ROWS && zeroed * 2 >= on_sale {
        return Verdict::Hold(format!(
            "{zeroed} of {on_sale} products would leave sale: held back"
        ));
    }
    let median = median(wanted.values().map(|(price, _)| *price));
    let products = i32::try_from(wanted.len()).unwrap_or(i32::MAX);
    match baseline {
        Some(b) if b.median_cents > 0 => {
            let drift = (median - b.median_cents).abs() * 100 / b.median_cents;
            if drift > i64::from(limits.max_drift_pct) {
                return Verdict::Hold(format!(
                    "the median price would move {drift} % from its baseline ({} to {median} \
                     cents, baseline {} h old): held back; `origin sync --provider … --accept` \
                     applies it",
                    b.median_cents,
                    b.age.as_secs() / 3600
                ));
            }
            let due = b.age >= limits.baseline_max_age;
            Verdict::Apply {
                baseline: due.then_some((median, products)),
            }
        }
        _ => Verdict::Apply {
            baseline: Some((median, products)),
        },
    }
}

/// The median of some prices (0 for none).
pub fn median(prices: impl Iterator<Item = i64>) -> i64 {
    let mut all: Vec<i64> = prices.collect();
    if all.is_empty() {
        return 0;
    }
    let mid = all.len() / 2;
    *all.select_nth_unstable(mid).1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog(prices: &[i64]) -> HashMap<Key, (i64, i64)> {
        prices
            .iter()
            .enumerate()
            .map(|(i, p)| ((1, i as i32), (*p, 5)))
            .collect()
    }

    fn scaled(prices: &[i64], num: i64, den: i64) -> Vec<i64> {
        prices.iter().map(|p| (p * num / den).max(1)).collect()
    }

    fn base(median_cents: i64) -> Option<Baseline> {
        Some(Baseline {
            median_cents,
            products: 100,
            age: Duration::from_secs(3600),
        })
    }

    const LIMITS: Limits = Limits {
        max_move: 10,
        max_suspicious_pct: 10,
        max_drift_pct: 50,
        baseline_max_age: Duration::from_secs(7 * 24 * 3600),
    };

    fn prices() -> Vec<i64> {
        (0..100).map(|i| 200 + i * 3).collect()
    }

    #[test]
    fn ordinary_changes_apply() {
        let now = prices();
        let next = scaled(&now, 105, 100);
        let v = judge(&catalog(&now), &catalog(&next), 0, 100, base(350), LIMITS);
        assert_eq!(v, Verdict::Apply { baseline: None });
    }

    #[test]
    fn a_zero_price_is_held() {
        let now = prices();
        let mut next = now.clone();
        next[7] = 0;
        let v = judge(&catalog(&now), &catalog(&next), 0, 100, base(350), LIMITS);
        assert!(
            matches!(v, Verdict::Hold(ref why) if why.contains("0 cents")),
            "{v:?}"
        );
    }

    #[test]
    fn rises_are_held_as_falls_are() {
        let now = prices();
        for next in [scaled(&now, 100, 1), scaled(&now, 1, 100)] {
            let v = judge(&catalog(&now), &catalog(&next), 0, 100, None, LIMITS);
            assert!(
                matches!(v, Verdict::Hold(ref why) if why.contains("factor of 10")),
                "{v:?}"
            );
        }
        // A few outliers (under 10 %) are not a mistake.
        let mut next = now.clone();
        for p in next.iter_mut().take(9) {
            *p *= 20;
        }
        assert!(matches!(
            judge(&catalog(&now), &catalog(&next), 0, 100, base(350), LIMITS),
            Verdict::Apply { .. }
        ));
    }

    #[test]
    fn many_small_cuts_cannot_walk_past_the_baseline() {
        let mut now = prices();
        let baseline = median(now.iter().copied());
        let mut applied = 0;
        for _ in 0..10 {
            let next = scaled(&now, 85, 100); // each run 15 % lower: under every per-run rule
            match judge(
                &catalog(&now),
                &catalog(&next),
                0,
                100,
                base(baseline),
                LIMITS,
            ) {
                Verdict::Apply { .. } => {
                    now = next;
                    applied += 1;
                }
                Verdict::Hold(why) => {
                    assert!(why.contains("baseline"), "{why}");
                    break;
                }
            }
        }
        let reached = median(now.iter().copied());
        assert!(applied < 10, "held at some point");
        assert!(
            reached * 2 >= baseline,
            "the median stayed within 50 %: {reached} of {baseline}"
        );
    }

    #[test]
    fn half_the_products_leaving_is_held_and_a_baseline_is_recorded_when_due() {
        let now = prices();
        let v = judge(
            &catalog(&now),
            &catalog(&now[..40]),
            60,
            100,
            base(350),
            LIMITS,
        );
        assert!(
            matches!(v, Verdict::Hold(ref why) if why.contains("leave sale")),
            "{v:?}"
        );
        let old = Some(Baseline {
            age: Duration::from_secs(8 * 24 * 3600),
            ..base(350).unwrap()
        });
        let v = judge(&catalog(&now), &catalog(&now), 0, 100, old, LIMITS);
        assert_eq!(
            v,
            Verdict::Apply {
                baseline: Some((350, 100))
            }
        );
        let v = judge(&catalog(&now), &catalog(&now), 0, 100, None, LIMITS);
        assert_eq!(
            v,
            Verdict::Apply {
                baseline: Some((350, 100))
            }
        );
    }
}

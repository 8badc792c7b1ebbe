//! Upstream money to integer cents, exactly. Providers send prices as JSON numbers (`12.5`),
//! strings (`"12.50"`) or in another currency; a float would round `0.1 + 0.2` to
//! `0.30000000000000004` and `0.005 * 100` to `0.49999…`. Here the decimal text itself is parsed
//! into an integer and a power of ten, multiplied by the provider's exchange rate and markup in
//! integers, and rounded once, half up, to cents. Anything that is not a plain non-negative
//! decimal of sane size (`NaN`, `Infinity`, `-1`, `1e400`, `""`, `"12,5"`) is refused, naming why.

/// A non-negative decimal: `units / 10^scale`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decimal {
    units: u128,
    scale: u32,
}

/// Most significant digits a decimal may have (beyond, it is no price).
const MAX_DIGITS: usize = 24;
/// Most decimal places kept (beyond, the digits are below a cent by far).
const MAX_SCALE: u32 = 18;
/// The exponent a price may be written with (`1.25e1`), and the decimal places it may have:
/// bounded, so that no text makes the conversion loop (`1e-2147483000` once took 1.3 s of CPU
/// for 48 bytes and came out a valid 0-cent price) or overflow.
const MAX_EXPONENT: i32 = 30;
const MAX_FRACTION_DIGITS: usize = 30;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("not a decimal number: {0:?}")]
    NotANumber(String),
    #[error("negative: {0:?}")]
    Negative(String),
    #[error("too large: {0:?}")]
    TooLarge(String),
    #[error("out of range (an exponent or a fraction no price has): {0:?}")]
    OutOfRange(String),
}

impl Decimal {
    /// Parses a JSON number's text, or a JSON string holding one (`12`, `12.5`, `"12.50"`,
    /// `1.25e1`).
    pub fn parse(raw: &str) -> Result<Decimal, MoneyError> {
        let text = raw.trim();
        let text = text
            .strip_prefix('"')
            .and_then(|t| t.strip_suffix('"'))
            .unwrap_or(text)
            .trim();
        let bad = || MoneyError::NotANumber(raw.to_owned());
        if text.starts_with('-') {
            return Err(MoneyError::Negative(raw.to_owned()));
        }
        let text = text.strip_prefix('+').unwrap_or(text);
        let out_of_range = || MoneyError::OutOfRange(raw.to_owned());
        let (mantissa, exponent) = match text.find(['e', 'E']) {
            Some(at) => {
                let exp: i32 = text[at + 1..].parse().map_err(|_| bad())?;
                if !(-MAX_EXPONENT..=MAX_EXPONENT).contains(&exp) {
                    return Err(out_of_range());
                }
                (&text[..at], exp)
            }
            None => (text, 0),
        };
        let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        if fraction.len() > MAX_FRACTION_DIGITS {
            return Err(out_of_range());
        }
        let digits_only = |s: &str| s.bytes().all(|c| c.is_ascii_digit());
        if whole.is_empty() && fraction.is_empty() || !digits_only(whole) || !digits_only(fraction)
        {
            return Err(bad());
        }
        let digits = format!("{whole}{fraction}");
        let digits = digits.trim_start_matches('0');
        if digits.len() > MAX_DIGITS {
            return Err(MoneyError::TooLarge(raw.to_owned()));
        }
        let units: u128 = if digits.is_empty() {
            0
        } else {
            digits.parse().map_err(|_| bad())?
        };
        // value = units * 10^(exponent - fraction.len())
        let shift = exponent - fraction.len() as i32;
        if shift >= 0 {
            let factor = 10u128
                .checked_pow(shift as u32)
                .ok_or_else(|| MoneyError::TooLarge(raw.to_owned()))?;
            let units = units
                .checked_mul(factor)
                .ok_or_else(|| MoneyError::TooLarge(raw.to_owned()))?;
            Ok(Decimal { units, scale: 0 })
        } else {
            let mut scale = (-shift) as u32;
            let mut units = units;
            // Digits far below a cent: drop them (they cannot change a rounded cent unless the
            // value is exactly on a half, which 18 places do not reach).
            while scale > MAX_SCALE {
                units /= 10;
                scale -= 1;
            }
            Ok(Decimal { units, scale })
        }
    }

    pub fn is_zero(&self) -> bool {
        self.units == 0
    }
}

/// How a provider's prices become ours: converted at `rate` (units of our currency per unit of
/// theirs) and marked up by `markup_bps` (1/100 of a percent).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    pub rate: Decimal,
    pub markup_bps: u32,
}

impl Rule {
    /// The price in cents of an upstream amount (its text), rounded half up.
    pub fn cents(&self, raw: &str) -> Result<i64, MoneyError> {
        let amount = Decimal::parse(raw)?;
        let too_large = || MoneyError::TooLarge(raw.to_owned());
        // cents = amount * rate * (10000 + markup) / 10000 * 100
        let numerator = amount
            .units
            .checked_mul(self.rate.units)
            .and_then(|n| n.checked_mul(10_000 + u128::from(self.markup_bps)))
            .and_then(|n| n.checked_mul(100))
            .ok_or_else(too_large)?;
        let scale = amount.scale + self.rate.scale;
        let denominator = 10u128
            .checked_pow(scale)
            .and_then(|d| d.checked_mul(10_000))
            .ok_or_else(too_large)?;
        let cents = (numerator + denominator / 2) / denominator;
        i64::try_from(cents).map_err(|_| too_large())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(rate: &str, markup_bps: u32) -> Rule {
        Rule {
            rate: Decimal::parse(rate).unwrap(),
            markup_bps,
        }
    }

    #[test]
    fn decimals_become_cents_exactly() {
        let same = rule("1", 0);
        // As floats: 0.1 + 0.2 = 0.30000000000000004; here each is exact and so is the sum.
        let (a, b) = (same.cents("0.1").unwrap(), same.cents("0.2").unwrap());
        assert_eq!((a, b, a + b), (10, 20, 30));
        assert_eq!(same.cents("\"12.50\"").unwrap(), 1250);
        assert_eq!(same.cents("12").unwrap(), 1200);
        assert_eq!(same.cents("1.25e1").unwrap(), 1250);
        assert_eq!(same.cents("125E-1").unwrap(), 1250);
        assert_eq!(same.cents(".5").unwrap(), 50);
        assert_eq!(same.cents("0").unwrap(), 0);
        // Half a cent rounds up, once (a float makes 0.005 * 100 = 0.49999999999999994).
        assert_eq!(same.cents("0.005").unwrap(), 1);
        assert_eq!(same.cents("0.0049999").unwrap(), 0);
        assert_eq!(same.cents("1.005").unwrap(), 101);
        assert_eq!(same.cents("0.00000000000000000000001").unwrap(), 0);
    }

    #[test]
    fn rates_and_markups_are_applied_in_integers() {
        // 100 RUB at 0.0112 USD/RUB, +20 %: 1.344 USD -> 134.4 cents -> 134.
        assert_eq!(rule("0.0112", 2000).cents("100").unwrap(), 134);
        // 12.5 at +15 %: 14.375 -> 1437.5 cents -> 1438 (half up).
        assert_eq!(rule("1", 1500).cents("12.5").unwrap(), 1438);
        assert_eq!(rule("0.011", 0).cents("\"45.45\"").unwrap(), 50);
    }

    #[test]
    fn anything_but_a_plain_non_negative_decimal_is_refused() {
        let same = rule("1", 0);
        for raw in [
            "NaN", "\"NaN\"", "Infinity", "", "\"\"", "12,5", "1.2.3", "0x10", "1e", "abc", "1 2",
            "null", "true", ".",
        ] {
            assert!(
                matches!(same.cents(raw), Err(MoneyError::NotANumber(_))),
                "{raw:?}"
            );
        }
        for raw in ["-1", "\"-0.5\"", "-0", "-Infinity"] {
            assert!(
                matches!(same.cents(raw), Err(MoneyError::Negative(_))),
                "{raw:?}"
            );
        }
        for raw in ["99999999999999999999999999999", "1e30"] {
            assert!(
                matches!(same.cents(raw), Err(MoneyError::TooLarge(_))),
                "{raw:?}"
            );
        }
        // Exponents and fractions no price has: refused at once, never looped over (this one
        // took 1.3 s of CPU and came out 0 cents before).
        let started = std::time::Instant::now();
        let long_fraction = format!("0.{}1", "0".repeat(100));
        for raw in [
            "1e-2147483000",
            "1e2147483000",
            "1e400",
            "1e-31",
            long_fraction.as_str(),
        ] {
            assert!(
                matches!(same.cents(raw), Err(MoneyError::OutOfRange(_))),
                "{raw:?}: {:?}",
                same.cents(raw)
            );
        }
        assert!(started.elapsed() < std::time::Duration::from_millis(50));
        assert_eq!(
            same.cents("1.5e-1").unwrap(),
            15,
            "a small exponent is fine"
        );
        // Huge but representable: a cent count an i64 holds.
        assert_eq!(same.cents("92233720368547758.07").unwrap(), i64::MAX);
        assert!(matches!(
            same.cents("92233720368547758.08"),
            Err(MoneyError::TooLarge(_))
        ));
    }
}

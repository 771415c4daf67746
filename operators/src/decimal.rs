//! Exact decimals for prices and quantities.
//!
//! Binary floating point cannot represent `0.1`, so two venues summing the
//! same trades in a different order would disagree. Every price and quantity
//! is instead a fixed-point integer with [`SCALE`] fractional digits, and
//! sums of notionals (price × qty) are widened to 256 bits so they never
//! overflow.

use std::fmt;
use std::ops::AddAssign;
use std::str::FromStr;

use ethnum::I256;

/// Fractional digits carried by every [`Fixed`] value.
pub const SCALE: u32 = 8;
/// `10^SCALE`: the integer that represents `1`.
pub const ONE: i64 = 100_000_000;

/// A fixed-point decimal with 8 fractional digits (`Fixed(150_000_000)` is `1.5`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Fixed(pub i64);

/// Why a decimal could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecimalError {
    #[error("not a decimal number")]
    Syntax,
    #[error("more than 8 fractional digits")]
    TooPrecise,
    #[error("out of range")]
    Overflow,
}

impl Fixed {
    pub const ZERO: Fixed = Fixed(0);

    /// The value from a whole number of units (`Fixed::units(3)` is `3`).
    pub const fn units(n: i64) -> Fixed {
        Fixed(n * ONE)
    }

    pub fn is_positive(self) -> bool {
        self.0 > 0
    }
}

impl FromStr for Fixed {
    type Err = DecimalError;

    /// Reads `[-]digits[.digits]`, the plain decimal notation of JSON numbers
    /// and strings. Exponents are refused rather than risk an inexact shift;
    /// trailing zeros past the 8th fractional digit are accepted (`1.000000000`).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (negative, digits) = match text.as_bytes().first() {
            Some(b'-') => (true, &text[1..]),
            Some(b'+') => (false, &text[1..]),
            _ => (false, text),
        };
        let (whole, fraction) = match digits.split_once('.') {
            Some((w, f)) => (w, f),
            None => (digits, ""),
        };
        if whole.is_empty() && fraction.is_empty()
            || !whole.bytes().all(|b| b.is_ascii_digit())
            || !fraction.bytes().all(|b| b.is_ascii_digit())
            || digits.ends_with('.') && whole.is_empty()
        {
            return Err(DecimalError::Syntax);
        }
        let fraction = fraction.trim_end_matches('0');
        if fraction.len() > SCALE as usize {
            return Err(DecimalError::TooPrecise);
        }
        let mut value: i64 = 0;
        for b in whole.bytes() {
            value = value
                .checked_mul(10)
                .and_then(|v| v.checked_add(i64::from(b - b'0')))
                .ok_or(DecimalError::Overflow)?;
        }
        value = value.checked_mul(ONE).ok_or(DecimalError::Overflow)?;
        let mut frac: i64 = 0;
        for b in fraction.bytes() {
            frac = frac * 10 + i64::from(b - b'0');
        }
        frac *= 10_i64.pow(SCALE - fraction.len() as u32);
        value = value.checked_add(frac).ok_or(DecimalError::Overflow)?;
        Ok(Fixed(if negative { -value } else { value }))
    }
}

impl fmt::Display for Fixed {
    /// The shortest exact form: `100.5`, `3`, `0.00000001`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(scaled(i128::from(self.0), &mut [0; 41]))
    }
}

impl serde::Serialize for Fixed {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Fixed {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<str>>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A wide fixed-point decimal (8 fractional digits in an `i128`) for sums of
/// quantities, where `i64` could overflow on a busy window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Wide(pub i128);

impl fmt::Display for Wide {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(scaled(self.0, &mut [0; 41]))
    }
}

impl serde::Serialize for Wide {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A sum of price × qty with all 16 fractional digits kept, for a VWAP.
///
/// 256 bits, because one product of two 8-digit decimals takes up to 126 of
/// an `i128`'s bits: an `i128` sum overflows after three of the largest
/// trades the contract admits, where this one needs 2^128 of them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Notional(pub I256);

impl Notional {
    /// `price × qty` of two 8-digit decimals (a [`Fixed`]'s `i64`, or an
    /// Arrow `Decimal128`'s `i128`): exact, as no product of two `i128`s
    /// reaches 256 bits.
    pub fn of(price: i128, qty: i128) -> Notional {
        // An i128 product when it fits, as every realistic one does: a
        // 256-bit multiply costs several times more.
        Notional(match price.checked_mul(qty) {
            Some(product) => I256::from(product),
            None => I256::from(price).wrapping_mul(I256::from(qty)),
        })
    }

    /// The sum, or `None` past 256 bits.
    pub fn checked_add(self, other: Notional) -> Option<Notional> {
        self.0.checked_add(other.0).map(Notional)
    }

    /// The volume-weighted average price: this notional over `volume` (8
    /// fractional digits), at 8 digits rounded half away from zero; `None`
    /// for no volume or a quotient past an `i128`.
    pub fn vwap(self, volume: i128) -> Option<Wide> {
        if volume == 0 {
            return None;
        }
        let (n, v) = (self.0, I256::from(volume));
        let (q, r) = (n / v, n % v);
        let round = if 2 * r.abs() >= v.abs() {
            n.signum() * v.signum()
        } else {
            I256::ZERO
        };
        i128::try_from(q + round).ok().map(Wide)
    }
}

/// Adds a trade within one window or group, where 2^128 trades cannot occur.
impl AddAssign for Notional {
    fn add_assign(&mut self, other: Notional) {
        self.0 += other.0;
    }
}

/// Room for the longest scaled `i128`: 39 digits, a sign and a point.
pub type Digits = [u8; 41];

/// The shortest exact text of `value` × 10^-8 (`100.5`, `3`, `0.00000001`),
/// written into `buf`: no allocation, since this runs for every price and
/// quantity out.
pub fn scaled(value: i128, buf: &mut Digits) -> &str {
    scaled_by(value, SCALE, buf)
}

/// Fractional digits of a sum of price × qty kept whole: see [`Notional`].
pub const NOTIONAL_SCALE: u32 = 2 * SCALE;

/// As [`scaled`], for `value` × 10^-`scale` (`scale` ≤ 16).
pub fn scaled_by(value: i128, scale: u32, buf: &mut Digits) -> &str {
    let digits = scaled_digits(value, scale, buf);
    std::str::from_utf8(digits).unwrap_or_default()
}

/// [`scaled_by`]'s text as bytes, for writers of bytes (JSON): ASCII, so
/// there is nothing to check.
pub fn scaled_digits(value: i128, scale: u32, buf: &mut Digits) -> &[u8] {
    let abs = value.unsigned_abs();
    // u64 arithmetic where it fits: u128 division is a library call.
    let (whole, frac) = match u64::try_from(abs) {
        Ok(small) => {
            let one = 10u64.pow(scale);
            (u128::from(small / one), small % one)
        }
        Err(_) => {
            let one = 10u128.pow(scale);
            (abs / one, (abs % one) as u64)
        }
    };
    let mut len = 0;
    let mut put = |bytes: &[u8]| {
        buf[len..len + bytes.len()].copy_from_slice(bytes);
        len += bytes.len();
    };
    if value < 0 {
        put(b"-");
    }
    let mut text = itoa::Buffer::new();
    put(match u64::try_from(whole) {
        Ok(small) => text.format(small),
        Err(_) => text.format(whole),
    }
    .as_bytes());
    if frac != 0 {
        // The fraction's digits, zero-padded to `scale`, without trailing zeros.
        let digits = text.format(frac).as_bytes();
        let end = digits.iter().rposition(|&d| d != b'0').map_or(0, |i| i + 1);
        put(b".");
        put(&b"0000000000000000"[..scale as usize - digits.len()]);
        put(&digits[..end]);
    }
    &buf[..len]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_plain_decimals() {
        assert_eq!("100.10".parse(), Ok(Fixed(10_010_000_000)));
        assert_eq!("0.00000001".parse(), Ok(Fixed(1)));
        assert_eq!("5".parse(), Ok(Fixed::units(5)));
        assert_eq!(".5".parse(), Ok(Fixed(50_000_000)));
        assert_eq!("-2.5".parse(), Ok(Fixed(-250_000_000)));
        assert_eq!("1.000000000".parse(), Ok(Fixed(ONE)));
    }

    #[test]
    fn refuses_what_is_not_exact() {
        assert_eq!(
            "0.000000001".parse::<Fixed>(),
            Err(DecimalError::TooPrecise)
        );
        assert_eq!("1e3".parse::<Fixed>(), Err(DecimalError::Syntax));
        assert_eq!("".parse::<Fixed>(), Err(DecimalError::Syntax));
        assert_eq!(".".parse::<Fixed>(), Err(DecimalError::Syntax));
        assert_eq!("5.".parse::<Fixed>(), Ok(Fixed::units(5)));
        assert_eq!("1.2.3".parse::<Fixed>(), Err(DecimalError::Syntax));
        assert_eq!("abc".parse::<Fixed>(), Err(DecimalError::Syntax));
        assert_eq!(
            "99999999999999999999".parse::<Fixed>(),
            Err(DecimalError::Overflow)
        );
    }

    #[test]
    fn displays_shortest_exact_form() {
        assert_eq!(Fixed(10_010_000_000).to_string(), "100.1");
        assert_eq!(Fixed::units(3).to_string(), "3");
        assert_eq!(Fixed(1).to_string(), "0.00000001");
        assert_eq!(Fixed(-150_000_000).to_string(), "-1.5");
    }

    #[test]
    fn vwap_rounds_half_away_from_zero() {
        let fixed = |text: &str| i128::from(text.parse::<Fixed>().unwrap().0);
        // (3 × 100.00 + 3 × 100.10) / 6 = 100.05 exactly.
        let mut n = Notional::of(fixed("100"), fixed("3"));
        n += Notional::of(fixed("100.10"), fixed("3"));
        assert_eq!(n.vwap(fixed("6")).unwrap().to_string(), "100.05");
        // 1 / 3 at 8 digits, 2 / 3 rounds up, and so does -2 / 3 (away from zero).
        let one = i128::from(ONE);
        assert_eq!(Notional::of(one, one).vwap(3 * one).unwrap().0, 33_333_333);
        assert_eq!(
            Notional::of(2 * one, one).vwap(3 * one).unwrap().0,
            66_666_667
        );
        assert_eq!(
            Notional::of(-2 * one, one).vwap(3 * one).unwrap().0,
            -66_666_667
        );
        assert_eq!(Notional::of(1, 1).vwap(0), None);
    }

    #[test]
    fn the_largest_trades_sum_without_overflow() {
        let max = i128::from(i64::MAX);
        let mut n = Notional::default();
        for _ in 0..1000 {
            n += Notional::of(max, max);
        }
        assert_eq!(n.vwap(1000 * max).unwrap().0, max);
        // Only `i128` inputs past any `Fixed` come near 256 bits.
        let huge = Notional::of(i128::MAX, i128::MAX);
        let twice = huge.checked_add(huge).unwrap();
        assert_eq!(twice.checked_add(huge), None);
    }

    /// `value` × 10^-`scale` in its shortest exact text, by string surgery.
    fn scaled_model(value: i128, scale: u32) -> String {
        let width = scale as usize + 1;
        let digits = format!("{:0>width$}", value.unsigned_abs());
        let (whole, frac) = digits.split_at(digits.len() - scale as usize);
        let frac = frac.trim_end_matches('0');
        let sign = if value < 0 { "-" } else { "" };
        match frac {
            "" => format!("{sign}{whole}"),
            frac => format!("{sign}{whole}.{frac}"),
        }
    }

    proptest! {
        #[test]
        fn scaled_writes_the_model_text(
            value in prop_oneof![any::<i64>().prop_map(i128::from), any::<i128>()],
            scale in 0u32..=16,
        ) {
            let mut buf = [0; 41];
            prop_assert_eq!(scaled_by(value, scale, &mut buf), scaled_model(value, scale));
        }

        #[test]
        fn display_then_parse_is_identity(v in any::<i64>()) {
            prop_assume!(v != i64::MIN);
            prop_assert_eq!(Fixed(v).to_string().parse::<Fixed>(), Ok(Fixed(v)));
        }
    }
}

//! `vwap(price, qty)`: the volume-weighted average price as the engine
//! computes a candle's, for SQL.
//!
//! `sum(price * qty) / sum(qty)` in plain SQL divides a `Decimal128` at 16
//! fractional digits, which DataFusion first rescales by 10^12: it overflows
//! once a group's notional passes about 1.7e10, an ordinary day on a busy
//! symbol. This aggregate keeps the exact notional in an `i128` (16 digits,
//! good to 1.7e22) and divides once at the end with [`Wide::ratio`], so a
//! query's VWAP and a candle's agree to the last digit. An overflow is an
//! error, never a wrapped number.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Decimal128Type, Field, FieldRef};
use datafusion::common::{exec_datafusion_err, plan_err, Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Signature, Volatility,
};
use operators::decimal::Wide;

/// Prices and quantities as the engine holds them: 8 fractional digits.
const DECIMAL: DataType = DataType::Decimal128(38, 8);
/// A notional: the product of two 8-digit decimals.
const NOTIONAL: DataType = DataType::Decimal128(38, 16);

/// The `vwap` aggregate, to register on a session.
pub fn udaf() -> AggregateUDF {
    AggregateUDF::from(Vwap {
        signature: Signature::any(2, Volatility::Immutable),
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Vwap {
    signature: Signature,
}

impl AggregateUDFImpl for Vwap {
    fn name(&self) -> &str {
        "vwap"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    /// Integers and decimals of at most 8 fractional digits widen exactly to
    /// the engine's decimals; anything else would be rounded, so is refused.
    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        for arg in args {
            match arg {
                DataType::Decimal128(_, scale) if (0..=8).contains(scale) => {}
                t if t.is_integer() || t.is_null() => {}
                t => return plan_err!("vwap(price, qty) takes decimals of at most 8 fractional digits or integers, not {t}"),
            }
        }
        Ok(DECIMAL)
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::<Sums>::default())
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![
            Arc::new(Field::new(
                format!("{}[notional]", args.name),
                NOTIONAL,
                true,
            )),
            Arc::new(Field::new(format!("{}[volume]", args.name), DECIMAL, true)),
        ])
    }
}

/// Exact sums at the engine's scales: notional at 16 digits, volume at 8.
#[derive(Debug, Default)]
struct Sums {
    notional: i128,
    volume: i128,
}

impl Sums {
    fn add(&mut self, notional: i128, volume: i128) -> Result<()> {
        self.notional = self
            .notional
            .checked_add(notional)
            .ok_or_else(|| exec_datafusion_err!("vwap: the notional overflows 128 bits"))?;
        self.volume = self
            .volume
            .checked_add(volume)
            .ok_or_else(|| exec_datafusion_err!("vwap: the volume overflows 128 bits"))?;
        Ok(())
    }
}

/// The column as 8-digit decimals: exact for every type `return_type` admits.
fn decimals(column: &ArrayRef) -> Result<ArrayRef> {
    Ok(cast(column, &DECIMAL)?)
}

impl Accumulator for Sums {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let (price, qty) = (decimals(&values[0])?, decimals(&values[1])?);
        let (price, qty) = (
            price.as_primitive::<Decimal128Type>(),
            qty.as_primitive::<Decimal128Type>(),
        );
        for i in 0..price.len() {
            if price.is_null(i) || qty.is_null(i) {
                continue;
            }
            let (p, q) = (price.value(i), qty.value(i));
            let notional = p
                .checked_mul(q)
                .ok_or_else(|| exec_datafusion_err!("vwap: {p}e-8 * {q}e-8 overflows 128 bits"))?;
            self.add(notional, q)?;
        }
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let notional = states[0].as_primitive::<Decimal128Type>();
        let volume = states[1].as_primitive::<Decimal128Type>();
        for i in 0..notional.len() {
            if !notional.is_null(i) && !volume.is_null(i) {
                self.add(notional.value(i), volume.value(i))?;
            }
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![
            ScalarValue::Decimal128(Some(self.notional), 38, 16),
            ScalarValue::Decimal128(Some(self.volume), 38, 8),
        ])
    }

    /// NULL where there was no volume, as `avg` of nothing is.
    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::Decimal128(
            Wide::ratio(self.notional, self.volume).map(|w| w.0),
            38,
            8,
        ))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Decimal128Array, Int64Array};

    fn column(raw: &[Option<i128>]) -> ArrayRef {
        Arc::new(
            Decimal128Array::from(raw.to_vec())
                .with_precision_and_scale(38, 8)
                .unwrap(),
        )
    }

    fn vwap(sums: &mut Sums) -> Option<i128> {
        match sums.evaluate().unwrap() {
            ScalarValue::Decimal128(v, 38, 8) => v,
            other => panic!("{other:?}"),
        }
    }

    const ONE: i128 = 100_000_000;

    #[test]
    fn rounds_like_the_candles_and_skips_nulls() {
        let mut sums = Sums::default();
        // 1 @ 1 and 2 @ 2: 5 / 3 = 1.666666666… → 1.66666667.
        sums.update_batch(&[
            column(&[Some(ONE), Some(2 * ONE), None]),
            column(&[Some(ONE), Some(2 * ONE), Some(ONE)]),
        ])
        .unwrap();
        assert_eq!(vwap(&mut sums), Some(166_666_667));
        assert_eq!(vwap(&mut Sums::default()), None);
    }

    #[test]
    fn partial_sums_merge_to_the_whole() {
        let (mut a, mut b, mut whole) = (Sums::default(), Sums::default(), Sums::default());
        let prices = column(&[Some(3 * ONE), Some(7 * ONE + 1)]);
        let qtys = column(&[Some(ONE / 3), Some(5 * ONE)]);
        a.update_batch(&[prices.slice(0, 1), qtys.slice(0, 1)])
            .unwrap();
        b.update_batch(&[prices.slice(1, 1), qtys.slice(1, 1)])
            .unwrap();
        whole.update_batch(&[prices, qtys]).unwrap();
        let state: Vec<ArrayRef> = b
            .state()
            .unwrap()
            .into_iter()
            .map(|s| s.to_array().unwrap())
            .collect();
        a.merge_batch(&state).unwrap();
        assert_eq!(vwap(&mut a), vwap(&mut whole));
    }

    #[test]
    fn notionals_past_what_sum_over_sum_survives_are_exact_and_overflow_is_an_error() {
        // 1,000,000 @ 90,000: a notional of 9e10, past the 1.7e10 at
        // which DataFusion's decimal division overflows.
        let mut sums = Sums::default();
        let prices = column(&[Some(90_000 * ONE + 1), Some(90_000 * ONE)]);
        let qtys = column(&[Some(500_000 * ONE), Some(500_000 * ONE)]);
        sums.update_batch(&[prices, qtys]).unwrap();
        // (90000.00000001 + 90000) / 2 = 90000.000000005 → 90000.00000001.
        assert_eq!(vwap(&mut sums), Some(90_000 * ONE + 1));
        let huge = column(&[Some(i128::from(i64::MAX))]);
        let mut sums = Sums::default();
        for _ in 0..3 {
            if let Err(e) = sums.update_batch(&[huge.clone(), huge.clone()]) {
                assert!(e.to_string().contains("overflows"), "{e}");
                return;
            }
        }
        panic!("three notionals of 8.5e37 fit in an i128");
    }

    #[test]
    fn integers_widen_and_finer_decimals_are_refused() {
        let mut sums = Sums::default();
        let qty: ArrayRef = Arc::new(Int64Array::from(vec![2]));
        sums.update_batch(&[column(&[Some(5 * ONE)]), qty]).unwrap();
        assert_eq!(vwap(&mut sums), Some(5 * ONE));
        let udaf = udaf();
        assert!(udaf
            .return_type(&[DataType::Decimal128(38, 16), DECIMAL])
            .is_err());
        assert!(udaf.return_type(&[DECIMAL, DataType::Int64]).is_ok());
    }
}

//! `vwap(price, qty)` and `notional(price, qty)`: a volume-weighted average
//! price as the engine computes a candle's, and the exact sum it divides.
//!
//! `sum(price * qty) / sum(qty)` in plain SQL divides a `Decimal128` at 16
//! fractional digits, which DataFusion first rescales by 10^12: it overflows
//! once a group's notional passes about 1.7e10, an ordinary day on a busy
//! symbol. This aggregate sums the exact [`Notional`] in 256 bits, as the
//! candles do, and divides once at the end with [`Notional::vwap`], so a
//! query's VWAP and a candle's agree to the last digit. `sum(price * qty)`
//! has the other hazard: DataFusion's decimal sum wraps silently past
//! 1.7e22; `notional` is exact in 256 bits. An overflow (only reachable with
//! computed inputs far past any price) is an error, never a wrapped number.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    i256, DataType, Decimal128Type, Decimal256Type, Field, FieldRef,
};
use datafusion::common::{exec_datafusion_err, plan_err, Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Signature, Volatility,
};
use ethnum::I256;
use operators::decimal::Notional;

/// Prices and quantities as the engine holds them: 8 fractional digits.
const DECIMAL: DataType = DataType::Decimal128(38, 8);
/// A partial notional between aggregation stages: 16 digits in 256 bits.
const NOTIONAL: DataType = DataType::Decimal256(76, 16);

/// The aggregates, to register on a session.
pub fn udafs() -> [AggregateUDF; 2] {
    [Output::Vwap, Output::Notional].map(|output| {
        AggregateUDF::from(NotionalSum {
            output,
            signature: Signature::any(2, Volatility::Immutable),
        })
    })
}

/// What an aggregate makes of its sums.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Output {
    /// The notional over the volume, at 8 digits.
    Vwap,
    /// The notional itself, at 16 digits.
    Notional,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct NotionalSum {
    output: Output,
    signature: Signature,
}

impl AggregateUDFImpl for NotionalSum {
    fn name(&self) -> &str {
        match self.output {
            Output::Vwap => "vwap",
            Output::Notional => "notional",
        }
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
                t => return plan_err!("{}(price, qty) takes decimals of at most 8 fractional digits or integers, not {t}", self.name()),
            }
        }
        Ok(match self.output {
            Output::Vwap => DECIMAL,
            Output::Notional => NOTIONAL,
        })
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(Sums::new(self.output)))
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
#[derive(Debug)]
struct Sums {
    output: Output,
    notional: Notional,
    volume: i128,
}

impl Sums {
    fn new(output: Output) -> Sums {
        Sums {
            output,
            notional: Notional::default(),
            volume: 0,
        }
    }

    fn add(&mut self, notional: Notional, volume: i128) -> Result<()> {
        self.notional = self
            .notional
            .checked_add(notional)
            .ok_or_else(|| exec_datafusion_err!("vwap: the notional overflows 256 bits"))?;
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

impl Sums {
    fn total(&self) -> ScalarValue {
        let raw = i256::from_le_bytes(self.notional.0.to_le_bytes());
        ScalarValue::Decimal256(Some(raw), 76, 16)
    }
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
            let qty = qty.value(i);
            self.add(Notional::of(price.value(i), qty), qty)?;
        }
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let notional = states[0].as_primitive::<Decimal256Type>();
        let volume = states[1].as_primitive::<Decimal128Type>();
        for i in 0..notional.len() {
            if !notional.is_null(i) && !volume.is_null(i) {
                let partial = I256::from_le_bytes(notional.value(i).to_le_bytes());
                self.add(Notional(partial), volume.value(i))?;
            }
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![
            self.total(),
            ScalarValue::Decimal128(Some(self.volume), 38, 8),
        ])
    }

    /// NULL where there was no volume, as `avg` of nothing is.
    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(match self.output {
            Output::Vwap => {
                ScalarValue::Decimal128(self.notional.vwap(self.volume).map(|w| w.0), 38, 8)
            }
            Output::Notional => self.total(),
        })
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
        let mut sums = Sums::new(Output::Vwap);
        // 1 @ 1 and 2 @ 2: 5 / 3 = 1.666666666… → 1.66666667.
        sums.update_batch(&[
            column(&[Some(ONE), Some(2 * ONE), None]),
            column(&[Some(ONE), Some(2 * ONE), Some(ONE)]),
        ])
        .unwrap();
        assert_eq!(vwap(&mut sums), Some(166_666_667));
        assert_eq!(vwap(&mut Sums::new(Output::Vwap)), None);
    }

    #[test]
    fn partial_sums_merge_to_the_whole() {
        let (mut a, mut b, mut whole) = (
            Sums::new(Output::Vwap),
            Sums::new(Output::Vwap),
            Sums::new(Output::Vwap),
        );
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
    fn notionals_past_what_sum_over_sum_survives_are_exact() {
        // 1,000,000 @ 90,000: a notional of 9e10, past the 1.7e10 at
        // which DataFusion's decimal division overflows; and the largest
        // trades a `Fixed` can hold, past an `i128` notional.
        let mut sums = Sums::new(Output::Vwap);
        let prices = column(&[Some(90_000 * ONE + 1), Some(90_000 * ONE)]);
        let qtys = column(&[Some(500_000 * ONE), Some(500_000 * ONE)]);
        sums.update_batch(&[prices, qtys]).unwrap();
        // (90000.00000001 + 90000) / 2 = 90000.000000005 → 90000.00000001.
        assert_eq!(vwap(&mut sums), Some(90_000 * ONE + 1));
        let max = i128::from(i64::MAX);
        let column_of_max = column(&[Some(max); 4]);
        let mut sums = Sums::new(Output::Vwap);
        sums.update_batch(&[column_of_max.clone(), column_of_max.clone()])
            .unwrap();
        assert_eq!(vwap(&mut sums), Some(max));
        let mut total = Sums::new(Output::Notional);
        total
            .update_batch(&[column_of_max.clone(), column_of_max])
            .unwrap();
        let exact = I256::from(max) * I256::from(max) * I256::from(4);
        assert_eq!(
            total.evaluate().unwrap(),
            ScalarValue::Decimal256(Some(i256::from_le_bytes(exact.to_le_bytes())), 76, 16)
        );
    }

    #[test]
    fn overflow_is_an_error() {
        let huge = column(&[Some(i128::MAX / ONE * ONE); 3]);
        let err = Sums::new(Output::Vwap)
            .update_batch(&[huge.clone(), huge])
            .unwrap_err();
        assert!(
            err.to_string().contains("vwap: the volume overflows"),
            "{err}"
        );
    }

    #[test]
    fn integers_widen_and_finer_decimals_are_refused() {
        let mut sums = Sums::new(Output::Vwap);
        let qty: ArrayRef = Arc::new(Int64Array::from(vec![2]));
        sums.update_batch(&[column(&[Some(5 * ONE)]), qty]).unwrap();
        assert_eq!(vwap(&mut sums), Some(5 * ONE));
        let [udaf, _] = udafs();
        assert!(udaf
            .return_type(&[DataType::Decimal128(38, 16), DECIMAL])
            .is_err());
        assert!(udaf.return_type(&[DECIMAL, DataType::Int64]).is_ok());
    }
}

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

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Decimal128Array, Decimal256Array,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    i256, DataType, Decimal128Type, Decimal256Type, Field, FieldRef,
};
use datafusion::common::{exec_datafusion_err, plan_err, Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, EmitTo, GroupsAccumulator, Signature, Volatility,
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
        Ok(Box::new(Single::new(self.output)))
    }

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(
        &self,
        _args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(Grouped {
            output: self.output,
            groups: Vec::new(),
        }))
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
#[derive(Clone, Copy, Debug, Default)]
struct Sums {
    notional: Notional,
    volume: i128,
}

impl Sums {
    fn add(&mut self, notional: Notional, volume: i128) -> Result<()> {
        self.notional = self
            .notional
            .checked_add(notional)
            .ok_or_else(|| exec_datafusion_err!("the notional overflows 256 bits"))?;
        self.volume = self
            .volume
            .checked_add(volume)
            .ok_or_else(|| exec_datafusion_err!("the volume overflows 128 bits"))?;
        Ok(())
    }
}

/// Calls `add(row, price × qty, qty)` for each row of `(price, qty)` where
/// both are present.
fn trades(
    values: &[ArrayRef],
    mut add: impl FnMut(usize, Notional, i128) -> Result<()>,
) -> Result<()> {
    // Exact for every type `return_type` admits.
    let (price, qty) = (cast(&values[0], &DECIMAL)?, cast(&values[1], &DECIMAL)?);
    let (price, qty) = (
        price.as_primitive::<Decimal128Type>(),
        qty.as_primitive::<Decimal128Type>(),
    );
    for row in 0..price.len() {
        if price.is_valid(row) && qty.is_valid(row) {
            let q = qty.value(row);
            add(row, Notional::of(price.value(row), q), q)?;
        }
    }
    Ok(())
}

/// Calls `add(row, notional, volume)` for each row of partial sums, as
/// [`state`] writes them.
fn partials(
    states: &[ArrayRef],
    mut add: impl FnMut(usize, Notional, i128) -> Result<()>,
) -> Result<()> {
    let notional = states[0].as_primitive::<Decimal256Type>();
    let volume = states[1].as_primitive::<Decimal128Type>();
    for row in 0..notional.len() {
        if notional.is_valid(row) && volume.is_valid(row) {
            let partial = I256::from_le_bytes(notional.value(row).to_le_bytes());
            add(row, Notional(partial), volume.value(row))?;
        }
    }
    Ok(())
}

fn notionals(sums: &[Sums]) -> Result<ArrayRef> {
    let raw = sums
        .iter()
        .map(|s| i256::from_le_bytes(s.notional.0.to_le_bytes()));
    Ok(Arc::new(
        Decimal256Array::from_iter_values(raw).with_precision_and_scale(76, 16)?,
    ))
}

/// `sums` as the state columns between aggregation stages.
fn state(sums: &[Sums]) -> Result<Vec<ArrayRef>> {
    let volumes = Decimal128Array::from_iter_values(sums.iter().map(|s| s.volume));
    Ok(vec![
        notionals(sums)?,
        Arc::new(volumes.with_precision_and_scale(38, 8)?),
    ])
}

/// What `output` makes of each of `sums`: a VWAP is NULL where there was no
/// volume, as `avg` of nothing is.
fn results(output: Output, sums: &[Sums]) -> Result<ArrayRef> {
    Ok(match output {
        Output::Vwap => {
            let vwaps: Decimal128Array = sums
                .iter()
                .map(|s| s.notional.vwap(s.volume).map(|w| w.0))
                .collect();
            Arc::new(vwaps.with_precision_and_scale(38, 8)?)
        }
        Output::Notional => notionals(sums)?,
    })
}

/// One group's sums: aggregates without `GROUP BY`.
#[derive(Debug)]
struct Single {
    output: Output,
    sums: Sums,
}

impl Single {
    fn new(output: Output) -> Single {
        Single {
            output,
            sums: Sums::default(),
        }
    }
}

impl Accumulator for Single {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        trades(values, |_, notional, qty| self.sums.add(notional, qty))
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        partials(states, |_, notional, volume| {
            self.sums.add(notional, volume)
        })
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        state(&[self.sums])?
            .iter()
            .map(|column| ScalarValue::try_from_array(column, 0))
            .collect()
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        ScalarValue::try_from_array(&results(self.output, &[self.sums])?, 0)
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
    }
}

/// Every group's sums in one vector indexed by group, which DataFusion
/// prefers for `GROUP BY`: a per-group [`Single`] costs three times the
/// time of the built-in sums.
#[derive(Debug)]
struct Grouped {
    output: Output,
    groups: Vec<Sums>,
}

impl GroupsAccumulator for Grouped {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.groups.resize(total_num_groups, Sums::default());
        trades(values, |row, notional, qty| match passes(opt_filter, row) {
            true => self.groups[group_indices[row]].add(notional, qty),
            false => Ok(()),
        })
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        results(self.output, &emit_to.take_needed(&mut self.groups))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        state(&emit_to.take_needed(&mut self.groups))
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.groups.resize(total_num_groups, Sums::default());
        partials(values, |row, notional, volume| {
            self.groups[group_indices[row]].add(notional, volume)
        })
    }

    /// Each row as its own partial sums, for when DataFusion skips partial
    /// aggregation of input with many distinct groups.
    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        let mut rows = vec![Sums::default(); values[0].len()];
        trades(values, |row, notional, qty| {
            if passes(opt_filter, row) {
                rows[row] = Sums {
                    notional,
                    volume: qty,
                };
            }
            Ok(())
        })?;
        state(&rows)
    }

    fn size(&self) -> usize {
        self.groups.capacity() * std::mem::size_of::<Sums>()
    }
}

/// Whether a `FILTER (WHERE …)` clause keeps `row`: NULL counts as false.
fn passes(filter: Option<&BooleanArray>, row: usize) -> bool {
    filter.is_none_or(|f| f.is_valid(row) && f.value(row))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Int64Array;

    fn column(raw: &[Option<i128>]) -> ArrayRef {
        Arc::new(
            Decimal128Array::from(raw.to_vec())
                .with_precision_and_scale(38, 8)
                .unwrap(),
        )
    }

    fn vwap(sums: &mut Single) -> Option<i128> {
        match sums.evaluate().unwrap() {
            ScalarValue::Decimal128(v, 38, 8) => v,
            other => panic!("{other:?}"),
        }
    }

    const ONE: i128 = 100_000_000;

    #[test]
    fn rounds_like_the_candles_and_skips_nulls() {
        let mut sums = Single::new(Output::Vwap);
        // 1 @ 1 and 2 @ 2: 5 / 3 = 1.666666666… → 1.66666667.
        sums.update_batch(&[
            column(&[Some(ONE), Some(2 * ONE), None]),
            column(&[Some(ONE), Some(2 * ONE), Some(ONE)]),
        ])
        .unwrap();
        assert_eq!(vwap(&mut sums), Some(166_666_667));
        assert_eq!(vwap(&mut Single::new(Output::Vwap)), None);
    }

    #[test]
    fn partial_sums_merge_to_the_whole() {
        let (mut a, mut b, mut whole) = (
            Single::new(Output::Vwap),
            Single::new(Output::Vwap),
            Single::new(Output::Vwap),
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
        let mut sums = Single::new(Output::Vwap);
        let prices = column(&[Some(90_000 * ONE + 1), Some(90_000 * ONE)]);
        let qtys = column(&[Some(500_000 * ONE), Some(500_000 * ONE)]);
        sums.update_batch(&[prices, qtys]).unwrap();
        // (90000.00000001 + 90000) / 2 = 90000.000000005 → 90000.00000001.
        assert_eq!(vwap(&mut sums), Some(90_000 * ONE + 1));
        let max = i128::from(i64::MAX);
        let column_of_max = column(&[Some(max); 4]);
        let mut sums = Single::new(Output::Vwap);
        sums.update_batch(&[column_of_max.clone(), column_of_max.clone()])
            .unwrap();
        assert_eq!(vwap(&mut sums), Some(max));
        let mut total = Single::new(Output::Notional);
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
        let err = Single::new(Output::Vwap)
            .update_batch(&[huge.clone(), huge])
            .unwrap_err();
        assert!(err.to_string().contains("the volume overflows"), "{err}");
    }

    #[test]
    fn groups_filter_and_merge_as_single_groups_do() {
        let prices = column(&[
            Some(3 * ONE),
            Some(7 * ONE + 1),
            Some(5 * ONE),
            None,
            Some(ONE),
        ]);
        let qtys = column(&[
            Some(ONE / 3),
            Some(5 * ONE),
            Some(ONE),
            Some(ONE),
            Some(2 * ONE),
        ]);
        let groups = [0, 1, 0, 1, 1];
        // The third row is filtered out, the fourth has no price.
        let filter = BooleanArray::from(vec![Some(true), Some(true), None, Some(true), Some(true)]);
        let mut grouped = Grouped {
            output: Output::Vwap,
            groups: Vec::new(),
        };
        let values = [prices.clone(), qtys.clone()];
        grouped
            .update_batch(&values, &groups, Some(&filter), 2)
            .unwrap();
        let expected: Vec<Option<i128>> = [vec![0], vec![1, 4]]
            .iter()
            .map(|rows| {
                let mut single = Single::new(Output::Vwap);
                for &row in rows {
                    single
                        .update_batch(&[prices.slice(row, 1), qtys.slice(row, 1)])
                        .unwrap();
                }
                vwap(&mut single)
            })
            .collect();
        let got = grouped.evaluate(EmitTo::All).unwrap();
        let got: Vec<Option<i128>> = got.as_primitive::<Decimal128Type>().iter().collect();
        assert_eq!(got, expected);
        // Rows turned into state and merged give the same.
        let state = grouped.convert_to_state(&values, Some(&filter)).unwrap();
        let mut merged = Grouped {
            output: Output::Vwap,
            groups: Vec::new(),
        };
        merged.merge_batch(&state, &groups, 2).unwrap();
        let merged = merged.evaluate(EmitTo::All).unwrap();
        let merged: Vec<Option<i128>> = merged.as_primitive::<Decimal128Type>().iter().collect();
        assert_eq!(merged, expected);
    }

    #[test]
    fn integers_widen_and_finer_decimals_are_refused() {
        let mut sums = Single::new(Output::Vwap);
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

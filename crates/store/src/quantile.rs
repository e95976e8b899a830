//! `approx_quantile(value, q)`: a quantile of a numeric column from a log-bucket histogram,
//! with a grouped accumulator, for the latency and size percentiles investigators and the
//! stats API ask for over millions of events.
//!
//! DataFusion's `approx_percentile_cont` (t-digest) has no grouped accumulator: per batch it
//! splits the rows by group, sorts each group's values and merges them into that group's
//! digest. Here every value is one increment of a counter: a positive `f64`'s bit pattern
//! grows with its value, so its top bits (exponent and the first [`MANTISSA_BITS`] of the
//! mantissa) number a bucket 1/128 of a power of two wide. The answer is the middle of the
//! bucket holding the value of rank `q * (n - 1)` (rounded), within 0.4% of that value.
//! Negative values are counted in a mirrored histogram, zeros apart; nulls and NaN are
//! skipped.
//!
//! Bound: a group's histogram spans at most [`MAX_BUCKETS`] buckets per sign (64 powers of
//! two: nanoseconds from 1 ns to 584 years fit). A value further below a group's largest
//! one is counted in the lowest kept bucket, so only quantiles among those lowest values
//! lose accuracy (the collapsing of DDSketch).

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BinaryArray, BooleanArray, Float64Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Float64Type};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, ColumnarValue, EmitTo, GroupsAccumulator,
    Signature, Volatility,
};

/// Mantissa bits kept in a bucket number: 128 buckets per power of two.
const MANTISSA_BITS: u32 = 7;
const SHIFT: u32 = 52 - MANTISSA_BITS;
/// Most buckets one group's histogram keeps per sign (64 powers of two); 64 KiB of counters.
pub const MAX_BUCKETS: usize = 64 << MANTISSA_BITS;

/// The `approx_quantile` aggregate function, to register on a session.
pub fn approx_quantile() -> AggregateUDF {
    AggregateUDF::from(ApproxQuantile {
        signature: Signature::any(2, Volatility::Immutable),
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct ApproxQuantile {
    signature: Signature,
}

impl AggregateUDFImpl for ApproxQuantile {
    fn name(&self) -> &str {
        "approx_quantile"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        if !arg_types[0].is_numeric() && arg_types[0] != DataType::Null {
            return plan_err!(
                "approx_quantile: the first argument must be a number column, not {}",
                arg_types[0]
            );
        }
        Ok(DataType::Float64)
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(Single {
            q: quantile_argument(&args)?,
            sketch: Sketch::default(),
        }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(
            format!("{}[sketch]", args.name),
            DataType::Binary,
            true,
        ))])
    }

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(Groups {
            q: quantile_argument(&args)?,
            sketches: Vec::new(),
        }))
    }
}

/// The second argument: a constant between 0 and 1.
fn quantile_argument(args: &AccumulatorArgs) -> Result<f64> {
    let error = || {
        exec_err!("approx_quantile: the second argument must be a constant number between 0 and 1")
    };
    let Some(expr) = args.exprs.get(1) else {
        return error();
    };
    let empty = datafusion::arrow::array::RecordBatch::new_empty(Arc::new(
        datafusion::arrow::datatypes::Schema::empty(),
    ));
    let Ok(ColumnarValue::Scalar(value)) = expr.evaluate(&empty) else {
        return error();
    };
    match value.cast_to(&DataType::Float64) {
        Ok(ScalarValue::Float64(Some(q))) if (0.0..=1.0).contains(&q) => Ok(q),
        _ => error(),
    }
}

/// The values as `f64`.
fn floats(values: &ArrayRef) -> Result<ArrayRef> {
    Ok(cast(values, &DataType::Float64)?)
}

/// One histogram per sign.
#[derive(Debug, Default, Clone, PartialEq)]
struct Sketch {
    zeros: u64,
    positive: Buckets,
    /// Of the values' magnitudes.
    negative: Buckets,
}

/// Counters for consecutive bucket numbers from `first`.
#[derive(Debug, Default, Clone, PartialEq)]
struct Buckets {
    first: u32,
    counts: Vec<u64>,
    total: u64,
}

fn bucket_of(magnitude: f64) -> u32 {
    // Positive (or +inf): the bit pattern is below 2^63, so this fits in 19 bits.
    (magnitude.to_bits() >> SHIFT) as u32
}

/// The middle of a bucket (its lower bound when the upper one is not finite).
fn bucket_value(bucket: u32) -> f64 {
    let lower = f64::from_bits(u64::from(bucket) << SHIFT);
    let upper = f64::from_bits(u64::from(bucket + 1) << SHIFT);
    if upper.is_finite() {
        lower + (upper - lower) / 2.0
    } else {
        lower
    }
}

impl Buckets {
    fn add(&mut self, bucket: u32, n: u64) {
        self.total += n;
        if self.counts.is_empty() {
            self.first = bucket;
            self.counts.push(n);
            return;
        }
        let last = self.first + self.counts.len() as u32 - 1;
        if bucket >= self.first && bucket <= last {
            self.counts[(bucket - self.first) as usize] += n;
        } else if bucket > last {
            self.counts.resize((bucket - self.first) as usize + 1, 0);
            self.counts[(bucket - self.first) as usize] += n;
            if self.counts.len() > MAX_BUCKETS {
                // Fold the lowest buckets into the lowest one kept.
                let excess = self.counts.len() - MAX_BUCKETS;
                let folded: u64 = self.counts[..=excess].iter().sum();
                self.counts.drain(..excess);
                self.counts[0] = folded;
                self.first += excess as u32;
            }
        } else {
            let lowest = last.saturating_sub(MAX_BUCKETS as u32 - 1);
            let bucket = bucket.max(lowest);
            if bucket < self.first {
                let grow = (self.first - bucket) as usize;
                self.counts.splice(0..0, std::iter::repeat_n(0, grow));
                self.first = bucket;
            }
            self.counts[(bucket - self.first) as usize] += n;
        }
    }

    fn merge(&mut self, other: &Buckets) {
        for (at, &n) in other.counts.iter().enumerate() {
            if n > 0 {
                self.add(other.first + at as u32, n);
            }
        }
    }

    /// The bucket of the value of rank `rank` (0-based, from the smallest).
    fn bucket_at(&self, rank: u64) -> u32 {
        let mut seen = 0;
        for (at, &n) in self.counts.iter().enumerate() {
            seen += n;
            if seen > rank {
                return self.first + at as u32;
            }
        }
        self.first + self.counts.len() as u32 - 1
    }
}

impl Sketch {
    fn add(&mut self, value: f64) {
        if value > 0.0 {
            self.positive.add(bucket_of(value), 1);
        } else if value < 0.0 {
            self.negative.add(bucket_of(-value), 1);
        } else if value == 0.0 {
            self.zeros += 1;
        }
        // NaN: skipped.
    }

    fn add_array(&mut self, values: &Float64Array) {
        if values.null_count() == 0 {
            for &value in values.values() {
                self.add(value);
            }
        } else {
            for value in values.iter().flatten() {
                self.add(value);
            }
        }
    }

    fn count(&self) -> u64 {
        self.zeros + self.positive.total + self.negative.total
    }

    fn merge(&mut self, other: &Sketch) {
        self.zeros += other.zeros;
        self.positive.merge(&other.positive);
        self.negative.merge(&other.negative);
    }

    fn quantile(&self, q: f64) -> Option<f64> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        // Rounded to the nearest rank; at most n - 1 as q <= 1.
        let rank = (q * (n - 1) as f64).round() as u64;
        if rank < self.negative.total {
            // The negatives from the most negative: their magnitudes from the largest.
            let from_largest = self.negative.total - 1 - rank;
            return Some(-bucket_value(self.negative.bucket_at(from_largest)));
        }
        let rank = rank - self.negative.total;
        if rank < self.zeros {
            return Some(0.0);
        }
        Some(bucket_value(self.positive.bucket_at(rank - self.zeros)))
    }

    fn size(&self) -> usize {
        std::mem::size_of::<Sketch>()
            + (self.positive.counts.capacity() + self.negative.counts.capacity()) * 8
    }

    /// Little-endian: zeros, then per sign its first bucket, its length and its counts.
    fn encode(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(24 + 8 * (self.positive.counts.len() + self.negative.counts.len()));
        out.extend_from_slice(&self.zeros.to_le_bytes());
        for buckets in [&self.positive, &self.negative] {
            out.extend_from_slice(&buckets.first.to_le_bytes());
            out.extend_from_slice(&(buckets.counts.len() as u32).to_le_bytes());
            for count in &buckets.counts {
                out.extend_from_slice(&count.to_le_bytes());
            }
        }
        out
    }

    fn decode(mut bytes: &[u8]) -> Result<Sketch> {
        fn take<const N: usize>(bytes: &mut &[u8]) -> Result<[u8; N]> {
            let Some((head, rest)) = bytes.split_first_chunk::<N>() else {
                return exec_err!("approx_quantile: a truncated partial state");
            };
            *bytes = rest;
            Ok(*head)
        }
        let mut sketch = Sketch {
            zeros: u64::from_le_bytes(take(&mut bytes)?),
            ..Sketch::default()
        };
        for sign in 0..2 {
            let first = u32::from_le_bytes(take(&mut bytes)?);
            let len = u32::from_le_bytes(take(&mut bytes)?) as usize;
            if len > MAX_BUCKETS {
                return exec_err!("approx_quantile: a partial state of {len} buckets");
            }
            let mut buckets = Buckets {
                first,
                counts: Vec::with_capacity(len),
                total: 0,
            };
            for _ in 0..len {
                let count = u64::from_le_bytes(take(&mut bytes)?);
                buckets.total += count;
                buckets.counts.push(count);
            }
            if sign == 0 {
                sketch.positive = buckets;
            } else {
                sketch.negative = buckets;
            }
        }
        Ok(sketch)
    }
}

/// The accumulator without GROUP BY.
#[derive(Debug)]
struct Single {
    q: f64,
    sketch: Sketch,
}

impl Accumulator for Single {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let values = floats(&values[0])?;
        self.sketch.add_array(values.as_primitive::<Float64Type>());
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::Float64(self.sketch.quantile(self.q)))
    }

    fn size(&self) -> usize {
        std::mem::size_of::<Single>() + self.sketch.size()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![ScalarValue::Binary(Some(self.sketch.encode()))])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        for state in states[0].as_binary::<i32>().iter().flatten() {
            self.sketch.merge(&Sketch::decode(state)?);
        }
        Ok(())
    }
}

/// Whether `row` passes an aggregate's `FILTER (WHERE ...)` (a null counts as false).
fn passes(filter: Option<&BooleanArray>, row: usize) -> bool {
    filter.is_none_or(|filter| filter.is_valid(row) && filter.value(row))
}

/// The accumulator with GROUP BY: one sketch per group.
struct Groups {
    q: f64,
    sketches: Vec<Sketch>,
}

impl GroupsAccumulator for Groups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.sketches.resize_with(total_num_groups, Sketch::default);
        let values = floats(&values[0])?;
        let values = values.as_primitive::<Float64Type>();
        if values.null_count() == 0 && opt_filter.is_none() {
            for (&value, &group) in values.values().iter().zip(group_indices) {
                self.sketches[group].add(value);
            }
            return Ok(());
        }
        for (row, &group) in group_indices.iter().enumerate() {
            if passes(opt_filter, row) && values.is_valid(row) {
                self.sketches[group].add(values.value(row));
            }
        }
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let sketches = emit_to.take_needed(&mut self.sketches);
        let q = self.q;
        Ok(Arc::new(
            sketches
                .iter()
                .map(|sketch| sketch.quantile(q))
                .collect::<Float64Array>(),
        ))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let sketches = emit_to.take_needed(&mut self.sketches);
        let encoded: Vec<Vec<u8>> = sketches.iter().map(Sketch::encode).collect();
        Ok(vec![Arc::new(BinaryArray::from_iter_values(encoded))])
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.sketches.resize_with(total_num_groups, Sketch::default);
        let states = values[0].as_binary::<i32>();
        for (row, &group) in group_indices.iter().enumerate() {
            if states.is_valid(row) {
                let other = Sketch::decode(states.value(row))?;
                self.sketches[group].merge(&other);
            }
        }
        Ok(())
    }

    /// Each row's own state (the value alone), for DataFusion's skipping of partial
    /// aggregation when groups hardly repeat.
    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        let values = floats(&values[0])?;
        let values = values.as_primitive::<Float64Type>();
        let encoded: Vec<Vec<u8>> = (0..values.len())
            .map(|row| {
                let mut sketch = Sketch::default();
                if passes(opt_filter, row) && values.is_valid(row) {
                    sketch.add(values.value(row));
                }
                sketch.encode()
            })
            .collect();
        Ok(vec![Arc::new(BinaryArray::from_iter_values(encoded))])
    }

    fn size(&self) -> usize {
        self.sketches.capacity() * std::mem::size_of::<Sketch>()
            + self
                .sketches
                .iter()
                .map(|sketch| sketch.size() - std::mem::size_of::<Sketch>())
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The exact value of rank `round(q * (n - 1))`.
    fn exact(sorted: &[f64], q: f64) -> f64 {
        sorted[(q * (sorted.len() - 1) as f64).round() as usize]
    }

    /// The batches of a query that must succeed.
    async fn run(
        context: &datafusion::prelude::SessionContext,
        sql: &str,
    ) -> Vec<datafusion::arrow::array::RecordBatch> {
        context.sql(sql).await.unwrap().collect().await.unwrap()
    }

    fn close(got: f64, want: f64) -> bool {
        (got - want).abs() <= want.abs() * 0.004 + f64::MIN_POSITIVE
    }

    proptest! {
        #[test]
        fn within_0_4_percent_of_the_exact_rank(
            values in proptest::collection::vec(
                prop_oneof![-1e9f64..1e9, 0.0f64..1e3, Just(0.0), 1e3f64..1e10], 1..2000),
            q in 0.0f64..=1.0,
            split in 0usize..2000,
        ) {
            let mut sorted = values.clone();
            sorted.sort_by(f64::total_cmp);
            let mut whole = Sketch::default();
            values.iter().for_each(|&v| whole.add(v));
            let got = whole.quantile(q).unwrap();
            let want = exact(&sorted, q);
            prop_assert!(close(got, want), "q {q}: got {got}, want {want}");
            // Two halves merged through their encoded state answer the same.
            let split = split.min(values.len());
            let (mut left, mut right) = (Sketch::default(), Sketch::default());
            values[..split].iter().for_each(|&v| left.add(v));
            values[split..].iter().for_each(|&v| right.add(v));
            let mut merged = Sketch::decode(&left.encode()).unwrap();
            merged.merge(&Sketch::decode(&right.encode()).unwrap());
            prop_assert_eq!(merged.quantile(q), whole.quantile(q));
        }
    }

    #[test]
    fn empty_nan_and_a_bounded_span() {
        let mut sketch = Sketch::default();
        assert_eq!(sketch.quantile(0.5), None);
        sketch.add(f64::NAN);
        assert_eq!(sketch.quantile(0.5), None);
        // 1e-300 is far more than 64 powers of two below 1e30: it folds into the lowest
        // bucket kept, the span stays bounded, and the top quantile is still exact-ish.
        sketch.add(1e30);
        sketch.add(1e-300);
        sketch.add(1e30);
        assert!(sketch.positive.counts.len() <= MAX_BUCKETS);
        assert_eq!(sketch.count(), 3);
        assert!(close(sketch.quantile(1.0).unwrap(), 1e30));
        assert!(sketch.quantile(0.0).unwrap() < 1e30 / 2f64.powi(62));
        assert!(Sketch::decode(&[1, 2, 3]).is_err());
    }

    #[tokio::test]
    async fn sql_by_group_over_two_partitions() {
        use datafusion::arrow::array::{RecordBatch, StringArray, UInt64Array};
        use datafusion::arrow::datatypes::Schema;
        use datafusion::datasource::MemTable;
        use datafusion::prelude::SessionContext;

        let schema = Arc::new(Schema::new(vec![
            Field::new("route", DataType::Utf8, true),
            Field::new("duration", DataType::UInt64, true),
        ]));
        // Route r holds durations (r + 1) * 1..=10_000, with a null between; split over
        // two partitions of several batches, so partial states are merged.
        let mut partitions = vec![Vec::new(), Vec::new()];
        for chunk in 0..10u64 {
            let mut routes = Vec::new();
            let mut durations = Vec::new();
            for i in 1..=1000u64 {
                for r in 0..3u64 {
                    routes.push(Some(format!("/r{r}")));
                    durations.push(Some((r + 1) * (chunk * 1000 + i)));
                }
            }
            routes.push(Some("/r0".into()));
            durations.push(None);
            let batch = RecordBatch::try_new(
                Arc::clone(&schema),
                vec![
                    Arc::new(StringArray::from(routes)),
                    Arc::new(UInt64Array::from(durations)),
                ],
            )
            .unwrap();
            partitions[(chunk % 2) as usize].push(batch);
        }
        let context = SessionContext::new();
        context.register_udaf(approx_quantile());
        let table = MemTable::try_new(Arc::clone(&schema), partitions).unwrap();
        context.register_table("t", Arc::new(table)).unwrap();
        let batches = run(
            &context,
            "SELECT route, approx_quantile(duration, 0.99) AS p99, \
                 approx_quantile(duration, 0.5) AS p50 FROM t GROUP BY route ORDER BY route",
        )
        .await;
        let mut answers = Vec::new();
        for batch in &batches {
            let p99 = batch.column(1).as_primitive::<Float64Type>();
            let p50 = batch.column(2).as_primitive::<Float64Type>();
            for row in 0..batch.num_rows() {
                answers.push((p99.value(row), p50.value(row)));
            }
        }
        assert_eq!(answers.len(), 3);
        for (r, (p99, p50)) in answers.into_iter().enumerate() {
            let scale = (r + 1) as f64;
            // Ranks round(0.99 * 9999) = 9899 and round(0.5 * 9999) = 5000 (0-based).
            assert!(close(p99, scale * 9900.0), "route {r}: p99 {p99}");
            assert!(close(p50, scale * 5001.0), "route {r}: p50 {p50}");
        }
        // Without GROUP BY, and a bad quantile is refused with the reason.
        let whole = run(&context, "SELECT approx_quantile(duration, 1) FROM t").await;
        let max = whole[0].column(0).as_primitive::<Float64Type>().value(0);
        assert!(close(max, 30_000.0), "max {max}");
        let error = context
            .sql("SELECT approx_quantile(duration, 1.5) FROM t")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap_err();
        assert!(error.to_string().contains("between 0 and 1"), "{error}");

        // FILTER (WHERE ...) with GROUP BY: only even durations count. Route 0 keeps 2, 4, ..,
        // 10_000 (median rank round(0.5 * 4999) = 2500, value 5002), route 1 keeps all its
        // values (all even), route 2 keeps 6, 12, .., 30_000 (value 3 * 5002); a row whose
        // filter is null (the null duration) counts as filtered out.
        let filtered = run(
            &context,
            "SELECT route, approx_quantile(duration, 0.5) FILTER (WHERE duration % 2 = 0), \
             count(duration) FILTER (WHERE duration % 2 = 0) \
             FROM t GROUP BY route ORDER BY route",
        )
        .await;
        let mut medians = Vec::new();
        for batch in &filtered {
            let p50 = batch.column(1).as_primitive::<Float64Type>();
            let count = batch
                .column(2)
                .as_primitive::<datafusion::arrow::datatypes::Int64Type>();
            for row in 0..batch.num_rows() {
                medians.push((p50.value(row), count.value(row)));
            }
        }
        assert_eq!(medians.len(), 3);
        let want = [(5002.0, 5000), (2.0 * 5001.0, 10_000), (3.0 * 5002.0, 5000)];
        for (r, ((p50, count), (want_p50, want_count))) in medians.into_iter().zip(want).enumerate()
        {
            assert_eq!(count, want_count, "route {r}: rows passing the filter");
            assert!(
                close(p50, want_p50),
                "route {r}: filtered p50 {p50}, want {want_p50}"
            );
        }
        // And without GROUP BY: the maximum of route 0 alone, and a filter no row passes
        // gives null rather than a number.
        let whole = run(
            &context,
            "SELECT approx_quantile(duration, 1) FILTER (WHERE route = '/r0'), \
                 approx_quantile(duration, 0.5) FILTER (WHERE duration > 1000000) FROM t",
        )
        .await;
        let max = whole[0].column(0).as_primitive::<Float64Type>().value(0);
        assert!(close(max, 10_000.0), "filtered max {max}");
        assert!(whole[0].column(1).is_null(0), "an empty filter gives null");
    }
}

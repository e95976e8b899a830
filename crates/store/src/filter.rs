//! The search language ([`apiwatch_query::Filter`]) as DataFusion expressions over the
//! `events` columns, with the same meaning as matching events one by one: a test on a missing
//! field is false, and NOT of it is true (SQL's NULL never leaks through a NOT).

use std::net::IpAddr;
use std::sync::{Arc, LazyLock};

use apiwatch_query::{Comparison, FieldRef, Filter, FilterTest, Glob};
use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, StringArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{ScalarValue, exec_err};
use datafusion::logical_expr::expr::Like;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::{Expr, col, lit};
use ipnet::IpNet;

use crate::error::{Error, Result};
use crate::schema::{self, TIME_COLUMN};

/// The expression that holds exactly for the events `filter` matches.
pub fn to_expr(filter: &Filter) -> Result<Expr> {
    Ok(match filter {
        Filter::All => lit(true),
        Filter::And(filters) => {
            let mut exprs = filters.iter().map(to_expr);
            let first = exprs.next().unwrap_or(Ok(lit(true)))?;
            exprs.try_fold(first, |all, next| next.map(|next| all.and(next)))?
        }
        Filter::Or(filters) => {
            let mut exprs = filters.iter().map(to_expr);
            let first = exprs.next().unwrap_or(Ok(lit(false)))?;
            exprs.try_fold(first, |any, next| next.map(|next| any.or(next)))?
        }
        // `IS NOT TRUE`: a NULL (missing field) inside counts as false, so NOT of it holds.
        Filter::Not(inner) => Expr::IsNotTrue(Box::new(to_expr(inner)?)),
        Filter::Word(glob) => {
            let mut any: Option<Expr> = None;
            for field in apiwatch_query::bare_word_fields() {
                let column = column_for(field)?;
                let test = glob_expr(col(column), glob);
                any = Some(match any {
                    None => test,
                    Some(any) => any.or(test),
                });
            }
            any.unwrap_or(lit(false))
        }
        Filter::Test(field, test) => test_expr(field, test)?,
    })
}

fn column_for(canonical: &str) -> Result<String> {
    schema::column_name(canonical)
        .ok_or_else(|| Error::Query(format!("field {canonical} is not a column of the store")))
}

fn test_expr(field: &FieldRef, test: &FilterTest) -> Result<Expr> {
    let (value, is_time) = match field {
        FieldRef::Fixed(name) => {
            let column = column_for(name)?;
            let is_time = column == TIME_COLUMN;
            (col(column), is_time)
        }
        FieldRef::Header(name) => (map_get(col("http_request_headers"), name), false),
        FieldRef::Label(key) => (map_get(col("labels"), key), false),
    };
    Ok(match test {
        FilterTest::Exists => value.is_not_null(),
        FilterTest::Time(comparison, nanos) if is_time => compare(
            value,
            *comparison,
            lit(ScalarValue::TimestampNanosecond(
                Some(*nanos),
                Some("UTC".into()),
            )),
        ),
        FilterTest::Time(..) => {
            return Err(Error::Query(format!(
                "a time comparison applies to @timestamp only, not {field:?}"
            )));
        }
        FilterTest::Text(comparison, text) => compare(value, *comparison, lit(text.as_str())),
        FilterTest::Glob(glob) if is_time => {
            glob_expr(datafusion::prelude::cast(value, DataType::Utf8), glob)
        }
        FilterTest::Glob(glob) => glob_expr(value, glob),
        FilterTest::Number(comparison, bound) => compare(value, *comparison, number(*bound)),
        FilterTest::NumberRange(low, high) => value
            .clone()
            .gt_eq(number(*low))
            .and(value.lt(number(*high))),
        FilterTest::Address(address) => value.eq(lit(address.to_string())),
        FilterTest::Network(network) => network_expr(value, network),
    })
}

/// A whole number as an integer literal (so integer columns compare without a cast).
fn number(value: f64) -> Expr {
    if value.fract() == 0.0 && value.abs() < 9.0e15 {
        lit(value as i64)
    } else {
        lit(value)
    }
}

fn compare(value: Expr, comparison: Comparison, bound: Expr) -> Expr {
    match comparison {
        Comparison::Eq => value.eq(bound),
        Comparison::Lt => value.lt(bound),
        Comparison::Le => value.lt_eq(bound),
        Comparison::Gt => value.gt(bound),
        Comparison::Ge => value.gt_eq(bound),
    }
}

/// A case-insensitive `LIKE` whose `%` stand for the glob's `*`; the literal parts escaped.
fn glob_expr(value: Expr, glob: &Glob) -> Expr {
    let mut pattern = String::new();
    for (index, segment) in glob.segments.iter().enumerate() {
        if index > 0 {
            pattern.push('%');
        }
        for ch in segment.chars() {
            if matches!(ch, '%' | '_' | '\\') {
                pattern.push('\\');
            }
            pattern.push(ch);
        }
    }
    Expr::Like(Like::new(
        false,
        Box::new(value),
        Box::new(lit(pattern)),
        Some('\\'),
        true,
    ))
}

/// An address in a network. Octet-aligned IPv4 networks are a text prefix (`203.0.113.`),
/// which DataFusion evaluates vectorised; the rest go through [`CidrMatch`].
fn network_expr(value: Expr, network: &IpNet) -> Expr {
    if let IpNet::V4(v4) = network {
        let prefix = v4.prefix_len();
        let octets = v4.network().octets();
        if prefix == 32 {
            return value.eq(lit(v4.addr().to_string()));
        }
        if prefix % 8 == 0 {
            let kept = usize::from(prefix / 8);
            let mut text = String::new();
            for octet in &octets[..kept] {
                text.push_str(&octet.to_string());
                text.push('.');
            }
            if kept == 0 {
                // 0.0.0.0/0: every IPv4 address.
                return CIDR_MATCH.call(vec![value, lit(network.to_string())]);
            }
            // `198.51.` as the range ["198.51.", "198.51/"): the same strings as the prefix
            // (`/` follows `.`), and a range that row-group min/max statistics can prune on
            // (files are sorted by address within each chunk).
            let mut upper = text.clone();
            upper.pop();
            upper.push('/');
            return value.clone().gt_eq(lit(text)).and(value.lt(lit(upper)));
        }
    }
    CIDR_MATCH.call(vec![value, lit(network.to_string())])
}

fn map_get(map: Expr, key: &str) -> Expr {
    MAP_GET.call(vec![map, lit(key.to_owned())])
}

static CIDR_MATCH: LazyLock<ScalarUDF> = LazyLock::new(|| ScalarUDF::from(CidrMatch::new()));
static MAP_GET: LazyLock<ScalarUDF> = LazyLock::new(|| ScalarUDF::from(MapGet::new()));

/// The functions the translated filters call, for registration in a session (so that plans
/// that mention them can also be written as SQL).
pub fn functions() -> Vec<ScalarUDF> {
    vec![CIDR_MATCH.clone(), MAP_GET.clone()]
}

fn text_argument<'a>(
    args: &'a ScalarFunctionArgs,
    name: &str,
) -> datafusion::error::Result<&'a str> {
    match args.args.get(1) {
        Some(ColumnarValue::Scalar(
            ScalarValue::Utf8(Some(text)) | ScalarValue::LargeUtf8(Some(text)),
        )) => Ok(text),
        _ => exec_err!("{name}: the second argument must be a text literal"),
    }
}

fn strings(value: &ColumnarValue, rows: usize) -> datafusion::error::Result<ArrayRef> {
    let array = value.to_array(rows)?;
    Ok(datafusion::arrow::compute::cast(&array, &DataType::Utf8)?)
}

/// `cidr_match(address_text, 'network')`: whether the text is an address in the network
/// (IPv4-mapped IPv6 addresses compared as IPv4; an IPv6 network holds the IPv4 addresses
/// whose mapped form it contains). Null text gives null.
#[derive(Debug, PartialEq, Eq, Hash)]
struct CidrMatch {
    signature: Signature,
}

impl CidrMatch {
    fn new() -> CidrMatch {
        CidrMatch {
            signature: Signature::exact(
                vec![DataType::Utf8, DataType::Utf8],
                Volatility::Immutable,
            ),
        }
    }
}

impl ScalarUDFImpl for CidrMatch {
    fn name(&self) -> &str {
        "cidr_match"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(DataType::Boolean)
    }
    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::error::Result<ColumnarValue> {
        let text = text_argument(&args, "cidr_match")?;
        let Ok(network) = text.parse::<IpNet>() else {
            return exec_err!("cidr_match: {text:?} is not a network such as 203.0.113.0/24");
        };
        let array = strings(&args.args[0], args.number_rows)?;
        let Some(addresses) = array.as_any().downcast_ref::<StringArray>() else {
            return exec_err!("cidr_match: the first argument must be text");
        };
        let result: BooleanArray = addresses
            .iter()
            .map(|value| {
                value.map(|text| {
                    text.parse::<IpAddr>().is_ok_and(|address| {
                        match (network, address.to_canonical()) {
                            (IpNet::V6(v6), IpAddr::V4(v4)) => v6.contains(&v4.to_ipv6_mapped()),
                            (network, address) => network.contains(&address),
                        }
                    })
                })
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(result)))
    }
}

/// `map_get(json_object_text, 'key')`: the key's value in a JSON object of strings (the
/// `http_request_headers` and `labels` columns), or null.
#[derive(Debug, PartialEq, Eq, Hash)]
struct MapGet {
    signature: Signature,
}

impl MapGet {
    fn new() -> MapGet {
        MapGet {
            signature: Signature::exact(
                vec![DataType::Utf8, DataType::Utf8],
                Volatility::Immutable,
            ),
        }
    }
}

impl ScalarUDFImpl for MapGet {
    fn name(&self) -> &str {
        "map_get"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::error::Result<ColumnarValue> {
        let key = text_argument(&args, "map_get")?.to_owned();
        let array = strings(&args.args[0], args.number_rows)?;
        let Some(maps) = array.as_any().downcast_ref::<StringArray>() else {
            return exec_err!("map_get: the first argument must be text");
        };
        let result: StringArray = maps
            .iter()
            .map(|value| {
                let map: std::collections::BTreeMap<String, String> =
                    serde_json::from_str(value?).ok()?;
                map.get(&key).cloned()
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(result) as ArrayRef))
    }
}

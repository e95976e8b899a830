//! The `events` table: one column per event field, and the conversions between events and
//! Arrow record batches.
//!
//! Column names are the event's canonical field names with `.` replaced by `_`, and
//! `@timestamp` as `timestamp` (`source.ip` -> `source_ip`), so SQL needs no quoting. The two
//! maps (`http.request.headers`, `labels`) are JSON-object text, null when empty. One more
//! column, `journal_seq`, is the event's record number in the journal (for `apiwatch prove`).

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use apiwatch_event::{AuthOutcome, Event, EventKind};
use datafusion::arrow::array::{
    Array, ArrayRef, RecordBatch, StringArray, StringBuilder, TimestampNanosecondArray,
    TimestampNanosecondBuilder, UInt16Array, UInt16Builder, UInt32Array, UInt32Builder,
    UInt64Array, UInt64Builder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::decode::{RowRef, TEXT_COLUMNS};
use crate::error::{Error, Result};

/// Name of the journal record number column.
pub const SEQ_COLUMN: &str = "journal_seq";
/// Name of the time column.
pub const TIME_COLUMN: &str = "timestamp";

/// The text columns, in schema order after the fixed head, with the event field each holds.
/// (`event_kind` and `auth_outcome` are text too but never null; see [`schema`].)
const OPTIONAL_TEXT: [&str; TEXT_COLUMNS] = [
    "event_outcome",
    "source_ip",
    "network_forwarded_by",
    "http_version",
    "url_scheme",
    "url_domain",
    "http_request_method",
    "url_path",
    "url_query",
    "route",
    "service_name",
    "http_request_mime_type",
    "http_response_mime_type",
    "http_request_headers",
    "http_request_body_content",
    "user_agent_original",
    "http_request_id",
    "user_name",
    "auth_method",
    "auth_key_fingerprint",
    "auth_jwt_iss",
    "upstream_address",
    "error_type",
    "error_message",
    "labels",
];

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields = vec![
        Field::new(SEQ_COLUMN, DataType::UInt64, false),
        Field::new(
            TIME_COLUMN,
            DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
            false,
        ),
        Field::new("event_id", DataType::Utf8, false),
        Field::new("event_schema", DataType::UInt32, false),
        Field::new("event_kind", DataType::Utf8, false),
        Field::new("event_dataset", DataType::Utf8, false),
        Field::new("event_duration", DataType::UInt64, false),
        Field::new("source_port", DataType::UInt16, true),
        Field::new("http_response_status_code", DataType::UInt16, true),
        Field::new("http_request_body_bytes", DataType::UInt64, false),
        Field::new("http_response_body_bytes", DataType::UInt64, false),
        Field::new("auth_outcome", DataType::Utf8, false),
    ];
    fields.extend(
        OPTIONAL_TEXT
            .iter()
            .map(|name| Field::new(*name, DataType::Utf8, true)),
    );
    Arc::new(Schema::new(fields))
});

/// The schema of every Parquet file of the store, of its memtable batches and of exports.
pub fn schema() -> SchemaRef {
    Arc::clone(&SCHEMA)
}

/// Columns the `events` table reads as Arrow view strings (`Utf8View`) rather than `Utf8`:
/// few distinct, short values that queries group by. The Parquet reader builds a view
/// array from a dictionary page without copying each value's bytes, and DataFusion groups
/// views with a map made for them; for query 4 of `bench/query.sh` (p99 per route over 10M
/// events) this is most of the difference to DuckDB (docs/benchmarks.md). The files keep
/// `Utf8`: this is how they are read, not how they are stored.
pub const VIEW_COLUMNS: [&str; 1] = ["route"];

static TABLE_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let fields: Vec<Field> = SCHEMA
        .fields()
        .iter()
        .map(|field| {
            if VIEW_COLUMNS.contains(&field.name().as_str()) {
                field.as_ref().clone().with_data_type(DataType::Utf8View)
            } else {
                field.as_ref().clone()
            }
        })
        .collect();
    Arc::new(Schema::new(fields))
});

/// The schema of the `events` table that queries see: [`schema`] with [`VIEW_COLUMNS`] as
/// `Utf8View`. SQL answers and the batches of `Store::export` and `Store::sql_stream` carry
/// those columns as views (`export_to` and [`events_from_batch`] cast them back); the
/// memtable's batches are cast to it each time a query session is built (one pass over
/// their `route` column).
pub fn table_schema() -> SchemaRef {
    Arc::clone(&TABLE_SCHEMA)
}

/// `batch` with every column of the same name as in `target`'s type (a view column to
/// `Utf8` or back); columns already of that type are shared, not copied.
pub fn cast_to(batch: &RecordBatch, target: &SchemaRef) -> Result<RecordBatch> {
    let mut fields = Vec::with_capacity(batch.num_columns());
    let mut columns = Vec::with_capacity(batch.num_columns());
    let mut changed = false;
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        match target.field_with_name(field.name()) {
            Ok(wanted) if wanted.data_type() != column.data_type() => {
                columns.push(datafusion::arrow::compute::cast(
                    column,
                    wanted.data_type(),
                )?);
                fields.push(
                    field
                        .as_ref()
                        .clone()
                        .with_data_type(wanted.data_type().clone()),
                );
                changed = true;
            }
            _ => {
                columns.push(Arc::clone(column));
                fields.push(field.as_ref().clone());
            }
        }
    }
    if !changed {
        return Ok(batch.clone());
    }
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new_with_metadata(
            fields,
            batch.schema().metadata().clone(),
        )),
        columns,
    )?)
}

/// The column holding a canonical field (`source.ip` -> `source_ip`, `@timestamp` ->
/// `timestamp`); `None` for names that are not columns.
pub fn column_name(canonical: &str) -> Option<String> {
    let name = if canonical == "@timestamp" {
        TIME_COLUMN.to_owned()
    } else {
        canonical.replace('.', "_")
    };
    SCHEMA.field_with_name(&name).ok().map(|_| name)
}

/// The column `name` of a batch of the `events` schema as its concrete array type; an error
/// when the batch has no such column or it has another type.
pub(crate) fn typed_column<'a, T: Array + 'static>(
    batch: &'a RecordBatch,
    name: &str,
) -> Result<&'a T> {
    batch
        .column_by_name(name)
        .and_then(|column| column.as_any().downcast_ref::<T>())
        .ok_or_else(|| Error::Query(format!("batch without a {name} column")))
}

/// Nanoseconds since the Unix epoch of an event's RFC 3339 timestamp.
pub fn timestamp_nanos(text: &str) -> Result<i64> {
    apiwatch_event::timestamp::parse_nanos(text).ok_or_else(|| {
        Error::Event(format!(
            "@timestamp {text:?} is not an RFC 3339 time between the years 1678 and 2262"
        ))
    })
}

/// Formats nanoseconds since the epoch as the event's RFC 3339 text.
pub fn format_nanos(nanos: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos)) {
        Ok(at) => apiwatch_event::format_timestamp(at),
        Err(_) => String::new(),
    }
}

fn kind_name(kind: EventKind) -> &'static str {
    match kind {
        EventKind::Request => "request",
        EventKind::Audit => "audit",
        EventKind::System => "system",
        EventKind::Finding => "finding",
    }
}

fn outcome_name(outcome: AuthOutcome) -> &'static str {
    match outcome {
        AuthOutcome::Success => "success",
        AuthOutcome::Failure => "failure",
        AuthOutcome::None => "none",
    }
}

fn map_json(map: &BTreeMap<String, String>) -> Option<String> {
    if map.is_empty() {
        None
    } else {
        serde_json::to_string(map).ok()
    }
}

/// The columns of an event that are neither its time nor optional text.
struct Fixed<'a> {
    id: &'a str,
    schema: u32,
    kind: EventKind,
    dataset: &'a str,
    duration_ns: u64,
    source_port: Option<u16>,
    status_code: Option<u16>,
    request_bytes: u64,
    response_bytes: u64,
    auth_outcome: AuthOutcome,
}

/// Builds record batches from events, one row per event.
pub struct BatchBuilder {
    seq: UInt64Builder,
    timestamp: TimestampNanosecondBuilder,
    id: StringBuilder,
    schema_version: UInt32Builder,
    kind: StringBuilder,
    dataset: StringBuilder,
    duration: UInt64Builder,
    port: UInt16Builder,
    status: UInt16Builder,
    request_bytes: UInt64Builder,
    response_bytes: UInt64Builder,
    auth_outcome: StringBuilder,
    text: Vec<StringBuilder>,
    rows: usize,
}

impl Default for BatchBuilder {
    fn default() -> Self {
        BatchBuilder::new()
    }
}

impl BatchBuilder {
    /// An empty builder.
    pub fn new() -> BatchBuilder {
        BatchBuilder {
            seq: UInt64Builder::new(),
            timestamp: TimestampNanosecondBuilder::new().with_timezone("UTC"),
            id: StringBuilder::new(),
            schema_version: UInt32Builder::new(),
            kind: StringBuilder::new(),
            dataset: StringBuilder::new(),
            duration: UInt64Builder::new(),
            port: UInt16Builder::new(),
            status: UInt16Builder::new(),
            request_bytes: UInt64Builder::new(),
            response_bytes: UInt64Builder::new(),
            auth_outcome: StringBuilder::new(),
            text: OPTIONAL_TEXT.iter().map(|_| StringBuilder::new()).collect(),
            rows: 0,
        }
    }

    /// An empty builder whose buffers have room for as much as `other` holds now.
    fn with_room_of(other: &BatchBuilder) -> BatchBuilder {
        let rows = other.rows;
        let text = |builder: &StringBuilder| {
            StringBuilder::with_capacity(rows, builder.values_slice().len())
        };
        BatchBuilder {
            seq: UInt64Builder::with_capacity(rows),
            timestamp: TimestampNanosecondBuilder::with_capacity(rows).with_timezone("UTC"),
            id: text(&other.id),
            schema_version: UInt32Builder::with_capacity(rows),
            kind: text(&other.kind),
            dataset: text(&other.dataset),
            duration: UInt64Builder::with_capacity(rows),
            port: UInt16Builder::with_capacity(rows),
            status: UInt16Builder::with_capacity(rows),
            request_bytes: UInt64Builder::with_capacity(rows),
            response_bytes: UInt64Builder::with_capacity(rows),
            auth_outcome: text(&other.auth_outcome),
            text: other.text.iter().map(text).collect(),
            rows: 0,
        }
    }

    /// Rows added since the last [`BatchBuilder::finish`].
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Whether no row was added since the last [`BatchBuilder::finish`].
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Adds one event, journal record `seq`, whose timestamp is `nanos` (see
    /// [`timestamp_nanos`]).
    pub fn push(&mut self, seq: u64, nanos: i64, event: &Event) {
        let headers = map_json(&event.request_headers);
        let labels = map_json(&event.labels);
        let text: [Option<&str>; TEXT_COLUMNS] = [
            event.outcome.as_deref(),
            event.source_ip.as_deref(),
            event.forwarded_by.as_deref(),
            event.http_version.as_deref(),
            event.url_scheme.as_deref(),
            event.url_domain.as_deref(),
            event.method.as_deref(),
            event.url_path.as_deref(),
            event.url_query.as_deref(),
            event.route.as_deref(),
            event.service_name.as_deref(),
            event.request_mime_type.as_deref(),
            event.response_mime_type.as_deref(),
            headers.as_deref(),
            event.request_body.as_deref(),
            event.user_agent.as_deref(),
            event.request_id.as_deref(),
            event.user_name.as_deref(),
            event.auth_method.as_deref(),
            event.key_fingerprint.as_deref(),
            event.jwt_issuer.as_deref(),
            event.upstream_address.as_deref(),
            event.error_type.as_deref(),
            event.error_message.as_deref(),
            labels.as_deref(),
        ];
        let fixed = Fixed {
            id: &event.id,
            schema: event.schema,
            kind: event.kind,
            dataset: &event.dataset,
            duration_ns: event.duration_ns,
            source_port: event.source_port,
            status_code: event.status_code,
            request_bytes: event.request_bytes,
            response_bytes: event.response_bytes,
            auth_outcome: event.auth_outcome,
        };
        self.append(seq, nanos, &fixed, text);
    }

    /// Adds the event of one journal record (`seq`, its JSON), decoded straight into the
    /// columns; on an error (not an event, a bad `@timestamp`) nothing is added.
    pub fn push_json(&mut self, seq: u64, json: &[u8]) -> Result<()> {
        let row =
            RowRef::from_json(json).map_err(|err| Error::Event(format!("not an event: {err}")))?;
        let nanos = timestamp_nanos(&row.timestamp)?;
        let fixed = Fixed {
            id: &row.id,
            schema: row.schema,
            kind: row.kind,
            dataset: &row.dataset,
            duration_ns: row.duration_ns,
            source_port: row.source_port,
            status_code: row.status_code,
            request_bytes: row.request_bytes,
            response_bytes: row.response_bytes,
            auth_outcome: row.auth_outcome,
        };
        self.append(
            seq,
            nanos,
            &fixed,
            row.text.each_ref().map(Option::as_deref),
        );
        Ok(())
    }

    fn append(
        &mut self,
        seq: u64,
        nanos: i64,
        fixed: &Fixed<'_>,
        text: [Option<&str>; TEXT_COLUMNS],
    ) {
        self.seq.append_value(seq);
        self.timestamp.append_value(nanos);
        self.id.append_value(fixed.id);
        self.schema_version.append_value(fixed.schema);
        self.kind.append_value(kind_name(fixed.kind));
        self.dataset.append_value(fixed.dataset);
        self.duration.append_value(fixed.duration_ns);
        self.port.append_option(fixed.source_port);
        self.status.append_option(fixed.status_code);
        self.request_bytes.append_value(fixed.request_bytes);
        self.response_bytes.append_value(fixed.response_bytes);
        self.auth_outcome
            .append_value(outcome_name(fixed.auth_outcome));
        for (builder, value) in self.text.iter_mut().zip(text) {
            builder.append_option(value);
        }
        self.rows += 1;
    }

    /// The rows added so far as one batch; the builder is empty afterwards.
    pub fn finish(&mut self) -> RecordBatch {
        self.finish_into(BatchBuilder::new())
    }

    /// [`BatchBuilder::finish`], and the next batch starts with the room this one used: for
    /// a caller that knows the next batch has as many rows, whose buffers are then allocated
    /// once at their size instead of grown from nothing (each growth a copy, and fresh pages).
    pub fn finish_keeping_room(&mut self) -> RecordBatch {
        let next = BatchBuilder::with_room_of(self);
        self.finish_into(next)
    }

    /// The rows added so far as one batch; `next` takes this builder's place.
    fn finish_into(&mut self, next: BatchBuilder) -> RecordBatch {
        let mut done = std::mem::replace(self, next);
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(done.seq.finish()),
            Arc::new(done.timestamp.finish()),
            Arc::new(done.id.finish()),
            Arc::new(done.schema_version.finish()),
            Arc::new(done.kind.finish()),
            Arc::new(done.dataset.finish()),
            Arc::new(done.duration.finish()),
            Arc::new(done.port.finish()),
            Arc::new(done.status.finish()),
            Arc::new(done.request_bytes.finish()),
            Arc::new(done.response_bytes.finish()),
            Arc::new(done.auth_outcome.finish()),
        ];
        columns.extend(
            done.text
                .iter_mut()
                .map(|builder| Arc::new(builder.finish()) as ArrayRef),
        );
        // The columns are built to the schema, row for row.
        RecordBatch::try_new(schema(), columns).expect("batch matches the events schema")
    }
}

/// Reads events back from batches of the `events` schema (all columns, any order; view
/// strings or not).
pub fn events_from_batch(batch: &RecordBatch) -> Result<Vec<(u64, Event)>> {
    let batch = &cast_to(batch, &SCHEMA)?;
    let column = |name: &str| {
        batch
            .column_by_name(name)
            .ok_or_else(|| Error::Query(format!("the result has no column {name}")))
    };
    fn downcast<'a, T: 'static>(array: &'a ArrayRef, name: &str) -> Result<&'a T> {
        array
            .as_any()
            .downcast_ref::<T>()
            .ok_or_else(|| Error::Query(format!("column {name} has an unexpected type")))
    }
    let seq = downcast::<UInt64Array>(column(SEQ_COLUMN)?, SEQ_COLUMN)?;
    let timestamp = downcast::<TimestampNanosecondArray>(column(TIME_COLUMN)?, TIME_COLUMN)?;
    let id = downcast::<StringArray>(column("event_id")?, "event_id")?;
    let schema_version = downcast::<UInt32Array>(column("event_schema")?, "event_schema")?;
    let kind = downcast::<StringArray>(column("event_kind")?, "event_kind")?;
    let dataset = downcast::<StringArray>(column("event_dataset")?, "event_dataset")?;
    let duration = downcast::<UInt64Array>(column("event_duration")?, "event_duration")?;
    let port = downcast::<UInt16Array>(column("source_port")?, "source_port")?;
    let status = downcast::<UInt16Array>(
        column("http_response_status_code")?,
        "http_response_status_code",
    )?;
    let request_bytes = downcast::<UInt64Array>(
        column("http_request_body_bytes")?,
        "http_request_body_bytes",
    )?;
    let response_bytes = downcast::<UInt64Array>(
        column("http_response_body_bytes")?,
        "http_response_body_bytes",
    )?;
    let auth_outcome = downcast::<StringArray>(column("auth_outcome")?, "auth_outcome")?;
    let mut text = Vec::with_capacity(OPTIONAL_TEXT.len());
    for name in OPTIONAL_TEXT {
        text.push(downcast::<StringArray>(column(name)?, name)?);
    }
    let optional = |index: usize, row: usize| -> Option<String> {
        let array = text[index];
        (!array.is_null(row)).then(|| array.value(row).to_owned())
    };
    let map = |index: usize, row: usize| -> BTreeMap<String, String> {
        optional(index, row)
            .and_then(|json| serde_json::from_str(&json).ok())
            .unwrap_or_default()
    };
    let mut events = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        let event = Event {
            timestamp: format_nanos(timestamp.value(row)),
            id: id.value(row).to_owned(),
            schema: schema_version.value(row),
            kind: match kind.value(row) {
                "audit" => EventKind::Audit,
                "system" => EventKind::System,
                "finding" => EventKind::Finding,
                _ => EventKind::Request,
            },
            dataset: dataset.value(row).to_owned(),
            duration_ns: duration.value(row),
            source_port: (!port.is_null(row)).then(|| port.value(row)),
            status_code: (!status.is_null(row)).then(|| status.value(row)),
            request_bytes: request_bytes.value(row),
            response_bytes: response_bytes.value(row),
            auth_outcome: match auth_outcome.value(row) {
                "success" => AuthOutcome::Success,
                "failure" => AuthOutcome::Failure,
                _ => AuthOutcome::None,
            },
            outcome: optional(0, row),
            source_ip: optional(1, row),
            forwarded_by: optional(2, row),
            http_version: optional(3, row),
            url_scheme: optional(4, row),
            url_domain: optional(5, row),
            method: optional(6, row),
            url_path: optional(7, row),
            url_query: optional(8, row),
            route: optional(9, row),
            service_name: optional(10, row),
            request_mime_type: optional(11, row),
            response_mime_type: optional(12, row),
            request_headers: map(13, row),
            request_body: optional(14, row),
            user_agent: optional(15, row),
            request_id: optional(16, row),
            user_name: optional(17, row),
            auth_method: optional(18, row),
            key_fingerprint: optional(19, row),
            jwt_issuer: optional(20, row),
            upstream_address: optional(21, row),
            error_type: optional(22, row),
            error_message: optional(23, row),
            labels: map(24, row),
        };
        events.push((seq.value(row), event));
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Event {
        let mut event = Event::new(
            EventKind::Request,
            "gateway.access",
            time::macros::datetime!(2026-12-01 10:00:00.123456789 UTC),
        );
        event.source_ip = Some("203.0.113.7".into());
        event.source_port = Some(40000);
        event.method = Some("POST".into());
        event.url_path = Some("/api/login".into());
        event.status_code = Some(401);
        event.auth_outcome = AuthOutcome::Failure;
        event.request_bytes = 17;
        event.duration_ns = 1_500_000;
        event
            .request_headers
            .insert("accept".into(), "application/json".into());
        event.labels.insert("team".into(), "payments".into());
        event
    }

    #[test]
    fn events_survive_a_round_trip_through_a_batch() {
        let first = sample();
        let mut second = Event::new(
            EventKind::Audit,
            "apiwatch.audit",
            time::macros::datetime!(2026-12-01 10:00:01 UTC),
        );
        second.user_name = Some("alice".into());
        let mut builder = BatchBuilder::new();
        for (seq, event) in [(7, &first), (8, &second)] {
            builder.push(seq, timestamp_nanos(&event.timestamp).unwrap(), event);
        }
        assert_eq!(builder.len(), 2);
        let batch = builder.finish();
        assert!(builder.is_empty());
        assert_eq!(batch.num_rows(), 2);
        let back = events_from_batch(&batch).unwrap();
        assert_eq!(back, vec![(7, first), (8, second)]);
    }

    #[test]
    fn a_builder_that_kept_its_room_builds_what_a_new_one_does() {
        let first = sample();
        let mut second = sample();
        second.url_path = None;
        second.user_agent = Some("a much longer user agent than the first one had".into());
        let mut reused = BatchBuilder::new();
        reused.push(1, timestamp_nanos(&first.timestamp).unwrap(), &first);
        reused.finish_keeping_room();
        let mut fresh = BatchBuilder::new();
        for builder in [&mut reused, &mut fresh] {
            for seq in 2..5 {
                builder.push(seq, timestamp_nanos(&second.timestamp).unwrap(), &second);
            }
        }
        let (reused, fresh) = (reused.finish(), fresh.finish());
        assert_eq!(reused.num_rows(), 3);
        assert_eq!(reused, fresh);
    }

    #[test]
    fn column_names_follow_the_canonical_names() {
        assert_eq!(column_name("source.ip").as_deref(), Some("source_ip"));
        assert_eq!(column_name("@timestamp").as_deref(), Some("timestamp"));
        assert_eq!(
            column_name("http.response.status_code").as_deref(),
            Some("http_response_status_code")
        );
        assert_eq!(column_name("no.such.field"), None);
    }

    #[test]
    fn a_bad_timestamp_is_an_error_that_names_it() {
        let err = timestamp_nanos("yesterday").unwrap_err().to_string();
        assert!(
            err.contains("@timestamp") && err.contains("yesterday"),
            "{err}"
        );
    }
}

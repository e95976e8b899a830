//! Reading findings back from the journal (until the query store indexes them).
//!
//! Findings are journal records with `"event.kind":"finding"`; this scans the journal from the
//! start, so it costs a pass over the journal (about 1 GB/s from the page cache). Only records
//! whose bytes contain the kind marker are parsed, and only those whose own `event.kind` is
//! `finding` are returned.

use std::path::Path;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const MARKER: &[u8] = br#""event.kind":"finding""#;

/// Findings recorded at or after `since`, newest last, at most the last `limit` of them.
pub fn read(
    data_dir: &Path,
    since: OffsetDateTime,
    limit: usize,
) -> apiwatch_journal::Result<Vec<serde_json::Value>> {
    let mut found = std::collections::VecDeque::new();
    if limit == 0 {
        return Ok(Vec::new());
    }
    for record in apiwatch_journal::JournalReader::open(data_dir)? {
        let (_, payload) = record?;
        if !payload.windows(MARKER.len()).any(|window| window == MARKER) {
            continue;
        }
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(&payload) else {
            continue;
        };
        // The marker is only a quick filter: a request can carry the same text in a header
        // or its query. Only the record's own kind makes it a finding.
        if value.get("event.kind").and_then(serde_json::Value::as_str) != Some("finding") {
            continue;
        }
        let recent = value
            .get("@timestamp")
            .and_then(serde_json::Value::as_str)
            .and_then(|text| OffsetDateTime::parse(text, &Rfc3339).ok())
            .is_some_and(|at| at >= since);
        if recent {
            if found.len() == limit {
                found.pop_front();
            }
            found.push_back(value);
        }
    }
    Ok(found.into())
}

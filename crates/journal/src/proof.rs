//! Inclusion proofs: evidence that one record is in the journal as of a signed checkpoint,
//! checkable by someone who has only the proof and the journal's public key.
//!
//! A proof is a JSON document:
//!
//! ```json
//! {"leaf_index":17,"tree_size":1200,"record":"<base64 of the exact record>",
//!  "audit_path":["<hex hash>", ...],"checkpoint":{...signed checkpoint...}}
//! ```
//!
//! A [`ConsistencyProof`] shows that a newer checkpoint extends an older one (say, the one a
//! witness holds), so the witness can move forward without trusting the host.
//!
//! Both are built in one streaming pass over the journal ([`RangeHasher`]). An inclusion proof is
//! made against the latest checkpoint, so only records a checkpoint covers can be proven.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};
use crate::merkle::{
    Hash, RangeHasher, consistency_ranges, inclusion_ranges, leaf_hash, verify_consistency,
    verify_inclusion,
};
use crate::reader::JournalReader;

/// Evidence that `record` is leaf `leaf_index` of the tree signed in `checkpoint`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InclusionProof {
    /// The record's seq (leaf index).
    pub leaf_index: u64,
    /// Size of the tree the proof is for (the checkpoint's).
    pub tree_size: u64,
    /// The exact record bytes (base64 in JSON).
    #[serde(with = "base64_bytes")]
    pub record: Vec<u8>,
    /// Sibling hashes from the leaf up to the root (hex in JSON).
    #[serde(with = "hex_hashes")]
    pub audit_path: Vec<Hash>,
    /// The signed checkpoint whose root the path leads to.
    pub checkpoint: Checkpoint,
}

/// Returns the first record, oldest first, for which `predicate(seq, record)` is true.
pub fn find_record(
    dir: &Path,
    mut predicate: impl FnMut(u64, &[u8]) -> bool,
) -> Result<Option<(u64, Vec<u8>)>> {
    for item in JournalReader::open(dir)? {
        let (seq, record) = item?;
        if predicate(seq, &record) {
            return Ok(Some((seq, record)));
        }
    }
    Ok(None)
}

/// Builds the inclusion proof of record `leaf_index` against the journal's latest checkpoint.
///
/// Fails with [`Error::NotCheckpointed`] when no checkpoint covers the record yet, and with
/// [`Error::CheckpointMismatch`] when the journal no longer matches that checkpoint.
pub fn prove(dir: &Path, leaf_index: u64) -> Result<InclusionProof> {
    let checkpoint = Checkpoint::read_journal_checkpoints(dir)?
        .into_iter()
        .max_by_key(|checkpoint| checkpoint.tree_size);
    let covered = checkpoint
        .as_ref()
        .map_or(0, |checkpoint| checkpoint.tree_size);
    let Some(checkpoint) = checkpoint.filter(|checkpoint| leaf_index < checkpoint.tree_size) else {
        let records = JournalReader::open_from(dir, leaf_index)?
            .next()
            .transpose()?;
        if records.is_none() {
            let total = JournalReader::last_n(dir, 1)?
                .first()
                .map_or(0, |(seq, _)| seq + 1);
            return Err(Error::NoSuchRecord {
                leaf_index,
                records: total,
            });
        }
        return Err(Error::NotCheckpointed {
            leaf_index,
            tree_size: covered,
        });
    };
    let tree_size = checkpoint.tree_size;
    let mut frontier = crate::retention::start_frontier(dir)?;
    if leaf_index < frontier.size() {
        return Err(Error::Horizon(format!(
            "record {leaf_index} was deleted by retention (records before {} are gone)",
            frontier.size()
        )));
    }
    let mut ranges = RangeHasher::with_horizon(inclusion_ranges(leaf_index, tree_size), &frontier)
        .ok_or_else(|| Error::Horizon("the horizon does not cover the proof's ranges".into()))?;
    let mut record = None;
    for item in JournalReader::open(dir)? {
        let (seq, payload) = item?;
        if seq >= tree_size {
            break;
        }
        let leaf = leaf_hash(&payload);
        frontier.push(leaf);
        ranges.push(seq, &leaf);
        if seq == leaf_index {
            record = Some(payload);
        }
    }
    let mismatch = |reason: String| Error::CheckpointMismatch { tree_size, reason };
    if frontier.size() < tree_size {
        return Err(mismatch(format!(
            "only {} records are present; run `apiwatch verify`",
            frontier.size()
        )));
    }
    if frontier.root() != checkpoint.root_hash {
        return Err(mismatch(
            "the records hash to a different root; run `apiwatch verify`".into(),
        ));
    }
    let audit_path = ranges
        .finish()
        .ok_or_else(|| mismatch("a proof range was not fully read".into()))?;
    let record = record.ok_or_else(|| mismatch(format!("record {leaf_index} was not read")))?;
    Ok(InclusionProof {
        leaf_index,
        tree_size,
        record,
        audit_path,
        checkpoint,
    })
}

/// Checks a proof: the checkpoint's signature with `key`, then that the record's leaf hash and
/// the audit path lead to the checkpoint's root.
pub fn verify_inclusion_proof(proof: &InclusionProof, key: &VerifyingKey) -> Result<()> {
    proof.checkpoint.verify(key)?;
    let mismatch = Error::ProofMismatch {
        leaf_index: proof.leaf_index,
        tree_size: proof.checkpoint.tree_size,
    };
    if proof.tree_size != proof.checkpoint.tree_size {
        return Err(mismatch);
    }
    let leaf = leaf_hash(&proof.record);
    if !verify_inclusion(
        &leaf,
        proof.leaf_index,
        proof.tree_size,
        &proof.audit_path,
        &proof.checkpoint.root_hash,
    ) {
        return Err(mismatch);
    }
    Ok(())
}

/// Evidence that the tree signed in `new` extends the one signed in `old` (nothing in the first
/// `old.tree_size` records changed), per RFC 9162 §2.1.4.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyProof {
    /// The older checkpoint (e.g. the one a witness holds).
    pub old: Checkpoint,
    /// The newer checkpoint.
    pub new: Checkpoint,
    /// The proof nodes (hex in JSON).
    #[serde(with = "hex_hashes")]
    pub path: Vec<Hash>,
}

/// Builds the consistency proof from checkpoint `old` to checkpoint `new` from the journal's
/// records, checking on the way that the journal matches both roots.
pub fn prove_consistency(
    dir: &Path,
    old: &Checkpoint,
    new: &Checkpoint,
) -> Result<ConsistencyProof> {
    if old.tree_size > new.tree_size {
        return Err(Error::CheckpointMismatch {
            tree_size: old.tree_size,
            reason: format!(
                "the old checkpoint is larger than the new one ({})",
                new.tree_size
            ),
        });
    }
    let frontier_start = crate::retention::start_frontier(dir)?;
    if old.tree_size < frontier_start.size() {
        return Err(Error::Horizon(format!(
            "the old checkpoint (size {}) is older than the retention horizon ({})",
            old.tree_size,
            frontier_start.size()
        )));
    }
    let mut ranges = RangeHasher::with_horizon(
        consistency_ranges(old.tree_size, new.tree_size),
        &frontier_start,
    )
    .ok_or_else(|| Error::Horizon("the horizon does not cover the proof's ranges".into()))?;
    let mut frontier = frontier_start;
    let mut old_root = (old.tree_size == frontier.size()).then(|| frontier.root());
    for item in JournalReader::open(dir)? {
        let (seq, payload) = item?;
        if seq >= new.tree_size {
            break;
        }
        let leaf = leaf_hash(&payload);
        frontier.push(leaf);
        ranges.push(seq, &leaf);
        if frontier.size() == old.tree_size {
            old_root = Some(frontier.root());
        }
    }
    for (checkpoint, root) in [
        (old, old_root),
        (
            new,
            (frontier.size() == new.tree_size).then(|| frontier.root()),
        ),
    ] {
        if root != Some(checkpoint.root_hash) {
            return Err(Error::CheckpointMismatch {
                tree_size: checkpoint.tree_size,
                reason: "the journal's records do not hash to this checkpoint's root; run `apiwatch verify`".into(),
            });
        }
    }
    let path = ranges.finish().ok_or_else(|| Error::CheckpointMismatch {
        tree_size: new.tree_size,
        reason: "a proof range was not fully read".into(),
    })?;
    Ok(ConsistencyProof {
        old: old.clone(),
        new: new.clone(),
        path,
    })
}

/// Checks a consistency proof: both signatures with `key`, then the proof between the roots.
pub fn verify_consistency_proof(proof: &ConsistencyProof, key: &VerifyingKey) -> Result<()> {
    proof.old.verify(key)?;
    proof.new.verify(key)?;
    let (old, new) = (&proof.old, &proof.new);
    if !verify_consistency(
        old.tree_size,
        new.tree_size,
        &old.root_hash,
        &new.root_hash,
        &proof.path,
    ) {
        return Err(Error::CheckpointMismatch {
            tree_size: old.tree_size,
            reason: format!(
                "the checkpoint at size {} does not extend it: history was rewritten",
                new.tree_size
            ),
        });
    }
    Ok(())
}

mod base64_bytes {
    use super::*;

    pub(super) fn serialize<S: Serializer>(
        bytes: &[u8],
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(&BASE64.encode(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        BASE64.decode(text).map_err(serde::de::Error::custom)
    }
}

mod hex_hashes {
    use super::*;

    pub(super) fn serialize<S: Serializer>(
        hashes: &[Hash],
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_seq(hashes.iter().map(hex::encode))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Vec<Hash>, D::Error> {
        let texts = Vec::<String>::deserialize(deserializer)?;
        texts
            .iter()
            .map(|text| {
                let bytes = hex::decode(text).map_err(serde::de::Error::custom)?;
                bytes.try_into().map_err(|bytes: Vec<u8>| {
                    serde::de::Error::custom(format!("hash has {} bytes, expected 32", bytes.len()))
                })
            })
            .collect()
    }
}

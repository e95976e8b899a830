//! The RFC 6962 / RFC 9162 Merkle tree over journal records, with SHA-256.
//!
//! - Leaf hash: `SHA-256(0x00 || record)`, where the record is the exact stored payload.
//! - Node hash: `SHA-256(0x01 || left || right)`.
//! - Tree hash of `n` leaves (`MTH`): `SHA-256("")` for `n = 0`, the leaf hash for `n = 1`, and
//!   otherwise `node(MTH(first k), MTH(rest))` with `k` the largest power of two below `n`.
//!
//! The writer keeps only a [`Frontier`]: the roots of the perfect subtrees that make up the tree
//! so far, at most 64 hashes. Proofs are described as lists of leaf ranges whose tree hashes form
//! the proof ([`inclusion_ranges`], [`consistency_ranges`]), so callers can compute them while
//! streaming the journal once instead of holding every leaf hash in memory.
//!
//! References: RFC 9162 §2.1 (tree, inclusion and consistency proofs and their verification).

use std::ops::Range;

use sha2::{Digest, Sha256};

/// A SHA-256 hash.
pub type Hash = [u8; 32];

/// The tree hash of the empty tree, `SHA-256("")`.
pub const EMPTY_ROOT: Hash = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// Hashes one record as a leaf: `SHA-256(0x00 || record)`.
pub fn leaf_hash(record: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x00]);
    hasher.update(record);
    hasher.finalize().into()
}

/// Hashes two children into their parent: `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut block = [0u8; 65];
    block[0] = 0x01;
    block[1..33].copy_from_slice(left);
    block[33..].copy_from_slice(right);
    Sha256::digest(block).into()
}

/// The largest power of two strictly below `n` (for `n >= 2`).
fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// The compact state of an append-only tree: one hash per set bit of its size.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frontier {
    /// Roots of perfect subtrees, largest (leftmost) first.
    nodes: Vec<Hash>,
    size: u64,
}

impl Frontier {
    /// Creates the frontier of the empty tree.
    pub fn new() -> Self {
        Frontier::default()
    }

    /// Appends one leaf hash; amortised O(1) node hashes.
    pub fn push(&mut self, leaf: Hash) {
        let mut carry = leaf;
        let mut size = self.size;
        while size & 1 == 1 {
            // Invariant: one stored node per set bit of `size`, so a set bit means a node to pop.
            let left = self
                .nodes
                .pop()
                .expect("frontier holds one node per set bit of its size");
            carry = node_hash(&left, &carry);
            size >>= 1;
        }
        self.nodes.push(carry);
        self.size += 1;
    }

    /// Rebuilds a frontier from its size and its nodes (largest subtree first); `None` unless
    /// there is exactly one node per set bit of `size`.
    pub fn from_parts(size: u64, nodes: Vec<Hash>) -> Option<Frontier> {
        (nodes.len() == size.count_ones() as usize).then_some(Frontier { nodes, size })
    }

    /// The nodes as hex, largest subtree first: how the horizon and the resume mark store them.
    pub(crate) fn hex_nodes(&self) -> Vec<String> {
        self.nodes.iter().map(hex::encode).collect()
    }

    /// Rebuilds a frontier from [`Frontier::hex_nodes`]; the error says which node is wrong.
    pub(crate) fn from_hex_nodes(size: u64, nodes: &[String]) -> Result<Frontier, String> {
        let hashes = nodes
            .iter()
            .map(|node| {
                let bytes = hex::decode(node).map_err(|err| format!("node {node:?}: {err}"))?;
                Hash::try_from(bytes.as_slice())
                    .map_err(|_| format!("node {node:?} is not 32 bytes"))
            })
            .collect::<Result<Vec<Hash>, String>>()?;
        Frontier::from_parts(size, hashes).ok_or_else(|| {
            format!(
                "{} nodes cannot be the frontier of a tree of {size} records",
                nodes.len()
            )
        })
    }

    /// The roots of the perfect subtrees, largest (leftmost) first.
    pub fn nodes(&self) -> &[Hash] {
        &self.nodes
    }

    /// The leaf range each node covers, in [`Frontier::nodes`] order.
    pub fn node_ranges(&self) -> Vec<Range<u64>> {
        let mut ranges = Vec::with_capacity(self.nodes.len());
        let mut start = 0;
        for bit in (0..64).rev() {
            let width = 1u64 << bit;
            if self.size & width != 0 {
                ranges.push(start..start + width);
                start += width;
            }
        }
        ranges
    }

    /// Number of leaves in the tree.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The tree hash (`MTH`) of all leaves appended so far.
    pub fn root(&self) -> Hash {
        let mut nodes = self.nodes.iter().rev();
        let Some(last) = nodes.next() else {
            return EMPTY_ROOT;
        };
        nodes.fold(*last, |right, left| node_hash(left, &right))
    }
}

/// The tree hash (`MTH`) of `leaves` (leaf hashes), for any count including zero.
pub fn root_from_leaves(leaves: &[Hash]) -> Hash {
    let mut frontier = Frontier::new();
    for leaf in leaves {
        frontier.push(*leaf);
    }
    frontier.root()
}

/// The leaf ranges whose tree hashes form the inclusion proof of leaf `index` in a tree of `size`
/// leaves, in proof order (bottom up). Empty when `index >= size` or `size == 1`.
pub fn inclusion_ranges(index: u64, size: u64) -> Vec<Range<u64>> {
    let mut ranges = Vec::new();
    if index >= size {
        return ranges;
    }
    // Walk down from the root; each step records the sibling subtree, top down.
    let (mut lo, mut hi) = (0u64, size);
    while hi - lo > 1 {
        let k = split_point(hi - lo);
        if index < lo + k {
            ranges.push(lo + k..hi);
            hi = lo + k;
        } else {
            ranges.push(lo..lo + k);
            lo += k;
        }
    }
    ranges.reverse();
    ranges
}

/// The leaf ranges whose tree hashes form the consistency proof from a tree of `old_size` leaves
/// to one of `new_size` leaves (RFC 9162 §2.1.4.1 `PROOF`). Empty when `old_size` is 0 or not
/// below `new_size`.
pub fn consistency_ranges(old_size: u64, new_size: u64) -> Vec<Range<u64>> {
    let mut ranges = Vec::new();
    if old_size == 0 || old_size >= new_size {
        return ranges;
    }
    subproof(old_size, 0, new_size, true, &mut ranges);
    ranges
}

/// RFC 9162 `SUBPROOF(m, D[lo:hi], b)`, appending ranges in proof order.
fn subproof(m: u64, lo: u64, hi: u64, whole_old_tree: bool, out: &mut Vec<Range<u64>>) {
    let n = hi - lo;
    if m == n {
        if !whole_old_tree {
            out.push(lo..hi);
        }
        return;
    }
    let k = split_point(n);
    if m <= k {
        subproof(m, lo, lo + k, whole_old_tree, out);
        out.push(lo + k..hi);
    } else {
        subproof(m - k, lo + k, hi, false, out);
        out.push(lo..lo + k);
    }
}

/// The inclusion proof (audit path) of leaf `index` in the tree of `leaves`.
pub fn inclusion_proof(leaves: &[Hash], index: u64) -> Vec<Hash> {
    inclusion_ranges(index, leaves.len() as u64)
        .into_iter()
        .map(|range| root_from_leaves(&leaves[range.start as usize..range.end as usize]))
        .collect()
}

/// The consistency proof from the first `old_size` of `leaves` to all of them.
pub fn consistency_proof(leaves: &[Hash], old_size: u64) -> Vec<Hash> {
    consistency_ranges(old_size, leaves.len() as u64)
        .into_iter()
        .map(|range| root_from_leaves(&leaves[range.start as usize..range.end as usize]))
        .collect()
}

/// Checks that `proof` shows leaf `leaf_hash` at `index` in the tree of `size` leaves with
/// tree hash `root` (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(
    leaf_hash: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> bool {
    if index >= size {
        return false;
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut hash = *leaf_hash;
    for sibling in proof {
        if snode == 0 {
            return false;
        }
        if fnode & 1 == 1 || fnode == snode {
            hash = node_hash(sibling, &hash);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            hash = node_hash(&hash, sibling);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    snode == 0 && hash == *root
}

/// Checks that `proof` shows the tree of `old_size` leaves with hash `old_root` is a prefix of
/// the tree of `new_size` leaves with hash `new_root` (RFC 9162 §2.1.4.2).
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> bool {
    if old_size > new_size {
        return false;
    }
    if old_size == new_size {
        return proof.is_empty() && old_root == new_root;
    }
    if old_size == 0 {
        // The empty tree is a prefix of every tree; there is nothing to prove.
        return proof.is_empty();
    }
    if proof.is_empty() {
        return false;
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old_size.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let (mut fnode, mut snode) = (old_size - 1, new_size - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut old_hash, mut new_hash) = (path[0], path[0]);
    for node in &path[1..] {
        if snode == 0 {
            return false;
        }
        if fnode & 1 == 1 || fnode == snode {
            old_hash = node_hash(node, &old_hash);
            new_hash = node_hash(node, &new_hash);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            new_hash = node_hash(&new_hash, node);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    snode == 0 && old_hash == *old_root && new_hash == *new_root
}

/// Computes the tree hashes of disjoint leaf ranges while leaves stream past in order.
///
/// Used to build proofs in one pass over the journal with O(log² n) memory.
#[derive(Debug)]
pub struct RangeHasher {
    /// `(range, frontier, position in the caller's order)`, sorted by range start.
    ranges: Vec<(Range<u64>, Frontier, usize)>,
    cursor: usize,
}

impl RangeHasher {
    /// Prepares to hash `ranges` (disjoint); results come back in the same order.
    pub fn new(ranges: Vec<Range<u64>>) -> Self {
        let mut ranges: Vec<_> = ranges
            .into_iter()
            .enumerate()
            .map(|(position, range)| (range, Frontier::new(), position))
            .collect();
        ranges.sort_by_key(|(range, _, _)| range.start);
        RangeHasher { ranges, cursor: 0 }
    }

    /// Like [`RangeHasher::new`], for a journal whose leaves before `horizon.size()` are gone:
    /// a range that starts before the horizon is seeded with the horizon's nodes inside it, so
    /// only the leaves from the horizon on need to be fed. `None` when a range needs leaves
    /// before the horizon that no node covers.
    pub fn with_horizon(ranges: Vec<Range<u64>>, horizon: &Frontier) -> Option<Self> {
        let mut hasher = RangeHasher::new(ranges);
        let boundary = horizon.size();
        let spans: Vec<(Range<u64>, Hash)> = horizon
            .node_ranges()
            .into_iter()
            .zip(horizon.nodes().iter().copied())
            .collect();
        for (range, frontier, _) in &mut hasher.ranges {
            if range.start >= boundary {
                continue;
            }
            let inside: Vec<&(Range<u64>, Hash)> = spans
                .iter()
                .filter(|(span, _)| span.start >= range.start && span.end <= range.end)
                .collect();
            let covered: u64 = inside.iter().map(|(span, _)| span.end - span.start).sum();
            let needed = boundary.min(range.end) - range.start;
            if covered != needed {
                return None;
            }
            let seeded =
                Frontier::from_parts(covered, inside.iter().map(|(_, hash)| *hash).collect())?;
            *frontier = seeded;
        }
        Some(hasher)
    }

    /// Feeds leaf `index`; leaves must come in increasing index order.
    pub fn push(&mut self, index: u64, leaf: &Hash) {
        while let Some((range, _, _)) = self.ranges.get(self.cursor) {
            if index >= range.end {
                self.cursor += 1;
                continue;
            }
            if index >= range.start {
                self.ranges[self.cursor].1.push(*leaf);
            }
            return;
        }
    }

    /// The tree hash of each range in the order given to [`RangeHasher::new`], or `None` if a
    /// range did not receive all its leaves.
    pub fn finish(self) -> Option<Vec<Hash>> {
        let mut out = vec![EMPTY_ROOT; self.ranges.len()];
        for (range, frontier, position) in self.ranges {
            if frontier.size() != range.end - range.start {
                return None;
            }
            out[position] = frontier.root();
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests;

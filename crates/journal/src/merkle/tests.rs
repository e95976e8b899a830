//! Merkle tree tests against the published RFC 6962 test vectors.
//!
//! Source of the vectors: transparency-dev/merkle, `proof/verify_test.go` (the data set of the
//! certificate-transparency reference `merkle_tree_test`): eight leaf inputs, the roots of their
//! first 1..=8 leaves, and known inclusion and consistency proofs. Leaf numbers in the Go file
//! are one-based; here they are zero-based.

use super::*;
use proptest::prelude::*;

fn h(hex_str: &str) -> Hash {
    let bytes = hex::decode(hex_str).unwrap();
    bytes.try_into().unwrap()
}

const INPUTS: [&str; 8] = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
];

const ROOTS: [&str; 8] = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

/// (zero-based leaf index, tree size, proof)
fn inclusion_vectors() -> Vec<(u64, u64, Vec<Hash>)> {
    vec![
        (0, 1, vec![]),
        (
            0,
            8,
            vec![
                h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
                h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
            ],
        ),
        (
            5,
            8,
            vec![
                h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
                h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
                h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
            ],
        ),
        (
            2,
            3,
            vec![h(
                "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            )],
        ),
        (
            1,
            5,
            vec![
                h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
                h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
            ],
        ),
    ]
}

/// (old size, new size, proof)
fn consistency_vectors() -> Vec<(u64, u64, Vec<Hash>)> {
    vec![
        (1, 1, vec![]),
        (
            1,
            8,
            vec![
                h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
                h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
            ],
        ),
        (
            6,
            8,
            vec![
                h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
                h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
                h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
            ],
        ),
        (
            2,
            5,
            vec![
                h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
            ],
        ),
        (
            6,
            7,
            vec![
                h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
                h("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
                h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
            ],
        ),
    ]
}

fn vector_leaves() -> Vec<Hash> {
    INPUTS
        .iter()
        .map(|input| leaf_hash(&hex::decode(input).unwrap()))
        .collect()
}

#[test]
fn empty_tree_hash_is_sha256_of_nothing() {
    assert_eq!(root_from_leaves(&[]), EMPTY_ROOT);
    assert_eq!(EMPTY_ROOT, <Hash>::from(Sha256::digest(b"")));
    assert_eq!(Frontier::new().root(), EMPTY_ROOT);
}

#[test]
fn roots_of_the_reference_tree_match_the_published_vectors() {
    let leaves = vector_leaves();
    let mut frontier = Frontier::new();
    for (n, want) in ROOTS.iter().enumerate() {
        frontier.push(leaves[n]);
        assert_eq!(
            hex::encode(root_from_leaves(&leaves[..=n])),
            *want,
            "root of {} leaves",
            n + 1
        );
        assert_eq!(
            hex::encode(frontier.root()),
            *want,
            "frontier root at {} leaves",
            n + 1
        );
        assert_eq!(frontier.size(), n as u64 + 1);
    }
}

#[test]
fn generated_inclusion_proofs_equal_the_published_ones_and_verify() {
    let leaves = vector_leaves();
    for (index, size, want) in inclusion_vectors() {
        let tree = &leaves[..size as usize];
        assert_eq!(
            inclusion_proof(tree, index),
            want,
            "proof of leaf {index} in {size}"
        );
        let root = h(ROOTS[size as usize - 1]);
        assert!(verify_inclusion(
            &leaves[index as usize],
            index,
            size,
            &want,
            &root
        ));
        // The probes of the reference suite: wrong index, size, leaf or root, padded proofs.
        let mut probes: Vec<(u64, u64, Hash, Hash, Vec<Hash>)> = vec![
            (index + 1, size, leaves[index as usize], root, want.clone()),
            (index ^ 2, size, leaves[index as usize], root, want.clone()),
            (index, size * 2, leaves[index as usize], root, want.clone()),
            (index, size / 2, leaves[index as usize], root, want.clone()),
            (index, size, leaf_hash(b"WrongLeaf"), root, want.clone()),
            (
                index,
                size,
                leaves[index as usize],
                EMPTY_ROOT,
                want.clone(),
            ),
            (
                index,
                size,
                leaves[index as usize],
                root,
                [want.clone(), vec![root]].concat(),
            ),
            (
                index,
                size,
                leaves[index as usize],
                root,
                [vec![root], want.clone()].concat(),
            ),
        ];
        if index > 0 {
            probes.push((index - 1, size, leaves[index as usize], root, want.clone()));
        }
        for i in 0..want.len() {
            let mut bad = want.clone();
            bad[i][0] ^= 8;
            probes.push((index, size, leaves[index as usize], root, bad));
        }
        if !want.is_empty() {
            probes.push((
                index,
                size,
                leaves[index as usize],
                root,
                want[..want.len() - 1].to_vec(),
            ));
        }
        for (probe_index, probe_size, leaf, probe_root, proof) in probes {
            assert!(
                !verify_inclusion(&leaf, probe_index, probe_size, &proof, &probe_root),
                "probe index {probe_index} size {probe_size} verified"
            );
        }
    }
}

#[test]
fn generated_consistency_proofs_equal_the_published_ones_and_verify() {
    let leaves = vector_leaves();
    for (old_size, new_size, want) in consistency_vectors() {
        assert_eq!(
            consistency_proof(&leaves[..new_size as usize], old_size),
            want,
            "{old_size} -> {new_size}"
        );
        let old_root = h(ROOTS[old_size as usize - 1]);
        let new_root = h(ROOTS[new_size as usize - 1]);
        assert!(verify_consistency(
            old_size, new_size, &old_root, &new_root, &want
        ));
        if want.is_empty() {
            continue;
        }
        let mut probes: Vec<(u64, u64, Hash, Hash, Vec<Hash>)> = vec![
            (old_size - 1, new_size, old_root, new_root, want.clone()),
            (old_size + 1, new_size, old_root, new_root, want.clone()),
            (old_size ^ 2, new_size, old_root, new_root, want.clone()),
            (old_size, new_size * 2, old_root, new_root, want.clone()),
            (old_size, new_size / 2, old_root, new_root, want.clone()),
            (old_size, new_size, new_root, old_root, want.clone()),
            (old_size, new_size, EMPTY_ROOT, new_root, want.clone()),
            (old_size, new_size, old_root, EMPTY_ROOT, want.clone()),
            (old_size, new_size, old_root, new_root, vec![]),
            (
                old_size,
                new_size,
                old_root,
                new_root,
                [want.clone(), vec![old_root]].concat(),
            ),
            (
                old_size,
                new_size,
                old_root,
                new_root,
                [vec![new_root], want.clone()].concat(),
            ),
            (
                old_size,
                new_size,
                old_root,
                new_root,
                [vec![want[0]], want.clone()].concat(),
            ),
            (
                old_size,
                new_size,
                old_root,
                new_root,
                want[..want.len() - 1].to_vec(),
            ),
        ];
        for i in 0..want.len() {
            let mut bad = want.clone();
            bad[i][0] ^= 16;
            probes.push((old_size, new_size, old_root, new_root, bad));
        }
        for (probe_old, probe_new, probe_old_root, probe_new_root, proof) in probes {
            assert!(
                !verify_consistency(
                    probe_old,
                    probe_new,
                    &probe_old_root,
                    &probe_new_root,
                    &proof
                ),
                "probe {probe_old} -> {probe_new} verified"
            );
        }
    }
}

#[test]
fn trivial_consistency_cases_follow_the_reference_rules() {
    let a = leaf_hash(b"a");
    let b = leaf_hash(b"b");
    assert!(verify_consistency(0, 0, &a, &a, &[]));
    assert!(verify_consistency(0, 1, &a, &b, &[]));
    assert!(verify_consistency(1, 1, &b, &b, &[]));
    assert!(!verify_consistency(1, 1, &a, &b, &[]));
    assert!(!verify_consistency(1, 0, &a, &b, &[]));
    assert!(!verify_consistency(2, 1, &a, &b, &[]));
    assert!(!verify_consistency(1, 2, &a, &b, &[]));
    assert!(!verify_consistency(
        0,
        0,
        &EMPTY_ROOT,
        &EMPTY_ROOT,
        &[EMPTY_ROOT]
    ));
    assert!(!verify_consistency(
        1,
        1,
        &EMPTY_ROOT,
        &EMPTY_ROOT,
        &[EMPTY_ROOT]
    ));
}

#[test]
fn range_hasher_computes_proofs_in_one_streaming_pass() {
    let leaves: Vec<Hash> = (0..37u32).map(|i| leaf_hash(&i.to_le_bytes())).collect();
    for index in 0..leaves.len() as u64 {
        let mut hasher = RangeHasher::new(inclusion_ranges(index, leaves.len() as u64));
        for (i, leaf) in leaves.iter().enumerate() {
            hasher.push(i as u64, leaf);
        }
        assert_eq!(hasher.finish().unwrap(), inclusion_proof(&leaves, index));
    }
    let mut short = RangeHasher::new(inclusion_ranges(3, 37));
    short.push(0, &leaves[0]);
    assert!(short.finish().is_none());
}

proptest! {
    #[test]
    fn every_generated_proof_verifies_and_a_flipped_byte_fails(
        size in 1u64..200,
        index_seed in any::<u64>(),
        old_seed in any::<u64>(),
        flip in any::<(usize, usize, u8)>(),
    ) {
        let leaves: Vec<Hash> = (0..size).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let root = root_from_leaves(&leaves);
        let index = index_seed % size;
        let proof = inclusion_proof(&leaves, index);
        prop_assert!(verify_inclusion(&leaves[index as usize], index, size, &proof, &root));
        let bit = 1u8 << (flip.2 % 8);
        if !proof.is_empty() {
            let mut bad = proof.clone();
            let node = flip.0 % bad.len();
            bad[node][flip.1 % 32] ^= bit;
            prop_assert!(!verify_inclusion(&leaves[index as usize], index, size, &bad, &root));
        }
        let mut bad_leaf = leaves[index as usize];
        bad_leaf[flip.1 % 32] ^= bit;
        prop_assert!(!verify_inclusion(&bad_leaf, index, size, &proof, &root));

        let old_size = 1 + old_seed % size;
        let old_root = root_from_leaves(&leaves[..old_size as usize]);
        let consistency = consistency_proof(&leaves, old_size);
        prop_assert!(verify_consistency(old_size, size, &old_root, &root, &consistency));
        if !consistency.is_empty() {
            let mut bad = consistency.clone();
            let node = flip.0 % bad.len();
            bad[node][flip.1 % 32] ^= bit;
            prop_assert!(!verify_consistency(old_size, size, &old_root, &root, &bad));
        }
    }
}

/// Hashes `ranges` the way a journal pruned at `horizon` must: seeded with the frontier at the
/// horizon, then fed only the leaves from the horizon on.
fn hash_from_horizon(
    leaves: &[Hash],
    horizon: u64,
    ranges: Vec<std::ops::Range<u64>>,
) -> Option<Vec<Hash>> {
    let mut frontier = Frontier::new();
    for leaf in &leaves[..horizon as usize] {
        frontier.push(*leaf);
    }
    let rebuilt = Frontier::from_parts(frontier.size(), frontier.nodes().to_vec()).unwrap();
    assert_eq!(rebuilt, frontier);
    let mut hasher = RangeHasher::with_horizon(ranges, &frontier)?;
    for (index, leaf) in leaves.iter().enumerate().skip(horizon as usize) {
        hasher.push(index as u64, leaf);
    }
    hasher.finish()
}

#[test]
fn proofs_built_from_a_horizon_equal_proofs_built_from_every_leaf() {
    // Every tree size up to 40, every horizon, every kept leaf: the same inclusion proof, and
    // the same consistency proof from every old size at or after the horizon.
    for size in 1..=40u64 {
        let leaves: Vec<Hash> = (0..size).map(|i| leaf_hash(&i.to_le_bytes())).collect();
        for horizon in 0..=size {
            for index in horizon..size {
                let expected = inclusion_proof(&leaves, index);
                let built = hash_from_horizon(&leaves, horizon, inclusion_ranges(index, size));
                assert_eq!(
                    built,
                    Some(expected),
                    "size {size} horizon {horizon} index {index}"
                );
            }
            for old in horizon.max(1)..size {
                let expected = consistency_proof(&leaves, old);
                let built = hash_from_horizon(&leaves, horizon, consistency_ranges(old, size));
                assert_eq!(
                    built,
                    Some(expected),
                    "size {size} horizon {horizon} old {old}"
                );
            }
        }
    }
}

#[test]
fn a_frontier_needs_one_node_per_set_bit() {
    assert!(Frontier::from_parts(5, vec![[0; 32]; 2]).is_some());
    assert!(Frontier::from_parts(5, vec![[0; 32]; 3]).is_none());
    assert!(Frontier::from_parts(0, Vec::new()).is_some());
    let frontier = Frontier::from_parts(13, vec![[1; 32], [2; 32], [3; 32]]).unwrap();
    assert_eq!(frontier.node_ranges(), vec![0..8, 8..12, 12..13]);
}

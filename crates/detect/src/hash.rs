//! Hashing for maps keyed by values that are already SipHash outputs (random per engine), so
//! hashing them again would only cost time.

use std::hash::{BuildHasherDefault, Hasher};

/// Passes a `u64` through (mixing other input), for keys that are already random hashes.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct PrehashedHasher(u64);

impl Hasher for PrehashedHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(byte)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

/// Builder for [`PrehashedHasher`].
pub(crate) type Prehashed = BuildHasherDefault<PrehashedHasher>;

/// A map from pre-hashed `u64` keys.
pub(crate) type PrehashedMap<V> = std::collections::HashMap<u64, V, Prehashed>;

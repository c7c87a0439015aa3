//! The hasher of the session's and the back end's own maps (links, namespaces and
//! indexes by name, looked up several times per change): std's SipHash guards
//! against keys chosen to collide, at about five times the cost of this one (the
//! multiply-rotate hash of rustc's FxHasher). The keys are the names of objects in
//! namespaces this run works in, which only the script and root can choose; a
//! collision costs a longer probe, never a wrong answer.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

#[derive(Default, Clone, Copy)]
pub struct FxHasher {
    hash: u64,
}

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut last = [0u8; 8];
            last[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(last));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys that differ only in their last bytes, or in length, land apart: a map of
    /// the names a topology uses finds each of them.
    #[test]
    fn names_that_differ_late_or_in_length_are_told_apart() {
        let mut m: FastMap<(u8, String), usize> = FastMap::default();
        let names: Vec<String> =
            (0..2000).map(|i| format!("vh_{i}")).chain(["a".into(), "a\0".into(), "".into()]).collect();
        for (i, n) in names.iter().enumerate() {
            m.insert((i as u8 % 2, n.clone()), i);
        }
        assert_eq!(m.len(), names.len());
        for (i, n) in names.iter().enumerate() {
            assert_eq!(m.get(&(i as u8 % 2, n.clone())), Some(&i), "{n}");
        }
        let hash = |s: &str| {
            let mut h = FxHasher::default();
            h.write(s.as_bytes());
            h.finish()
        };
        assert_ne!(hash("vh_1000"), hash("vh_1001"));
        assert_ne!(hash("abcdefgh1"), hash("abcdefgh2"));
    }
}

//! [`SmallId`]: a pattern id stored inline when short.
//!
//! Ids are ULIDs (26 bytes) in the agents this store serves. Held inline, an id costs no
//! allocation when an outcome is queued, and a key comparison in the L1 reads the bytes from
//! the node it has already loaded instead of following a pointer to them (a cache miss on
//! every `get`: 6 % of W1's CPU samples when the L1 was keyed by `Arc<str>`).
#![forbid(unsafe_code)]

use std::borrow::Borrow;
use std::hash::{Hash, Hasher};

/// Bytes held inline; longer ids go to the heap, shared.
const INLINE: usize = 30;

/// An id, inline up to 30 bytes. Hashes, compares and borrows as its bytes, so a map keyed
/// by it is looked up with `id.as_bytes()`.
#[derive(Clone, Debug)]
pub(crate) enum SmallId {
    Inline {
        len: u8,
        bytes: [u8; INLINE],
    },
    /// Shared, so cloning a long key (every L1 replace does) is a count bump.
    Heap(std::sync::Arc<str>),
}

impl SmallId {
    pub fn new(id: &str) -> Self {
        if id.len() <= INLINE {
            let mut bytes = [0u8; INLINE];
            bytes[..id.len()].copy_from_slice(id.as_bytes());
            SmallId::Inline { len: id.len() as u8, bytes }
        } else {
            SmallId::Heap(id.into())
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        match self {
            SmallId::Inline { len, bytes } => &bytes[..*len as usize],
            SmallId::Heap(s) => s.as_bytes(),
        }
    }

    pub fn as_str(&self) -> &str {
        // The bytes were copied from a `&str`, so they are UTF-8 and this never falls back.
        std::str::from_utf8(self.as_bytes()).unwrap_or("")
    }
}

impl PartialEq for SmallId {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for SmallId {}

impl Hash for SmallId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // As `[u8]` hashes, which `Borrow<[u8]>` requires.
        self.as_bytes().hash(state);
    }
}

impl Borrow<[u8]> for SmallId {
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn inline_and_heap_ids_hash_and_compare_as_their_bytes() {
        let s = foldhash::fast::FixedState::with_seed(7);
        for id in ["", "a", "01ARZ3NDEKTSV4RRFFQ69G5FAV", &"x".repeat(30), &"y".repeat(31), &"z".repeat(300)]
        {
            let k = SmallId::new(id);
            assert_eq!(matches!(k, SmallId::Inline { .. }), id.len() <= 30, "{id}");
            assert_eq!(k.as_str(), id);
            assert_eq!(s.hash_one(&k), s.hash_one(id.as_bytes()), "{id}");
            assert_eq!(k, SmallId::new(id));
            assert_eq!(k.clone(), k);
        }
        assert_ne!(SmallId::new("ab"), SmallId::new("abc"));
        assert_ne!(SmallId::new(&"y".repeat(31)), SmallId::new(&"y".repeat(32)));
    }
}

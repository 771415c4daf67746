//! The ids a book has retired: kept for the life of the stream so that a
//! duplicate `new` is caught, so theirs is the memory that grows with a
//! run's length. The ids lie end to end in one buffer and a hash table holds
//! each one's place in it (eight bytes): an id of ten characters costs ~20
//! bytes, where a set of `CompactString`s costs 24 bytes an id plus its
//! table's share.

use std::hash::BuildHasher;

use hashbrown::hash_table::Entry;
use hashbrown::HashTable;
use rustc_hash::FxBuildHasher;

/// Bits of a place that hold an id's length in bytes (an id is at most 64
/// characters, 256 bytes).
const LENGTH_BITS: u32 = 16;

#[derive(Debug, Default)]
pub struct IdSet {
    bytes: Vec<u8>,
    /// Each id's place: its start in `bytes` above its length.
    places: HashTable<u64>,
}

impl IdSet {
    pub fn contains(&self, id: &str) -> bool {
        let id = id.as_bytes();
        let bytes = &self.bytes;
        self.places
            .find(hash(id), |&place| at(bytes, place) == id)
            .is_some()
    }

    /// Adds `id` unless it is there already.
    pub fn insert(&mut self, id: &str) {
        let id = id.as_bytes();
        let bytes = &self.bytes;
        let entry = self.places.entry(
            hash(id),
            |&place| at(bytes, place) == id,
            |&place| hash(at(bytes, place)),
        );
        if let Entry::Vacant(vacant) = entry {
            vacant.insert((self.bytes.len() as u64) << LENGTH_BITS | id.len() as u64);
            self.bytes.extend_from_slice(id);
        }
    }

    /// Every id, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.places
            .iter()
            .map(|&place| std::str::from_utf8(at(&self.bytes, place)).unwrap_or_default())
    }
}

impl<S: AsRef<str>> FromIterator<S> for IdSet {
    fn from_iter<I: IntoIterator<Item = S>>(ids: I) -> IdSet {
        let mut set = IdSet::default();
        for id in ids {
            set.insert(id.as_ref());
        }
        set
    }
}

/// The hash an id is filed under, here and in a book's table of resting
/// orders.
pub(crate) fn id_hash(id: &str) -> u64 {
    hash(id.as_bytes())
}

/// The bytes of the id at `place`.
fn at(bytes: &[u8], place: u64) -> &[u8] {
    let start = (place >> LENGTH_BITS) as usize;
    let length = (place & ((1 << LENGTH_BITS) - 1)) as usize;
    &bytes[start..start + length]
}

fn hash(id: &[u8]) -> u64 {
    FxBuildHasher.hash_one(id)
}

#[cfg(test)]
mod tests {
    use super::IdSet;

    #[test]
    fn holds_each_id_once_and_finds_only_those() {
        let ids: Vec<String> = (0..10_000).map(|i| format!("o{i}")).collect();
        let mut set: IdSet = ids.iter().step_by(2).collect();
        for id in ids.iter().step_by(2) {
            set.insert(id);
        }
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(set.contains(id), i % 2 == 0, "{id}");
        }
        assert!(!set.contains(""));
        assert!(!set.contains("o1o"));
        let mut listed: Vec<&str> = set.iter().collect();
        listed.sort_unstable();
        let mut expected: Vec<&str> = ids.iter().step_by(2).map(String::as_str).collect();
        expected.sort_unstable();
        assert_eq!(listed, expected);
    }
}

//! Order ids as a book files them. The ids a book has retired ([`IdSet`])
//! are kept for the life of the stream so that a duplicate `new` is caught,
//! so theirs is the memory that grows with a run's length. The ids lie end
//! to end in one buffer and a hash table holds each one's place in it
//! (eight bytes): an id of ten characters costs ~20 bytes, where a set of
//! `CompactString`s costs 24 bytes an id plus its table's share. Resting
//! orders are found through a [`SlotTable`] of their slots (as a book's
//! levels are, by price).

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

/// Slot numbers found by hash: a book's resting orders by id, its levels
/// by price. Open addressing with linear probing over eight-byte entries,
/// each a slot number beside the low 32 bits of its key's hash (which also
/// give its home, so the table grows without asking for keys again). Not
/// hashbrown's table because in a deep book every lookup misses the cache,
/// and a caller that knows its next orders can only fetch their entries
/// early if it can say where an entry lives ([`SlotTable::prefetch`]).
#[derive(Debug)]
pub(crate) struct SlotTable {
    entries: Vec<u64>,
    len: usize,
}

const EMPTY: u64 = u64::MAX;

impl Default for SlotTable {
    fn default() -> SlotTable {
        SlotTable {
            entries: vec![EMPTY; 16],
            len: 0,
        }
    }
}

impl SlotTable {
    /// The slot filed under `hash` for which `is` holds.
    pub(crate) fn find(&self, hash: u64, is: impl Fn(u32) -> bool) -> Option<u32> {
        let mask = self.mask();
        let mut at = self.home(hash);
        loop {
            let entry = self.entries[at];
            if entry == EMPTY {
                return None;
            }
            if entry >> 32 == hash & 0xffff_ffff && is(entry as u32) {
                return Some(entry as u32);
            }
            at = (at + 1) & mask;
        }
    }

    /// Files `slot` under `hash`; the caller knows it is not there yet.
    pub(crate) fn insert(&mut self, hash: u64, slot: u32) {
        if (self.len + 1) * 4 > self.entries.len() * 3 {
            self.grow();
        }
        self.put(entry(hash, slot));
        self.len += 1;
    }

    /// Writes `entry` in the first empty place from its home on.
    fn put(&mut self, entry: u64) {
        let mask = self.mask();
        let mut at = self.home(entry >> 32);
        while self.entries[at] != EMPTY {
            at = (at + 1) & mask;
        }
        self.entries[at] = entry;
    }

    /// Takes `slot`, filed under `hash`, out. Later entries of the run shift
    /// back into the hole (no tombstones), so probes stay as short as if it
    /// had never been there.
    pub(crate) fn remove(&mut self, hash: u64, slot: u32) {
        let mask = self.mask();
        let target = entry(hash, slot);
        let mut hole = self.home(hash);
        while self.entries[hole] != target {
            if self.entries[hole] == EMPTY {
                return;
            }
            hole = (hole + 1) & mask;
        }
        let mut at = hole;
        loop {
            at = (at + 1) & mask;
            let next = self.entries[at];
            if next == EMPTY {
                break;
            }
            // `next` may fill the hole unless its home lies after the hole.
            let from_home = at.wrapping_sub(self.home(next >> 32)) & mask;
            if from_home >= at.wrapping_sub(hole) & mask {
                self.entries[hole] = next;
                hole = at;
            }
        }
        self.entries[hole] = EMPTY;
        self.len -= 1;
    }

    /// Asks the cache for the line where a lookup of `hash` starts.
    pub(crate) fn prefetch(&self, hash: u64) {
        prefetch(&self.entries[self.home(hash)]);
    }

    /// The first slot filed under a hash whose low 32 bits equal `hash`'s:
    /// almost always the one a lookup will find, without reading any slot.
    pub(crate) fn likely(&self, hash: u64) -> Option<u32> {
        self.find(hash, |_| true)
    }

    /// Where a lookup of `hash` starts: its low 32 bits, within the table.
    fn home(&self, hash: u64) -> usize {
        (hash & 0xffff_ffff) as usize & self.mask()
    }

    fn mask(&self) -> usize {
        self.entries.len() - 1
    }

    fn grow(&mut self) {
        let doubled = vec![EMPTY; self.entries.len() * 2];
        let old = std::mem::replace(&mut self.entries, doubled);
        for e in old.into_iter().filter(|&e| e != EMPTY) {
            self.put(e);
        }
    }
}

fn entry(hash: u64, slot: u32) -> u64 {
    (hash & 0xffff_ffff) << 32 | u64::from(slot)
}

/// Hints that the cache lines holding `value` (its first and last byte)
/// will be read soon.
pub(crate) fn prefetch<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let first = (value as *const T).cast::<i8>();
        let last = first.wrapping_add(std::mem::size_of::<T>().saturating_sub(1));
        // SAFETY: a prefetch reads nothing and cannot fault, and both
        // addresses lie within `value`.
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(first);
            _mm_prefetch::<_MM_HINT_T0>(last);
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
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
    use super::{IdSet, SlotTable};
    use proptest::prelude::*;

    proptest! {
        /// Inserts and removals of slots under few, colliding hashes
        /// (runs that wrap past the table's end, removals from their
        /// middle) leave exactly the live slots findable.
        #[test]
        fn slot_table_finds_exactly_the_live_slots(
            ops in proptest::collection::vec((any::<bool>(), 0u64..48, any::<prop::sample::Index>()), 1..400)
        ) {
            let mut table = SlotTable::default();
            let mut live: Vec<(u64, u32)> = Vec::new();
            let mut gone: Vec<(u64, u32)> = Vec::new();
            for (slot, (insert, hash, pick)) in (0u32..).zip(ops) {
                // The high half of a hash is not the table's: only the low
                // 32 bits may decide.
                let hash = hash | u64::from(slot) << 40;
                if insert || live.is_empty() {
                    table.insert(hash, slot);
                    live.push((hash, slot));
                } else {
                    let (hash, slot) = live.swap_remove(pick.index(live.len()));
                    table.remove(hash, slot);
                    gone.push((hash, slot));
                }
                for &(hash, slot) in &live {
                    prop_assert_eq!(table.find(hash, |s| s == slot), Some(slot));
                }
                for &(hash, slot) in &gone {
                    prop_assert_eq!(table.find(hash, |s| s == slot), None);
                }
            }
            prop_assert_eq!(table.len, live.len());
        }
    }

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

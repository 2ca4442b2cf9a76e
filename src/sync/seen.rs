//! What a run has met already, kept so its memory stays flat however many users it reads: the
//! visitor IDs it queued (one record per visitor per run), and the Okta user IDs it read when a
//! user can be listed more than once (several groups).
//!
//! Each visitor ID is kept as its 64-bit xxh3 hash, 8 bytes a visitor (8 MiB for a million),
//! in one sorted array plus a small unsorted buffer that is merged in when it fills. Two
//! different visitor IDs share a hash with a probability of about n²/2⁶⁵ for n visitors in a
//! run (3 in 100 million at a million visitors). What a collision costs: the later of the two
//! users is skipped as a duplicate for that run and named in the run's `errors`, so it shows;
//! it is pushed by the next run that does not meet the other one first.
//!
//! Hashes are spread evenly over the 64-bit range, so a directory of where each run of leading
//! bits starts in the sorted array (about a sixteenth as many entries as hashes, 4 bytes each:
//! 256 KiB at a million) narrows a lookup to about sixteen neighbouring hashes at once: one or
//! two memory reads instead of the twenty scattered ones a binary search of the whole array
//! takes at a million. Any spread gives the right answer; an uneven one only makes lookups
//! slower.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};
use std::ops::Range;

/// How many hashes wait in the buffer before it is merged into the sorted array.
const BUFFER: usize = 64 * 1024;

/// The visitor IDs met so far in a run.
#[derive(Debug)]
pub struct SeenVisitors {
    /// Sorted, without repeats.
    sorted: Vec<u64>,
    /// Where the hashes whose leading `bits` bits are `b` start in `sorted`: `starts[b]`, up
    /// to `starts[b + 1]`. Empty when there is no directory (few hashes): the whole array.
    starts: Vec<u32>,
    /// How many leading bits the directory goes by (1 to 28, when it is not empty).
    bits: u32,
    /// Met since the last merge; none of these is in `sorted`.
    recent: HashSet<u64, BuildHasherDefault<AlreadyHashed>>,
    /// How many wait in `recent` before a merge (checked after each call of
    /// [`first_times`](Self::first_times): a page may run over it).
    buffer: usize,
}

impl Default for SeenVisitors {
    fn default() -> Self {
        Self::with_buffer(BUFFER)
    }
}

impl SeenVisitors {
    pub fn new() -> Self {
        Self::default()
    }

    fn with_buffer(buffer: usize) -> Self {
        SeenVisitors {
            sorted: Vec::new(),
            starts: Vec::new(),
            bits: 0,
            recent: HashSet::default(),
            buffer: buffer.max(1),
        }
    }

    /// One visitor ID: true the first time it is offered in this run, false after.
    #[cfg(test)]
    pub fn first_time(&mut self, visitor_id: &str) -> bool {
        self.first_times(std::iter::once(visitor_id)) == [true]
    }

    /// For each visitor ID, in their order, whether it is offered for the first time in this
    /// run (a repeat among them is no first time). At a million visitors each lookup in the
    /// sorted array is a miss of the processor's caches; made together (the directory for all,
    /// then the searches), the misses overlap instead of following one another.
    pub fn first_times<'a>(&mut self, ids: impl Iterator<Item = &'a str>) -> Vec<bool> {
        let hashes: Vec<u64> = ids
            .map(|id| xxhash_rust::xxh3::xxh3_64(id.as_bytes()))
            .collect();
        self.first_times_of(&hashes)
    }

    /// [`first_times`](Self::first_times) for the IDs' hashes.
    fn first_times_of(&mut self, hashes: &[u64]) -> Vec<bool> {
        let ranges: Vec<Range<usize>> = hashes.iter().map(|h| self.range_of(*h)).collect();
        let known: Vec<bool> = hashes
            .iter()
            .zip(ranges)
            .map(|(h, range)| {
                self.sorted
                    .get(range)
                    .is_some_and(|part| part.binary_search(h).is_ok())
            })
            .collect();
        let first = hashes
            .iter()
            .zip(known)
            .map(|(h, known)| !known && self.recent.insert(*h))
            .collect();
        if self.recent.len() >= self.buffer {
            self.merge();
        }
        first
    }

    /// One hash: true the first time it is offered.
    #[cfg(test)]
    fn first_time_hash(&mut self, h: u64) -> bool {
        self.first_times_of(&[h]) == [true]
    }

    /// How many distinct visitor IDs were offered.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.sorted.len() + self.recent.len()
    }

    /// Merges the buffer into the sorted array in place, from the back, without a second
    /// array.
    fn merge(&mut self) {
        let mut recent: Vec<u64> = self.recent.drain().collect();
        recent.sort_unstable();
        let old = self.sorted.len();
        self.sorted.resize(old + recent.len(), 0);
        let (mut i, mut j, mut k) = (old, recent.len(), self.sorted.len());
        while j > 0 {
            k -= 1;
            if i > 0 && self.sorted[i - 1] > recent[j - 1] {
                self.sorted[k] = self.sorted[i - 1];
                i -= 1;
            } else {
                self.sorted[k] = recent[j - 1];
                j -= 1;
            }
        }
        self.index();
    }

    /// The part of the sorted array where `h` would be, by the directory.
    fn range_of(&self, h: u64) -> Range<usize> {
        let all = 0..self.sorted.len();
        match self.bits {
            0 => all,
            bits => {
                let b = (h >> (64 - bits)) as usize;
                match (self.starts.get(b), self.starts.get(b + 1)) {
                    (Some(&start), Some(&end)) => start as usize..end as usize,
                    _ => all,
                }
            }
        }
    }

    /// Rebuilds the directory for the sorted array: about sixteen hashes per entry, none below
    /// 16 hashes (or past 2³² of them).
    fn index(&mut self) {
        let n = self.sorted.len();
        let bits = (usize::BITS - n.leading_zeros()).saturating_sub(4).min(28);
        self.starts.clear();
        self.bits = 0;
        if bits == 0 || u32::try_from(n).is_err() {
            return;
        }
        let buckets = 1usize << bits;
        self.starts.reserve_exact(buckets + 1);
        let mut i = 0;
        for b in 0..buckets {
            while self
                .sorted
                .get(i)
                .is_some_and(|h| ((h >> (64 - bits)) as usize) < b)
            {
                i += 1;
            }
            // Fits: n fits in a u32 (checked above).
            self.starts.push(i as u32);
        }
        self.starts.push(n as u32);
        self.bits = bits;
    }
}

/// A hasher for values that are hashes already (xxh3): they are used as they are.
#[derive(Default)]
struct AlreadyHashed(u64);

impl Hasher for AlreadyHashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `u64`s are hashed here; anything else is folded in, byte by byte.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// The user IDs seen in this run, kept on disk (a private temporary SQLite database), so that a
/// user in several groups is read once without holding every ID in memory.
pub struct SeenIds {
    conn: Option<rusqlite::Connection>,
}

impl SeenIds {
    pub fn new() -> Self {
        let conn = rusqlite::Connection::open("")
            .and_then(|c| {
                c.execute_batch(
                    "PRAGMA cache_size = -2048;
                     CREATE TABLE seen (id TEXT PRIMARY KEY) WITHOUT ROWID;",
                )
                .map(|()| c)
            })
            .map_err(|e| {
                tracing::warn!(
                    "cannot open a temporary database to skip users found in several groups \
                     ({e}); such users are pushed once per group"
                )
            })
            .ok();
        SeenIds { conn }
    }

    /// True the first time an ID is offered (and whenever the store fails: pushing a user twice
    /// is harmless, skipping one is not).
    pub fn first_time(&mut self, id: &str) -> bool {
        let Some(conn) = &self.conn else { return true };
        match conn
            .prepare_cached("INSERT OR IGNORE INTO seen (id) VALUES (?1)")
            .and_then(|mut s| s.execute([id]))
        {
            Ok(n) => n == 1,
            Err(e) => {
                tracing::warn!(
                    "temporary ID store failed ({e}); users in several groups may be pushed twice"
                );
                self.conn = None;
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_first_time_only() {
        let mut seen = SeenVisitors::new();
        assert!(seen.first_time("ada.lovelace@company.com"));
        assert!(
            seen.first_time("Ada.Lovelace@company.com"),
            "IDs are case-sensitive"
        );
        assert!(!seen.first_time("ada.lovelace@company.com"));
        assert_eq!(seen.len(), 2);
    }

    #[test]
    fn repeats_are_found_across_merges() {
        let mut seen = SeenVisitors::new();
        let n = BUFFER * 3 + 17;
        for i in 0..n {
            assert!(seen.first_time(&format!("user.{i}@company.com")));
        }
        assert_eq!(seen.len(), n);
        assert!(seen.sorted.windows(2).all(|w| w[0] < w[1]));
        assert!(seen.bits > 0 && seen.starts.len() == (1 << seen.bits) + 1);
        for i in (0..n).step_by(997) {
            assert!(!seen.first_time(&format!("user.{i}@company.com")), "{i}");
        }
        assert!(seen.first_time("someone.else@company.com"));
    }

    #[test]
    fn several_at_once_answer_as_one_by_one() {
        let ids: Vec<String> = (0..3 * BUFFER as u64)
            .map(|i| {
                format!(
                    "user.{}@company.com",
                    i % (2 * BUFFER as u64) * 7919 % 100_003
                )
            })
            .collect();
        let mut one = SeenVisitors::with_buffer(1000);
        let mut many = SeenVisitors::with_buffer(1000);
        for page in ids.chunks(200) {
            let expected: Vec<bool> = page.iter().map(|id| one.first_time(id)).collect();
            assert_eq!(many.first_times(page.iter().map(String::as_str)), expected);
        }
        assert_eq!(one.len(), many.len());
        // A repeat within the same call is no first time.
        assert_eq!(
            many.first_times(["x@company.com", "y@company.com", "x@company.com"].into_iter()),
            [true, true, false]
        );
    }

    /// Offers `values` then `probes`, and checks each answer against a plain set.
    fn agrees_on(values: &[u64], probes: &[u64], buffer: usize) {
        let mut seen = SeenVisitors::with_buffer(buffer);
        let mut plain = HashSet::new();
        for v in values.iter().chain(probes) {
            assert_eq!(seen.first_time_hash(*v), plain.insert(*v), "{v}");
        }
        assert_eq!(seen.len(), plain.len());
    }

    #[test]
    fn the_directory_finds_every_hash_however_they_are_spread() {
        let even: Vec<u64> = (0..50_000u64)
            .map(|i| xxhash_rust::xxh3::xxh3_64(&i.to_le_bytes()))
            .chain([0, 1, u64::MAX - 1, u64::MAX])
            .collect();
        let probes: Vec<u64> = (40_000..60_000u64)
            .map(|i| xxhash_rust::xxh3::xxh3_64(&i.to_le_bytes()))
            .chain([0, 1, 2, u64::MAX - 2, u64::MAX - 1, u64::MAX])
            .collect();
        agrees_on(&even, &probes, 1000);
        // All in the directory's first entry, or in a few: right, only slower.
        let skewed: Vec<u64> = (0..10_000u64).map(|i| i * i * i).collect();
        let probes: Vec<u64> = (0..30_000u64).map(|i| i * 7).collect();
        agrees_on(&skewed, &probes, 100);
        let high: Vec<u64> = (0..5_000u64).map(|i| u64::MAX - i * 3).collect();
        agrees_on(&high, &high, 64);
        agrees_on(&[], &[5, 5], 1);
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            rng_seed: proptest::test_runner::RngSeed::Fixed(0x5eed_5eed),
            ..ProptestConfig::default()
        })]
        /// Agrees with a plain set of strings, whatever the order and the repeats.
        #[test]
        fn agrees_with_a_set(ids in proptest::collection::vec(0u32..3000, 0..20_000)) {
            let mut seen = SeenVisitors::with_buffer(64);
            let mut plain = HashSet::new();
            for id in ids {
                let id = format!("v{id}");
                prop_assert_eq!(seen.first_time(&id), plain.insert(id));
            }
            prop_assert_eq!(seen.len(), plain.len());
        }

        /// Agrees with a plain set, whatever the hashes' spread.
        #[test]
        fn hashes_agree_with_a_set(
            values in proptest::collection::vec(any::<u64>(), 0..3000),
            small in proptest::collection::vec(0u64..5000, 0..3000),
            probes in proptest::collection::vec(any::<u64>(), 0..300),
        ) {
            let mut seen = SeenVisitors::with_buffer(97);
            let mut plain = HashSet::new();
            for v in values.iter().chain(&small).chain(&probes).chain(&values) {
                prop_assert_eq!(seen.first_time_hash(*v), plain.insert(*v));
            }
        }
    }
}

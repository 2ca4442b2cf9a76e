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
//! Hashes are spread evenly over the 64-bit range, so a hash's place in the sorted array is
//! close to where its value says (`h / 2⁶⁴` of the way along): the lookup starts there and
//! narrows the range by interpolation, a few reads instead of the twenty scattered ones a
//! binary search takes at a million, and falls back to a binary search if that does not
//! converge.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};

/// How many hashes wait in the buffer before it is merged into the sorted array.
const BUFFER: usize = 64 * 1024;

/// The visitor IDs met so far in a run.
#[derive(Debug)]
pub struct SeenVisitors {
    /// Sorted, without repeats.
    sorted: Vec<u64>,
    /// Met since the last merge; none of these is in `sorted`.
    recent: HashSet<u64, BuildHasherDefault<AlreadyHashed>>,
    /// How many wait in `recent` before a merge.
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
            recent: HashSet::default(),
            buffer: buffer.max(1),
        }
    }

    /// True the first time a visitor ID is offered in this run, false after.
    pub fn first_time(&mut self, visitor_id: &str) -> bool {
        let h = xxhash_rust::xxh3::xxh3_64(visitor_id.as_bytes());
        if sorted_contains(&self.sorted, h) || !self.recent.insert(h) {
            return false;
        }
        if self.recent.len() >= self.buffer {
            self.merge();
        }
        true
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
    }
}

/// Interpolation rounds before the lookup falls back to a binary search.
const ROUNDS: usize = 8;

/// Whether `sorted` (ascending, evenly spread values) holds `h`: an interpolation search.
fn sorted_contains(sorted: &[u64], h: u64) -> bool {
    let (mut lo, mut hi) = (0, sorted.len());
    for _ in 0..ROUNDS {
        // The values in sorted[lo..hi] lie within [first, last].
        let (Some(&first), Some(&last)) = (
            sorted.get(lo),
            hi.checked_sub(1).and_then(|i| sorted.get(i)),
        ) else {
            return false;
        };
        if h < first || h > last {
            return false;
        }
        if hi - lo <= 16 || first == last {
            break;
        }
        // A guess in lo..hi: (h - first) / (last - first) of the way along.
        let span = (hi - lo - 1) as u128;
        let at = lo + (u128::from(h - first) * span / u128::from(last - first)) as usize;
        match sorted.get(at) {
            Some(&v) if v == h => return true,
            Some(&v) if v < h => lo = at + 1,
            Some(_) => hi = at,
            None => break,
        }
    }
    sorted
        .get(lo..hi)
        .is_some_and(|range| range.binary_search(&h).is_ok())
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
        for i in (0..n).step_by(997) {
            assert!(!seen.first_time(&format!("user.{i}@company.com")), "{i}");
        }
        assert!(seen.first_time("someone.else@company.com"));
    }

    #[test]
    fn interpolation_finds_what_binary_search_finds() {
        let mut sorted: Vec<u64> = (0..50_000u64)
            .map(|i| xxhash_rust::xxh3::xxh3_64(&i.to_le_bytes()))
            .collect();
        sorted.extend([0, 1, u64::MAX - 1, u64::MAX]);
        sorted.sort_unstable();
        sorted.dedup();
        for probe in (0..60_000u64).map(|i| xxhash_rust::xxh3::xxh3_64(&i.to_le_bytes())) {
            assert_eq!(
                sorted_contains(&sorted, probe),
                sorted.binary_search(&probe).is_ok()
            );
        }
        for probe in [0, 1, 2, u64::MAX - 2, u64::MAX - 1, u64::MAX] {
            assert_eq!(
                sorted_contains(&sorted, probe),
                sorted.binary_search(&probe).is_ok(),
                "{probe}"
            );
        }
        // Unevenly spread values: still right, by the binary search it falls back on.
        let skewed: Vec<u64> = (0..10_000u64).map(|i| i * i * i).collect();
        for probe in (0..30_000u64).map(|i| i * 7) {
            assert_eq!(
                sorted_contains(&skewed, probe),
                skewed.binary_search(&probe).is_ok(),
                "{probe}"
            );
        }
        assert!(!sorted_contains(&[], 5));
        assert!(sorted_contains(&[5], 5));
        assert!(!sorted_contains(&[5, 5, 5], 4));
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

        /// Finds exactly what a binary search finds, however the values are spread.
        #[test]
        fn lookup_agrees_with_binary_search(
            mut values in proptest::collection::vec(any::<u64>(), 0..2000),
            small in proptest::collection::vec(0u64..5000, 0..2000),
            probes in proptest::collection::vec(any::<u64>(), 0..200),
        ) {
            values.extend(&small);
            values.sort_unstable();
            values.dedup();
            for p in probes.iter().chain(&small).chain(values.iter().step_by(7)) {
                prop_assert_eq!(sorted_contains(&values, *p), values.binary_search(p).is_ok());
            }
        }
    }
}

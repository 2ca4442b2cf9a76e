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

use std::collections::HashSet;

/// How many hashes wait in the buffer before it is merged into the sorted array.
const BUFFER: usize = 64 * 1024;

/// The visitor IDs met so far in a run.
#[derive(Debug)]
pub struct SeenVisitors {
    /// Sorted, without repeats.
    sorted: Vec<u64>,
    /// Met since the last merge; none of these is in `sorted`.
    recent: HashSet<u64>,
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
            recent: HashSet::new(),
            buffer: buffer.max(1),
        }
    }

    /// True the first time a visitor ID is offered in this run, false after.
    pub fn first_time(&mut self, visitor_id: &str) -> bool {
        let h = xxhash_rust::xxh3::xxh3_64(visitor_id.as_bytes());
        if self.sorted.binary_search(&h).is_ok() || !self.recent.insert(h) {
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
    }
}

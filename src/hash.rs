//! The hash tables of the core: keyed by what hosts send (MACs, groups), so seeded with
//! a secret (a host cannot pick keys that collide), and seeded from the core's seed, so
//! that a replay iterates them — and so carries out timeouts and reconciliations — in
//! the order the recorded run did.
//!
//! The seed is per thread: [`seed_thread`] sets it for the tables made afterwards on the
//! calling thread; without it a thread draws a random one. The daemon's core runs on one
//! thread; each unit test on its own.

use std::cell::Cell;
use std::hash::BuildHasher;

pub type HashMap<K, V> = std::collections::HashMap<K, V, State>;
pub type HashSet<K> = std::collections::HashSet<K, State>;

thread_local! {
    static SEED: Cell<Option<(u64, &'static foldhash::SharedSeed)>> = const { Cell::new(None) };
}

/// Tables made on this thread from now on hash with `seed`.
pub fn seed_thread(seed: u64) {
    // one SharedSeed per seed set: a daemon, a replay or a test sets one or two
    let shared: &'static foldhash::SharedSeed = Box::leak(Box::new(foldhash::SharedSeed::from_u64(seed)));
    SEED.with(|s| s.set(Some((seed, shared))));
}

/// A table's hasher: foldhash's quality variant, seeded as above.
#[derive(Clone, Debug)]
pub struct State(foldhash::quality::SeedableRandomState);

impl Default for State {
    fn default() -> Self {
        let (seed, shared) = SEED.with(|s| {
            s.get().unwrap_or_else(|| {
                seed_thread(rand::random());
                s.get().expect("just set")
            })
        });
        State(foldhash::quality::SeedableRandomState::with_seed(seed, shared))
    }
}

impl BuildHasher for State {
    type Hasher = foldhash::quality::FoldHasher<'static>;

    fn build_hasher(&self) -> Self::Hasher {
        self.0.build_hasher()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(seed: u64) -> Vec<u32> {
        seed_thread(seed);
        let m: HashMap<u32, ()> = (0..64).map(|k| (k, ())).collect();
        m.into_keys().collect()
    }

    #[test]
    fn one_seed_iterates_alike_and_another_does_not() {
        assert_eq!(order(7), order(7));
        assert_ne!(order(7), order(8));
    }
}

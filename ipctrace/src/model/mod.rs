//! The model: plain Rust state built from decoded events (no BPF, no printing), so all of its
//! logic is unit-tested by feeding it events.

pub mod activity;
pub mod deadlocks;
pub mod export;
pub mod holders;
pub mod limits;
pub mod objects;
pub mod orphans;
pub mod shm_addresses;
pub mod waits;

/// The maps looked up for every call (per process, object, semaphore, wait group). Their keys
/// are small integers the traced processes choose, hashed a few times per call: foldhash, seeded
/// per map, costs a fraction of std's SipHash and still spreads chosen keys.
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

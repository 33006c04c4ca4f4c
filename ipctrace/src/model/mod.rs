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

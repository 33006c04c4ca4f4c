//! ipctrace: an eBPF tracer for Linux System V IPC (shared memory, semaphores, message queues).
//! Data flows one way: kernel programs -> ring buffer -> decoder (`event`) -> model -> views.

pub mod abi;
pub mod aggregates;
pub mod btf;
pub mod cli;
pub mod commands;
pub mod event;
pub mod filter;
pub mod model;
pub mod output;
pub mod privileges;
pub mod probe;
pub mod procfs;
pub mod session;
pub mod syscalls;
pub mod views;

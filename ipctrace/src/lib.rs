//! ipctrace: an eBPF tracer for Linux System V IPC (shared memory, semaphores, message queues).
//! Data flows one way: kernel programs -> ring buffer -> decoder (`event`) -> model -> views.

pub mod abi;
pub mod btf;
pub mod cli;
pub mod event;
pub mod filter;
pub mod model;
pub mod output;
pub mod privileges;
pub mod probe;
pub mod procfs;
#[path = "decoder/sem_undo.rs"]
pub mod sem_undo;
#[path = "loader/sem_undo.rs"]
pub mod sem_undo_reader;
pub mod session;
pub mod syscalls;
pub mod views;

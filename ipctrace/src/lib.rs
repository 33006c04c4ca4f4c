//! ipctrace: an eBPF tracer for Linux System V IPC (shared memory, semaphores, message queues).
//! Data flows one way, and the folders are its stages: the `loader` puts the kernel programs
//! (ipctrace-ebpf) in place, the `session` drains their ring buffer through the `decoder`, the
//! `model` keeps what the events (and the `kernel_view`, the kernel's own tables) say, and the
//! `views` print it. Each command's wiring is one file in `commands`.

pub mod cli;
pub mod clock;
pub mod commands;
pub mod decoder;
pub mod filter;
pub mod kernel_view;
pub mod loader;
pub mod model;
pub mod session;
pub mod users;
pub mod views;

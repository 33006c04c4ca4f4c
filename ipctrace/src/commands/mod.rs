//! One file per command: its arguments, help and the wiring of loader, session, model and view.

pub mod export;

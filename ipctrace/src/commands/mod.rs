//! One file per command: its arguments, help text and examples, and the wiring of loader,
//! session, model and view.

pub mod top;

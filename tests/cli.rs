//! The binary from the outside: its commands (`check-config`, `demo`) and
//! its process lifecycle (SIGTERM drains, SIGHUP reloads).

mod common;

#[path = "cli/commands.rs"]
mod commands;
#[path = "cli/lifecycle.rs"]
mod lifecycle;

//! Turns within one test binary. Cargo runs test binaries one at a time and
//! the tests of a binary side by side; a test that times its answers under
//! load (the chaos suite, the miss storm, HSM faults under load), or that
//! changes state the whole process shares (the in-process PKCS#11 module),
//! must not run beside the others of its binary: it takes [`alone`], and
//! every other test of such a binary takes [`with_others`].

use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

static TURNS: RwLock<()> = RwLock::new(());

/// Held while a test runs; released when dropped (a panic included).
pub enum Turn {
    Alone(#[allow(dead_code)] RwLockWriteGuard<'static, ()>),
    WithOthers(#[allow(dead_code)] RwLockReadGuard<'static, ()>),
}

/// Waits until no other test of this binary runs, and keeps every other
/// out until dropped.
pub fn alone() -> Turn {
    Turn::Alone(TURNS.write().unwrap_or_else(|e| e.into_inner()))
}

/// Runs beside the other [`with_others`] tests, never beside an [`alone`] one.
pub fn with_others() -> Turn {
    Turn::WithOthers(TURNS.read().unwrap_or_else(|e| e.into_inner()))
}

//! The invariants the fuzz targets check, one module per target.
//!
//! Each module has `check(data) -> Result<(), String>`: `Err` names the
//! broken invariant and the input, and the target turns it into a panic so
//! libFuzzer records a crash. Keeping them here (not in the targets) lets
//! `cargo test` in this directory prove that each invariant does fire on a
//! known-bad behaviour, so a quiet fuzz run means something.

pub mod config;
pub mod cookies;
pub mod credential;
pub mod header_edits;
pub mod jwt;
pub mod path;
pub mod request;
pub mod warrant;

/// `Err(message)` unless `cond`: keeps the checks one line each.
pub fn ensure(cond: bool, message: impl FnOnce() -> String) -> Result<(), String> {
    if cond {
        Ok(())
    } else {
        Err(message())
    }
}

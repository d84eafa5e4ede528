#![no_main]
//! Invariants: see `portcullis_fuzz::jwt`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = portcullis_fuzz::jwt::check(data) {
        panic!("invariant violated: {violation}");
    }
});

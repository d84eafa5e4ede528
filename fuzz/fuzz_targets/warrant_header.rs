#![no_main]
//! Invariants: see `portcullis_fuzz::warrant`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = portcullis_fuzz::warrant::check(data) {
        panic!("invariant violated: {violation}");
    }
});

#![no_main]
//! Invariants: see `portcullis_fuzz::header_edits`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = portcullis_fuzz::header_edits::check(data) {
        panic!("invariant violated: {violation}");
    }
});

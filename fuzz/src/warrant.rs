//! `warrant_header`: the Tenuo header decoders in `verify::warrant::wire`
//! (`X-Tenuo-Warrant` stacks, `X-Tenuo-PoP`, `X-Tenuo-Approvals`).
//!
//! Input: byte 0 picks the shape: even, the rest is the header text; odd,
//! the rest is the decoded bytes (CBOR), sent base64-encoded, so the fuzzer
//! works on the CBOR directly. Byte 0 >> 1 also sets `max_chain_length`
//! (1..=8).
//!
//! Invariants: never panics; the same bytes give the same verdict in the
//! standard and URL-safe alphabets, padded or not, and (PoP) in hex; a CBOR
//! array of more than `max_chain_length` warrant envelopes is refused as
//! `TooLong(n)` from its header alone (before any signature is checked), an
//! empty one as `Empty`; `base64` returns exactly the bytes that were encoded.

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use portcullis::verify::warrant::wire::{self, WireError};

use crate::ensure;

/// A comparable summary of a `warrants` result.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Ok(Vec<String>),
    Base64,
    TooLong(usize),
    Empty,
    Decode(String),
}

fn verdict(text: &str, max_chain: usize) -> Verdict {
    let Some(bytes) = wire::base64(text) else {
        return Verdict::Base64;
    };
    match wire::warrants(&bytes, max_chain) {
        Ok(ws) => Verdict::Ok(ws.iter().map(|w| w.id().to_string()).collect()),
        Err(WireError::Base64) => Verdict::Base64,
        Err(WireError::TooLong(n)) => Verdict::TooLong(n),
        Err(WireError::Empty) => Verdict::Empty,
        Err(WireError::Decode(e)) => Verdict::Decode(e.to_string()),
    }
}

/// Definite-length CBOR array header: `(length, rest)`. Written from RFC
/// 8949 §3 (major type 4, additional info 0..=27), independently of `wire`.
pub fn cbor_array(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let (&first, rest) = bytes.split_first()?;
    if first & 0xe0 != 0x80 {
        return None;
    }
    let width = match first & 0x1f {
        n @ 0..=23 => return Some((u64::from(n), rest)),
        24 => 1,
        25 => 2,
        26 => 4,
        27 => 8,
        _ => return None,
    };
    let arg = rest.get(..width)?;
    Some((arg.iter().fold(0u64, |acc, &b| acc << 8 | u64::from(b)), &rest[width..]))
}

/// What the stack-length gate must say for these bytes, if anything.
pub fn expected_gate(bytes: &[u8], max_chain: usize) -> Option<Verdict> {
    let (n, rest) = cbor_array(bytes)?;
    let n = usize::try_from(n).unwrap_or(usize::MAX);
    if n == 0 {
        return Some(Verdict::Empty);
    }
    // A stack's first item is itself an array; a single envelope starts with a number.
    cbor_array(rest)?;
    (n > max_chain).then_some(Verdict::TooLong(n))
}

pub fn check(data: &[u8]) -> Result<(), String> {
    let Some((&mode, rest)) = data.split_first() else {
        return Ok(());
    };
    let max_chain = usize::from(mode >> 1) % 8 + 1;
    if mode & 1 == 0 {
        let Ok(text) = std::str::from_utf8(rest) else {
            return Ok(());
        };
        // Whatever text decodes to, re-encoding those bytes must agree.
        let v = verdict(text, max_chain);
        let _ = wire::pop(text);
        let _ = wire::approvals(text);
        return match wire::base64(text) {
            Some(bytes) => {
                ensure(v != Verdict::Base64, || {
                    format!("{text:?}: base64 decodes, warrants says not base64")
                })?;
                check_bytes(&bytes, max_chain)
            }
            None => ensure(v == Verdict::Base64, || format!("{text:?}: not base64, yet {v:?}")),
        };
    }
    check_bytes(rest, max_chain)
}

/// The four encodings of `bytes` decode to them and agree on every verdict.
pub fn check_bytes(bytes: &[u8], max_chain: usize) -> Result<(), String> {
    let texts = [
        STANDARD.encode(bytes),
        STANDARD_NO_PAD.encode(bytes),
        URL_SAFE.encode(bytes),
        URL_SAFE_NO_PAD.encode(bytes),
    ];
    for t in &texts {
        ensure(wire::base64(t).as_deref() == Some(bytes), || {
            format!("{t:?} does not decode to its bytes")
        })?;
    }
    let first = verdict(&texts[0], max_chain);
    if let Some(gate) = expected_gate(bytes, max_chain) {
        ensure(first == gate, || {
            format!("{:02x?}: gate says {gate:?}, warrants gave {first:?}", head(bytes))
        })?;
    }
    for t in &texts[1..] {
        let v = verdict(t, max_chain);
        ensure(v == first, || format!("{t:?}: {v:?}, but {first:?} in standard base64"))?;
    }
    let pops: Vec<_> = texts.iter().map(|t| wire::pop(t).map(|s| s.to_bytes())).collect();
    ensure(pops.iter().all(|p| *p == pops[0]), || {
        format!("PoP verdicts differ by alphabet: {pops:?}")
    })?;
    if bytes.len() == 64 {
        let from_hex = wire::pop(&hex::encode(bytes)).map(|s| s.to_bytes());
        ensure(from_hex == pops[0], || "PoP in hex differs from base64".to_string())?;
    }
    let appr: Vec<Option<usize>> = texts.iter().map(|t| wire::approvals(t).map(|a| a.len())).collect();
    ensure(appr.iter().all(|a| *a == appr[0]), || {
        format!("approvals differ by alphabet: {appr:?}")
    })
}

fn head(b: &[u8]) -> &[u8] {
    &b[..b.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_gate_reads_cbor_headers() {
        assert_eq!(cbor_array(&[0x98, 200, 0x83]), Some((200, &[0x83][..])));
        assert_eq!(cbor_array(&[0x9b, 0, 0, 0, 0, 0, 0, 1, 0]), Some((256, &[][..])));
        assert_eq!(cbor_array(&[0x9f]), None, "indefinite length");
        assert_eq!(cbor_array(&[0xa1]), None);
        assert_eq!(expected_gate(&[0x80], 4), Some(Verdict::Empty));
        assert_eq!(expected_gate(&[0x85, 0x80], 4), Some(Verdict::TooLong(5)));
        assert_eq!(expected_gate(&[0x85, 0x01], 4), None, "a single envelope");
        assert_eq!(expected_gate(&[0x84, 0x80], 4), None, "within the limit");
    }

    #[test]
    fn the_real_decoders_pass_on_typical_shapes() {
        let mut huge = vec![0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x80];
        assert_eq!(check_bytes(&huge, 8), Ok(()));
        huge.truncate(3);
        for b in [
            &huge[..],
            &[0x80],
            &[0x83, 0x01, 0x40, 0x40],
            &[0x82, 0x83, 0x01],
            &[7u8; 64],
            b"",
            b"\xff",
        ] {
            assert_eq!(check_bytes(b, 3), Ok(()), "{b:02x?}");
        }
        for t in ["%%%", "", " -__-AQ \n", "+__+AQ", "gqA="] {
            assert_eq!(check(&[&[0u8][..], t.as_bytes()].concat()), Ok(()), "{t:?}");
        }
    }

    #[test]
    fn a_gate_that_decodes_first_is_caught() {
        // 9 empty arrays: a stack of 9; with max 8 the gate must answer
        // TooLong(9). A decoder error in its place is what decoding first
        // would give.
        let mut bytes = vec![0x89];
        bytes.extend([0x80; 9]);
        assert_eq!(expected_gate(&bytes, 8), Some(Verdict::TooLong(9)));
        assert_eq!(verdict(&STANDARD.encode(&bytes), 8), Verdict::TooLong(9));
        assert_ne!(verdict(&STANDARD.encode(&bytes), 9), Verdict::TooLong(9));
    }
}

//! Header encodings: what Tenuo's SDKs send, accepted in every form they
//! use, and bounded before any signature is checked.

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use tenuo::approval::SignedApproval;
use tenuo::{Signature, Warrant};

/// Padding optional: the Rust SDK sends none, Python's stack encoder pads.
const LENIENT: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
const STANDARD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT);
const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT);

/// Approvals are small; this bounds what a client can make us parse.
const MAX_APPROVALS_BYTES: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("not base64")]
    Base64,
    #[error("a stack of {0} warrants exceeds max_chain_length")]
    TooLong(usize),
    #[error("{0}")]
    Decode(tenuo::Error),
    #[error("empty warrant stack")]
    Empty,
}

/// Base64 in either alphabet, padded or not.
pub fn base64(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    let engine = if text.contains(['+', '/']) {
        &STANDARD
    } else {
        &URL_SAFE
    };
    engine.decode(text).ok()
}

/// One warrant, or a stack (root first), from the base64-decoded header.
/// The stack length is read from the CBOR header before decoding, because
/// decoding verifies every signature.
pub fn warrants(bytes: &[u8], max_chain: usize) -> Result<Vec<Warrant>, WireError> {
    match stack_len(bytes) {
        Some(0) => Err(WireError::Empty),
        Some(n) if n > max_chain => Err(WireError::TooLong(n)),
        Some(_) => tenuo::wire::decode_stack(bytes).map(|s| s.0).map_err(WireError::Decode),
        None => tenuo::wire::decode(bytes).map(|w| vec![w]).map_err(WireError::Decode),
    }
}

/// Payload map key of the issuer (`tenuo::payload`: `5: issuer`).
const PAYLOAD_ISSUER: u8 = 5;
/// `PublicKey` on the wire is `[algorithm, key bytes]`; 1 is Ed25519.
const ED25519_ALG: u8 = 1;

/// The root warrant's issuer key, read from the CBOR without verifying any
/// signature, or `None` when the bytes do not have that shape (the full
/// decode then says why). Only ever used to refuse: a warrant the crate
/// accepts has exactly this issuer, since its decode is strict (canonical
/// CBOR, one value per key).
pub fn root_issuer(bytes: &[u8]) -> Option<[u8; 32]> {
    use ciborium::Value;
    // A stack's first item is the root envelope; a single envelope is itself.
    let envelope = match stack_len(bytes) {
        Some(_) => array_header(bytes)?.1,
        None => bytes,
    };
    // Reads one item: the root envelope, never the rest of the stack.
    let Value::Array(items) = ciborium::de::from_reader::<Value, _>(envelope).ok()? else {
        return None;
    };
    let Some(Value::Bytes(payload)) = items.get(1) else {
        return None;
    };
    let Value::Map(fields) = ciborium::de::from_reader::<Value, _>(&payload[..]).ok()? else {
        return None;
    };
    let key = fields
        .iter()
        .find(|(k, _)| matches!(k, Value::Integer(i) if *i == PAYLOAD_ISSUER.into()))
        .map(|(_, v)| v)?;
    match key {
        Value::Array(parts) => match parts.as_slice() {
            [Value::Integer(alg), Value::Bytes(key)] if *alg == ED25519_ALG.into() => key.as_slice().try_into().ok(),
            _ => None,
        },
        _ => None,
    }
}

/// A stack is a CBOR array whose first item is itself an array (a warrant
/// envelope); a single envelope starts with its version number instead.
fn stack_len(bytes: &[u8]) -> Option<usize> {
    let (len, rest) = array_header(bytes)?;
    if len == 0 {
        return Some(0);
    }
    array_header(rest).map(|_| len)
}

/// Length and remaining bytes of a definite-length CBOR array header.
fn array_header(bytes: &[u8]) -> Option<(usize, &[u8])> {
    let (&first, rest) = bytes.split_first()?;
    if first >> 5 != 4 {
        return None;
    }
    let (len, n) = match first & 0x1f {
        small @ 0..=23 => (u64::from(small), 0),
        24 => (u64::from(*rest.first()?), 1),
        25 => (u64::from(u16::from_be_bytes(rest.get(..2)?.try_into().ok()?)), 2),
        26 => (u64::from(u32::from_be_bytes(rest.get(..4)?.try_into().ok()?)), 4),
        27 => (u64::from_be_bytes(rest.get(..8)?.try_into().ok()?), 8),
        _ => return None,
    };
    Some((usize::try_from(len).unwrap_or(usize::MAX), rest.get(n..)?))
}

/// `X-Tenuo-PoP`: a 64-byte Ed25519 signature in base64 (either alphabet) or hex.
pub fn pop(text: &str) -> Option<Signature> {
    let text = text.trim();
    let bytes = if text.len() == 128 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex::decode(text).ok()?
    } else {
        base64(text)?
    };
    let bytes: [u8; 64] = bytes.try_into().ok()?;
    Signature::from_bytes(&bytes).ok()
}

/// `X-Tenuo-Approvals`: base64 CBOR, one `SignedApproval` or an array of them.
pub fn approvals(text: &str) -> Option<Vec<SignedApproval>> {
    let bytes = base64(text)?;
    if bytes.len() > MAX_APPROVALS_BYTES {
        return None;
    }
    ciborium::de::from_reader::<Vec<SignedApproval>, _>(&bytes[..])
        .ok()
        .or_else(|| {
            ciborium::de::from_reader::<SignedApproval, _>(&bytes[..])
                .ok()
                .map(|a| vec![a])
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_accepts_both_alphabets_with_or_without_padding() {
        let data = [0xfbu8, 0xff, 0xfe, 0x01];
        for text in ["+//+AQ==", "+//+AQ", "-__-AQ", "-__-AQ==", " -__-AQ \n"] {
            assert_eq!(base64(text).as_deref(), Some(&data[..]), "{text:?}");
        }
        assert_eq!(base64("not base64!"), None);
        assert_eq!(base64("+__+AQ"), None, "mixed alphabets");
    }

    #[test]
    fn stack_or_single_is_told_from_the_cbor_header() {
        // [1, h'..', h'..'] is one envelope; [[..], [..]] a stack of two.
        assert_eq!(stack_len(&[0x83, 0x01, 0x40, 0x40]), None);
        assert_eq!(stack_len(&[0x82, 0x83, 0x01]), Some(2));
        assert_eq!(stack_len(&[0x98, 200, 0x83]), Some(200));
        assert_eq!(stack_len(&[0x80]), Some(0));
        assert_eq!(stack_len(&[0xa1]), None, "a map is neither");
        assert_eq!(stack_len(&[]), None);
    }

    #[test]
    fn long_stacks_are_refused_before_decoding() {
        let mut bytes = vec![0x98, 50];
        bytes.extend(std::iter::repeat_n(0x80, 50));
        assert!(matches!(warrants(&bytes, 8), Err(WireError::TooLong(50))));
        assert!(base64("%%%").is_none());
    }

    fn minted(issuer: &tenuo::SigningKey, holder: &tenuo::SigningKey) -> Warrant {
        Warrant::builder()
            .holder(holder.public_key())
            .capability("t", tenuo::ConstraintSet::new())
            .ttl(std::time::Duration::from_secs(60))
            .build(issuer)
            .expect("mint")
    }

    #[test]
    fn root_issuer_is_read_from_a_single_warrant_or_a_stack() {
        let (issuer, agent, sub) = (
            tenuo::SigningKey::generate(),
            tenuo::SigningKey::generate(),
            tenuo::SigningKey::generate(),
        );
        let root = minted(&issuer, &agent);
        let child = root
            .attenuate()
            .capability("t", tenuo::ConstraintSet::new())
            .holder(sub.public_key())
            .ttl(std::time::Duration::from_secs(30))
            .build(&agent)
            .expect("delegate");
        let want = Some(issuer.public_key().to_bytes());
        let single = tenuo::wire::encode(&root).expect("encode");
        assert_eq!(root_issuer(&single), want);
        let stack = tenuo::wire::encode_stack(&tenuo::wire::WarrantStack(vec![root, child.clone()])).expect("stack");
        assert_eq!(root_issuer(&stack), want);
        // A delegated warrant sent alone is its own root: its issuer is the agent.
        let alone = tenuo::wire::encode(&child).expect("encode");
        assert_eq!(root_issuer(&alone), Some(agent.public_key().to_bytes()));
        for junk in [&b""[..], &[0x80], &[0x83, 0x01, 0x40, 0x40], &[0xa1, 0x05, 0x05]] {
            assert_eq!(root_issuer(junk), None, "{junk:?}");
        }
    }

    #[test]
    fn pop_is_64_bytes_in_any_of_three_encodings() {
        use base64::engine::general_purpose::{STANDARD as STD, URL_SAFE_NO_PAD};
        let raw = [7u8; 64];
        for text in [STD.encode(raw), URL_SAFE_NO_PAD.encode(raw), hex::encode(raw)] {
            assert!(pop(&text).is_some(), "{text}");
        }
        assert!(pop(&STD.encode([7u8; 63])).is_none());
        assert!(pop("zz").is_none());
    }
}

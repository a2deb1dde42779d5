//! Shard iterators: opaque, tamper-evident tokens that expire after five minutes.
//!
//! Token bytes: `version (1) | issued_ms u64 | stream_id u64 | shard u32 | seq u64 | name_len u8 |
//! name | HMAC-SHA256(secret, all before)[..16]`, base64-encoded (at most 232 characters, under
//! the model's 512). The stream id pins the stream's incarnation: an iterator taken before a
//! delete and re-create does not read the new stream.

use base64::engine::general_purpose::STANDARD;

use framelog_wire::Signer;

const VERSION: u8 = 1;
/// KDS's tolerated delay between issuing and using an iterator.
pub const ITERATOR_TTL_MS: u64 = 300_000;

/// The position an iterator stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IteratorState {
    pub issued_ms: u64,
    pub stream_id: u64,
    pub stream_name: String,
    pub shard: u32,
    pub seq: u64,
}

/// Signs and checks iterators with a server secret.
#[derive(Debug, Clone)]
pub struct IteratorCodec {
    signer: Signer,
}

impl IteratorCodec {
    pub fn new(secret: Vec<u8>) -> Self {
        Self { signer: Signer::new(secret) }
    }

    pub fn encode(&self, state: &IteratorState) -> String {
        let name = state.stream_name.as_bytes();
        let mut bytes = Vec::with_capacity(30 + name.len());
        bytes.push(VERSION);
        bytes.extend_from_slice(&state.issued_ms.to_be_bytes());
        bytes.extend_from_slice(&state.stream_id.to_be_bytes());
        bytes.extend_from_slice(&state.shard.to_be_bytes());
        bytes.extend_from_slice(&state.seq.to_be_bytes());
        bytes.push(name.len() as u8);
        bytes.extend_from_slice(name);
        self.signer.seal_with(&STANDARD, &bytes)
    }

    /// Returns the state if the token is ours and untampered; expiry is the caller's check.
    pub fn decode(&self, token: &str) -> Option<IteratorState> {
        let body = self.signer.open_with(&STANDARD, token)?;
        if body.len() < 30 || body[0] != VERSION {
            return None;
        }
        let u64_at = |at: usize| body.get(at..at + 8).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes);
        let name_len = usize::from(*body.get(29)?);
        let name = body.get(30..30 + name_len)?;
        if body.len() != 30 + name_len {
            return None;
        }
        Some(IteratorState {
            issued_ms: u64_at(1)?,
            stream_id: u64_at(9)?,
            shard: u32::from_be_bytes(body.get(17..21)?.try_into().ok()?),
            seq: u64_at(21)?,
            stream_name: String::from_utf8(name.to_vec()).ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use proptest::prelude::*;

    fn state() -> IteratorState {
        IteratorState { issued_ms: 1_700_000_000_000, stream_id: 4, stream_name: "orders".into(), shard: 2, seq: 99 }
    }

    #[test]
    fn tokens_round_trip_and_fit_the_model_length() {
        let codec = IteratorCodec::new(b"secret".to_vec());
        let long = IteratorState { stream_name: "x".repeat(128), ..state() };
        let token = codec.encode(&long);
        assert!(token.len() <= 512);
        assert_eq!(codec.decode(&token), Some(long));
    }

    #[test]
    fn another_servers_secret_does_not_verify() {
        let token = IteratorCodec::new(b"one".to_vec()).encode(&state());
        assert_eq!(IteratorCodec::new(b"two".to_vec()).decode(&token), None);
    }

    proptest! {
        #[test]
        fn any_single_byte_change_is_rejected(at in 0usize..60, flip in 1u8..=255) {
            let codec = IteratorCodec::new(b"secret".to_vec());
            let token = codec.encode(&state());
            let mut bytes = base64::engine::general_purpose::STANDARD.decode(&token).expect("base64");
            let at = at % bytes.len();
            bytes[at] ^= flip;
            let forged = base64::engine::general_purpose::STANDARD.encode(bytes);
            prop_assert_eq!(codec.decode(&forged), None);
        }
    }
}

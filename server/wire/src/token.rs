//! Opaque, tamper-proof tokens: a payload and its HMAC-SHA256 (truncated to 16 bytes) under the
//! server's secret, base64-encoded. HLS/DASH session tokens (base64url, they travel in URLs) and
//! KDS shard iterators (standard base64) both use it; the server keeps no state for either.
//! Here rather than in the server so the token and session parsers can be fuzzed without
//! building the server (fuzz/fuzz_targets/session_token.rs).

use hmac::{Hmac, Mac};
use sha2::Sha256;

const MAC_LEN: usize = 16;

#[derive(Clone)]
pub struct Signer {
    secret: std::sync::Arc<Vec<u8>>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(..)")
    }
}

impl Signer {
    pub fn new(secret: Vec<u8>) -> Self {
        Self { secret: std::sync::Arc::new(secret) }
    }

    fn mac(&self, bytes: &[u8]) -> [u8; MAC_LEN] {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.secret).unwrap_or_else(|_| unreachable!("any key length"));
        mac.update(bytes);
        let mut out = [0u8; MAC_LEN];
        out.copy_from_slice(&mac.finalize().into_bytes()[..MAC_LEN]);
        out
    }

    /// A URL-safe token (base64url without padding).
    pub fn seal(&self, payload: &[u8]) -> String {
        self.seal_with(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
    }

    /// The payload of a token `seal` made; `None` for anything else.
    pub fn open(&self, token: &str) -> Option<Vec<u8>> {
        self.open_with(&base64::engine::general_purpose::URL_SAFE_NO_PAD, token)
    }

    pub fn seal_with(&self, encoding: &impl base64::Engine, payload: &[u8]) -> String {
        let mut bytes = payload.to_vec();
        bytes.extend_from_slice(&self.mac(payload));
        encoding.encode(bytes)
    }

    pub fn open_with(&self, encoding: &impl base64::Engine, token: &str) -> Option<Vec<u8>> {
        let bytes = encoding.decode(token).ok()?;
        let split = bytes.len().checked_sub(MAC_LEN)?;
        let (payload, mac) = bytes.split_at(split);
        // Constant-time comparison through the Mac API.
        let mut check =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.secret).unwrap_or_else(|_| unreachable!("any key length"));
        check.update(payload);
        check.verify_truncated_left(mac).ok()?;
        Some(payload.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_open_only_unchanged_and_under_the_same_secret() {
        let signer = Signer::new(b"secret".to_vec());
        let token = signer.seal(b"{\"a\":1}");
        assert_eq!(signer.open(&token).as_deref(), Some(&b"{\"a\":1}"[..]));
        assert!(Signer::new(b"other".to_vec()).open(&token).is_none());
        let mut tampered = token.clone().into_bytes();
        tampered[2] = if tampered[2] == b'A' { b'B' } else { b'A' };
        assert!(signer.open(std::str::from_utf8(&tampered).expect("ascii")).is_none());
        assert!(signer.open("").is_none());
        assert!(signer.open("***").is_none());
    }
}

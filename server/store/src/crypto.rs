//! At-rest encryption of payloads: AES-256-GCM under a data key per stream, the data key wrapped
//! by the engine's master key and kept (wrapped) in the stream's metadata.
//!
//! Nonces are not random: an entry's nonce is its shard and sequence number, unique for every
//! entry a stream ever stores, and each stream incarnation has its own data key. A sequence
//! number is only reused after a group commit that failed, whose bytes never reached the disk,
//! so no two stored ciphertexts share a nonce. The stream id, shard and sequence number are
//! also the associated data: a ciphertext moved to another place does not open.

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom as _, SystemRandom};

use crate::error::{Result, StoreError};

/// Bytes an encrypted payload adds (the GCM tag).
pub const OVERHEAD_BYTES: usize = 16;
pub const KEY_BYTES: usize = 32;

/// The key that wraps every stream's data key.
pub struct MasterKey(LessSafeKey);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

/// One stream's payload key.
pub struct DataKey(LessSafeKey);

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(..)")
    }
}

fn aes_key(bytes: &[u8]) -> Result<LessSafeKey> {
    let key = UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| StoreError::Crypto("a key must be 32 bytes"))?;
    Ok(LessSafeKey::new(key))
}

impl MasterKey {
    pub fn from_bytes(bytes: &[u8; KEY_BYTES]) -> Result<Self> {
        Ok(MasterKey(aes_key(bytes)?))
    }

    /// A new random data key, wrapped: `nonce (12) | sealed key (32) | tag (16)`. Wrapping uses
    /// random nonces: a master key wraps one key per stream, far below GCM's random-nonce bound.
    pub fn new_wrapped_data_key(&self) -> Result<Vec<u8>> {
        let random = SystemRandom::new();
        let mut key = [0u8; KEY_BYTES];
        let mut nonce = [0u8; NONCE_LEN];
        random.fill(&mut key).map_err(|_| StoreError::Crypto("no randomness"))?;
        random.fill(&mut nonce).map_err(|_| StoreError::Crypto("no randomness"))?;
        let mut sealed = key.to_vec();
        self.0
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(b"framelog data key"), &mut sealed)
            .map_err(|_| StoreError::Crypto("sealing a data key failed"))?;
        Ok([nonce.as_slice(), &sealed].concat())
    }

    /// The data key a `new_wrapped_data_key` made; fails under another master key.
    pub fn unwrap_data_key(&self, wrapped: &[u8]) -> Result<DataKey> {
        if wrapped.len() != NONCE_LEN + KEY_BYTES + OVERHEAD_BYTES {
            return Err(StoreError::Crypto("a wrapped data key has the wrong length"));
        }
        let (nonce, sealed) = wrapped.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| StoreError::Crypto("bad nonce"))?;
        let mut sealed = sealed.to_vec();
        let key = self
            .0
            .open_in_place(nonce, Aad::from(b"framelog data key"), &mut sealed)
            .map_err(|_| StoreError::Crypto("the data key does not open under this master key"))?;
        Ok(DataKey(aes_key(key)?))
    }
}

fn entry_nonce(shard: u32, seq: u64) -> Nonce {
    let mut nonce = [0u8; NONCE_LEN];
    nonce[..4].copy_from_slice(&shard.to_be_bytes());
    nonce[4..].copy_from_slice(&seq.to_be_bytes());
    Nonce::assume_unique_for_key(nonce)
}

fn entry_aad(stream_id: u64, shard: u32, seq: u64) -> [u8; 20] {
    let mut aad = [0u8; 20];
    aad[..8].copy_from_slice(&stream_id.to_be_bytes());
    aad[8..12].copy_from_slice(&shard.to_be_bytes());
    aad[12..].copy_from_slice(&seq.to_be_bytes());
    aad
}

impl DataKey {
    /// Encrypts `payload` in place for the entry at (`stream_id`, `shard`, `seq`); the tag is appended.
    pub fn seal(&self, stream_id: u64, shard: u32, seq: u64, payload: &mut Vec<u8>) -> Result<()> {
        let aad = entry_aad(stream_id, shard, seq);
        self.0
            .seal_in_place_append_tag(entry_nonce(shard, seq), Aad::from(aad), payload)
            .map_err(|_| StoreError::Crypto("sealing a payload failed"))
    }

    /// Decrypts what `seal` stored for the same entry.
    pub fn open(&self, stream_id: u64, shard: u32, seq: u64, mut stored: Vec<u8>) -> Result<Vec<u8>> {
        let aad = entry_aad(stream_id, shard, seq);
        let plain_len = self
            .0
            .open_in_place(entry_nonce(shard, seq), Aad::from(aad), &mut stored)
            .map_err(|_| StoreError::Crypto("a payload failed authentication"))?
            .len();
        stored.truncate(plain_len);
        Ok(stored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn master(byte: u8) -> MasterKey {
        MasterKey::from_bytes(&[byte; KEY_BYTES]).expect("key")
    }

    #[test]
    fn payloads_open_only_at_their_place_under_their_key() {
        let wrapped = master(1).new_wrapped_data_key().expect("wrapped");
        let key = master(1).unwrap_data_key(&wrapped).expect("unwraps");
        let mut stored = b"frame bytes".to_vec();
        key.seal(7, 0, 42, &mut stored).expect("sealed");
        assert_eq!(stored.len(), b"frame bytes".len() + OVERHEAD_BYTES);
        assert!(!stored.windows(5).any(|w| w == b"frame"), "no plaintext left");
        assert_eq!(key.open(7, 0, 42, stored.clone()).expect("opens"), b"frame bytes");
        assert!(key.open(7, 0, 43, stored.clone()).is_err(), "another sequence number");
        assert!(key.open(8, 0, 42, stored.clone()).is_err(), "another stream");
        let mut tampered = stored.clone();
        tampered[0] ^= 1;
        assert!(key.open(7, 0, 42, tampered).is_err());
        assert!(master(2).unwrap_data_key(&wrapped).is_err(), "another master key");
        let other = master(1).unwrap_data_key(&master(1).new_wrapped_data_key().expect("w")).expect("k");
        assert!(other.open(7, 0, 42, stored).is_err(), "another stream's data key");
    }
}

//! At-rest encryption of payloads: AES-256-GCM under a data key per stream, the data key wrapped
//! by the engine's master key and kept (wrapped) in the stream's metadata.
//!
//! Nonces are not random: an entry's nonce is its shard and sequence number, unique for every
//! entry a stream ever stores, and each stream incarnation has its own data key. A sequence
//! number is only reused after a group commit that failed, whose bytes never reached the disk,
//! so no two stored ciphertexts share a nonce. The stream id, shard and sequence number are
//! also the associated data: a ciphertext moved to another place does not open.
//!
//! The cluster backend seals before JetStream numbers the entry, so it uses explicit nonces
//! (`NonceSource`) stored beside the entry, with the stream, shard and nonce as associated data.

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom as _, SystemRandom};

use crate::error::{Result, StoreError};
use crate::meta::StreamMeta;

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

/// A new data key wrapped by `master` (hex), for `StreamEncryption::wrapped_key_hex`.
pub(crate) fn new_wrapped_data_key_hex(master: Option<&MasterKey>) -> Result<String> {
    let master = master.ok_or(StoreError::Crypto("the engine has no master key"))?;
    Ok(hex::encode(master.new_wrapped_data_key()?))
}

/// The key that seals and opens `meta`'s stream's payloads, unwrapped by `master`.
pub(crate) fn stream_data_key(master: Option<&MasterKey>, meta: &StreamMeta) -> Result<DataKey> {
    let encryption = meta.encryption.as_ref().ok_or(StoreError::Crypto("the stream has no data key"))?;
    let master = master.ok_or_else(|| StoreError::NoMasterKey(meta.name.clone()))?;
    let wrapped = hex::decode(&encryption.wrapped_key_hex).map_err(|_| StoreError::Crypto("wrapped key is not hex"))?;
    master.unwrap_data_key(&wrapped)
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

/// The nonce and associated data of a payload sealed before its sequence number is known (the
/// cluster backend: JetStream numbers an entry only once it is stored). The nonce is stored
/// beside the entry, and the associated data binds the payload to its stream and shard.
pub(crate) fn unplaced_aad(stream_id: u64, shard: u32, nonce: &[u8; NONCE_LEN]) -> [u8; 24] {
    let mut aad = [0u8; 24];
    aad[..8].copy_from_slice(&stream_id.to_be_bytes());
    aad[8..12].copy_from_slice(&shard.to_be_bytes());
    aad[12..].copy_from_slice(nonce);
    aad
}

impl DataKey {
    /// Seals `payload` in place under an explicit `nonce`, which the caller guarantees is never
    /// used twice with this key.
    pub(crate) fn seal_unplaced(
        &self,
        stream_id: u64,
        shard: u32,
        nonce: [u8; NONCE_LEN],
        payload: &mut Vec<u8>,
    ) -> Result<()> {
        let aad = unplaced_aad(stream_id, shard, &nonce);
        self.0
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), payload)
            .map_err(|_| StoreError::Crypto("sealing a payload failed"))
    }

    /// Opens what `seal_unplaced` sealed.
    pub(crate) fn open_unplaced(
        &self,
        stream_id: u64,
        shard: u32,
        nonce: [u8; NONCE_LEN],
        mut stored: Vec<u8>,
    ) -> Result<Vec<u8>> {
        let aad = unplaced_aad(stream_id, shard, &nonce);
        let plain_len = self
            .0
            .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut stored)
            .map_err(|_| StoreError::Crypto("a payload failed authentication"))?
            .len();
        stored.truncate(plain_len);
        Ok(stored)
    }
}

/// Nonces for `seal_unplaced`: 64 random bits drawn at start and again every 2^32 nonces, then a
/// 32-bit counter. Two nodes (or two starts of one) repeat a nonce only if two draws of 64
/// random bits collide, which for any realistic number of draws is negligible.
#[derive(Debug)]
pub(crate) struct NonceSource {
    state: std::sync::Mutex<(u64, u32)>,
}

impl NonceSource {
    pub(crate) fn new() -> Result<Self> {
        Ok(Self { state: std::sync::Mutex::new((random_u64()?, 0)) })
    }

    pub(crate) fn next(&self) -> Result<[u8; NONCE_LEN]> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.1 == u32::MAX {
            *state = (random_u64()?, 0);
        }
        let (prefix, counter) = *state;
        state.1 += 1;
        let mut nonce = [0u8; NONCE_LEN];
        nonce[..8].copy_from_slice(&prefix.to_be_bytes());
        nonce[8..].copy_from_slice(&counter.to_be_bytes());
        Ok(nonce)
    }
}

fn random_u64() -> Result<u64> {
    let mut bytes = [0u8; 8];
    SystemRandom::new().fill(&mut bytes).map_err(|_| StoreError::Crypto("no randomness"))?;
    Ok(u64::from_be_bytes(bytes))
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

    #[test]
    fn unplaced_payloads_open_only_with_their_nonce_stream_and_shard() {
        let key = master(1).unwrap_data_key(&master(1).new_wrapped_data_key().expect("w")).expect("k");
        let nonces = NonceSource::new().expect("nonces");
        let nonce = nonces.next().expect("nonce");
        let mut stored = b"frame bytes".to_vec();
        key.seal_unplaced(7, 1, nonce, &mut stored).expect("sealed");
        assert_eq!(key.open_unplaced(7, 1, nonce, stored.clone()).expect("opens"), b"frame bytes");
        assert!(key.open_unplaced(7, 2, nonce, stored.clone()).is_err(), "another shard");
        assert!(key.open_unplaced(8, 1, nonce, stored.clone()).is_err(), "another stream");
        assert!(key.open_unplaced(7, 1, nonces.next().expect("n"), stored).is_err(), "another nonce");
    }

    #[test]
    fn nonces_never_repeat_and_a_new_prefix_follows_the_last_counter() {
        let nonces = NonceSource::new().expect("nonces");
        let mut seen = std::collections::HashSet::new();
        assert!((0..10_000).all(|_| seen.insert(nonces.next().expect("nonce"))));
        let prefix = |n: [u8; NONCE_LEN]| n[..8].to_vec();
        let before = nonces.next().expect("nonce");
        nonces.state.lock().expect("lock").1 = u32::MAX;
        let after = nonces.next().expect("nonce");
        assert_ne!(prefix(before), prefix(after), "a new random prefix once the counter is spent");
        assert_eq!(after[8..], [0, 0, 0, 0]);
    }
}

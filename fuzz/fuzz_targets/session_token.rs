//! Playback session tokens come back in every HLS, DASH and WHEP request URL, from anyone: opening
//! one must never panic, a token must open only as sealed, and a session payload that decodes
//! must survive another encode and decode unchanged.
#![no_main]

use framelog_wire::Signer;
use framelog_wire::playback_session::{decode, encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let signer = Signer::new(b"fuzz".to_vec());
    // The input as a token from a URL: forged tokens must not open.
    if let Ok(text) = std::str::from_utf8(data) {
        if let Some(payload) = signer.open(text) {
            assert_eq!(signer.seal(&payload), text, "a token opened that was not sealed here");
        }
    }
    // The input as a payload past the MAC: what is sealed opens unchanged, and decoding is stable.
    assert_eq!(signer.open(&signer.seal(data)).as_deref(), Some(data));
    if let Some(session) = decode(data) {
        assert_eq!(decode(&encode(&session)), Some(session));
    }
});

//! Fuzzes the SigV4 verifier with arbitrary Authorization headers, paths, queries and header
//! values: parsing and canonicalising never panic, and verification answers Ok only for a
//! signature the fuzzer could not have forged (it never does with a random secret).
#![no_main]

use framelog_sigv4::{PathEncoding, Request, canonical_request, parse_authorization, verify};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // Fields separated by newlines: authorization, path, query, then header lines `name:value`.
    let mut fields = text.split('\n');
    let (authorization, path, query) =
        (fields.next().unwrap_or_default(), fields.next().unwrap_or_default(), fields.next().unwrap_or_default());
    let headers: Vec<(&str, &str)> = fields.filter_map(|line| line.split_once(':')).collect();
    let request = Request { method: "POST", path, query, headers: &headers, payload_sha256: "UNSIGNED-PAYLOAD" };
    let signed: Vec<String> = headers.iter().map(|(name, _)| name.to_ascii_lowercase()).collect();
    for encoding in [PathEncoding::AsReceived, PathEncoding::Decoded] {
        let _ = canonical_request(&request, &signed, true, encoding);
        let _ = canonical_request(&request, &signed, false, encoding);
    }
    if let Ok(parsed) = parse_authorization(authorization) {
        assert!(verify(&request, &parsed, "fuzz-secret-the-input-cannot-know", "20150830T123600Z").is_err());
    }
});

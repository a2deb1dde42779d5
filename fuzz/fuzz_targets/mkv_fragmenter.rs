//! Fuzzes the streaming Matroska splitter: any bytes, split into chunks at fuzzer-chosen points,
//! must yield events or a typed error, never a panic, and never buffer past the configured limits.
#![no_main]

use framelog_media::{Fragmenter, Limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, input)) = data.split_first() else { return };
    let chunk = usize::from(chunk).max(1);
    let limits = Limits { max_cluster_bytes: 1 << 16, max_element_bytes: 1 << 16 };
    let mut fragmenter = Fragmenter::new(limits);
    for piece in input.chunks(chunk) {
        fragmenter.push(piece);
        loop {
            match fragmenter.next_event() {
                Ok(Some(_)) => continue,
                Ok(None) => break,
                Err(_) => return,
            }
        }
        // Buffered bytes are the open element plus at most one pushed chunk.
        assert!(fragmenter.buffered_bytes() <= (1 << 16) + 2 * chunk + 16);
    }
    while let Ok(Some(_)) = fragmenter.finish() {}
});

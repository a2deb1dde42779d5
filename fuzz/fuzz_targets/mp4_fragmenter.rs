//! Fuzzes the fragmented-MP4 splitter the same way as the Matroska one: any bytes, any chunking,
//! events or a typed error, never a panic, memory bounded by the limits.
#![no_main]

use framelog_media::{Limits, Mp4Fragmenter};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, input)) = data.split_first() else { return };
    let chunk = usize::from(chunk).max(1);
    let limit = 1 << 16;
    let mut splitter = Mp4Fragmenter::new(Limits { max_cluster_bytes: limit, max_element_bytes: limit });
    for piece in input.chunks(chunk) {
        splitter.push(piece);
        loop {
            match splitter.next_event() {
                Ok(Some(_)) => continue,
                Ok(None) => break,
                Err(_) => return,
            }
        }
        assert!(splitter.buffered_bytes() as u64 <= limit + 16 + chunk as u64);
    }
    while let Ok(Some(_)) = splitter.finish() {}
});

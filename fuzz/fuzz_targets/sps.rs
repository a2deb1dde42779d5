//! Parameter-set parsing must never panic, whatever a producer declares.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = framelog_media::sps::avc_dimensions(data);
    let _ = framelog_media::sps::hevc_dimensions(data);
});

//! Parameter-set parsing must never panic, whatever a producer declares.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = framelog_media::sps::avc_dimensions(data);
    let _ = framelog_media::sps::hevc_dimensions(data);
    for length_size in 1..=4 {
        let _ = framelog_media::sps::in_band_dimensions(framelog_media::sps::NalSyntax::Avc, length_size, data);
        let _ = framelog_media::sps::in_band_dimensions(framelog_media::sps::NalSyntax::Hevc, length_size, data);
    }
});

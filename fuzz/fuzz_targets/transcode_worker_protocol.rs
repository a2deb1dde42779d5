//! The server reads what a transcode worker writes (frames, its end, its failure), and the worker
//! reads what the server sends: a worker that decoded hostile media may be corrupted, so neither
//! reader may panic or allocate by a count it was told.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = framelog_imaging::transcode_protocol::decode_from_worker(data);
    let _ = framelog_imaging::transcode_protocol::decode_to_worker(data);
});

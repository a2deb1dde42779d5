//! The server reads what a decode worker writes, and a worker that decoded hostile media may be
//! corrupted: reading its answers (and, on the worker's side, jobs) must never panic or allocate
//! by a count it was told.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = framelog_imaging::protocol::decode_answer(data);
    let _ = framelog_imaging::protocol::decode_job(data);
    let _ = framelog_imaging::protocol::read_message(&mut &data[..]);
});

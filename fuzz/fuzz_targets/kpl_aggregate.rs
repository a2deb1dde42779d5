//! KPL aggregated records from untrusted producers (Firehose's Kinesis sources, later the KCL
//! role): de-aggregation must never panic, and what it accepts must pack back to records that
//! de-aggregate to the same user records.
#![no_main]

use framelog_wire::kpl_aggregate::{aggregate, deaggregate, MAGIC};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Most inputs lack the magic; put it in front half the time so the protobuf is reached.
    let mut framed = MAGIC.to_vec();
    framed.extend_from_slice(data);
    for input in [data, &framed[..]] {
        if let Ok(users) = deaggregate(input) {
            assert_eq!(deaggregate(&aggregate(&users)).as_ref(), Ok(&users));
        }
    }
});

//! PutRecordBatch read straight from the request's bytes: the call every producer makes most,
//! and the one whose generic reading (a JSON tree, its validation, then the handler's copy of
//! each record) cost the most CPU per record in the throughput profile. Only a request that is
//! well formed and within every constraint of the model is read here; anything else returns
//! `None` and takes the generic path, which names what is wrong exactly as before.

use std::borrow::Cow;

use serde::Deserialize;

use crate::document::decode_base64;
use crate::validation::Table;

const OPERATION: &str = "PutRecordBatch";

/// The request as the model has it. A record's base64 is read in place unless its JSON string
/// has escapes (some encoders write `\/`), which are undone into a copy.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchInput<'a> {
    #[serde(rename = "DeliveryStreamName", borrow)]
    delivery_stream_name: &'a str,
    #[serde(rename = "Records", borrow)]
    records: Vec<RecordInput<'a>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordInput<'a> {
    #[serde(rename = "Data", borrow)]
    data: Cow<'a, str>,
}

/// A PutRecordBatch that passed every check of the model.
#[derive(Debug)]
pub struct Batch {
    pub delivery_stream_name: String,
    pub payloads: Vec<Vec<u8>>,
}

/// The batch in `body`, if it is one the generic path would take as it is.
pub fn read(constraints: &Table, body: &[u8]) -> Option<Batch> {
    let input: BatchInput = serde_json::from_slice(body).ok()?;
    let name_ok = constraints.shape(OPERATION, &["DeliveryStreamName"])?.admits_str(input.delivery_stream_name);
    let count_ok = constraints.shape(OPERATION, &["Records"])?.admits_count(input.records.len());
    if !name_ok || !count_ok {
        return None;
    }
    let data_shape = constraints.shape(OPERATION, &["Records", "member", "Data"])?;
    let payloads = input
        .records
        .iter()
        .map(|record| {
            // The generic reader's own decoder: it rejects what that reader rejects.
            let payload = decode_base64(record.data.as_bytes())?;
            data_shape.admits_count(payload.len()).then_some(payload)
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Batch { delivery_stream_name: input.delivery_stream_name.to_string(), payloads })
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use serde_json::json;

    use super::*;
    use crate::firehose::CONSTRAINTS;

    fn read_json(body: serde_json::Value) -> Option<Batch> {
        read(&CONSTRAINTS, body.to_string().as_bytes())
    }

    fn records(datas: &[&str]) -> serde_json::Value {
        datas.iter().map(|d| json!({"Data": d})).collect()
    }

    #[test]
    fn a_well_formed_batch_is_read_with_its_records_decoded() {
        let batch = read_json(json!({"DeliveryStreamName": "s-1.x", "Records": records(&["aGk=", "", "AAEC"])}));
        let batch = batch.expect("a valid batch");
        assert_eq!(batch.delivery_stream_name, "s-1.x");
        assert_eq!(batch.payloads, vec![b"hi".to_vec(), Vec::new(), vec![0, 1, 2]]);
    }

    #[test]
    fn escaped_base64_reads_as_the_plain_text_would() {
        let body = br#"{"DeliveryStreamName":"s","Records":[{"Data":"P\/8="}]}"#;
        let batch = read(&CONSTRAINTS, body).expect("escapes are JSON, not base64");
        assert_eq!(batch.payloads, vec![vec![0x3f, 0xff]]);
    }

    #[test]
    fn what_the_model_refuses_is_left_to_the_generic_path() {
        let too_big = base64::engine::general_purpose::STANDARD.encode(vec![7u8; 1_024_001]);
        let at_limit = base64::engine::general_purpose::STANDARD.encode(vec![7u8; 1_024_000]);
        let many: Vec<&str> = vec!["aGk="; 501];
        let refused = [
            json!({"DeliveryStreamName": "s", "Records": []}),
            json!({"DeliveryStreamName": "s", "Records": records(&many)}),
            json!({"DeliveryStreamName": "", "Records": records(&["aGk="])}),
            json!({"DeliveryStreamName": "a b", "Records": records(&["aGk="])}),
            json!({"DeliveryStreamName": "x".repeat(65), "Records": records(&["aGk="])}),
            json!({"DeliveryStreamName": "s", "Records": records(&["aGk"])}),
            json!({"DeliveryStreamName": "s", "Records": records(&["a!k="])}),
            json!({"DeliveryStreamName": "s", "Records": records(&["aGl="])}),
            json!({"DeliveryStreamName": "s", "Records": records(&[&too_big])}),
            json!({"DeliveryStreamName": "s", "Records": [{"Data": null}]}),
            json!({"DeliveryStreamName": "s", "Records": [{}]}),
            json!({"DeliveryStreamName": "s", "Records": [{"Data": "aGk=", "Other": 1}]}),
            json!({"DeliveryStreamName": "s", "Records": records(&["aGk="]), "Unknown": true}),
            json!({"DeliveryStreamName": 5, "Records": records(&["aGk="])}),
            json!({"Records": records(&["aGk="])}),
        ];
        for body in refused {
            assert!(read_json(body.clone()).is_none(), "read {body}");
        }
        let limits = json!({"DeliveryStreamName": "x".repeat(64), "Records": records(&[at_limit.as_str()])});
        assert!(read_json(limits).is_some(), "the model's limits themselves are within it");
        assert!(read(&CONSTRAINTS, br#"{"DeliveryStreamName":"s","DeliveryStreamName":"t","Records":[]}"#).is_none());
    }
}

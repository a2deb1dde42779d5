//! KDS's constraints table (`constraints.json`, from AWS's `kinesis` model), checked before every
//! operation runs (crate::validation).

use std::sync::LazyLock;

use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::validation::Table;

static TABLE: LazyLock<Table> = LazyLock::new(|| Table::from_json(include_str!("constraints.json")));

/// Checks a KDS request against AWS's model.
pub fn check(operation: &str, object: &Map<String, Value>) -> Result<(), ApiError> {
    TABLE.check(operation, object)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::error::ErrorType;

    fn map(value: &Value) -> &Map<String, Value> {
        value.as_object().expect("an object")
    }

    #[test]
    fn the_table_parses_and_every_pattern_compiles() {
        assert!(TABLE.operation_count() >= 57, "{} operations", TABLE.operation_count());
        assert!(TABLE.patterns_compile());
    }

    #[test]
    fn all_violations_of_a_request_come_in_the_models_member_order() {
        let request = json!({
            "Records": [{"Data": "AA==", "PartitionKey": ""}, {"PartitionKey": "p", "ExplicitHashKey": "-1"}],
            "StreamName": "bad name",
        });
        let error = check("PutRecords", map(&request)).expect_err("invalid");
        assert_eq!(error.kind, ErrorType::Validation);
        assert_eq!(
            error.message.as_deref(),
            Some(
                "4 validation errors detected: \
                 Value '' at 'records.1.member.partitionKey' failed to satisfy constraint: Member must have length greater than or equal to 1; \
                 Value null at 'records.2.member.data' failed to satisfy constraint: Member must not be null; \
                 Value '-1' at 'records.2.member.explicitHashKey' failed to satisfy constraint: Member must satisfy regular expression pattern: ^(0|([1-9]\\d{0,38}))$; \
                 Value 'bad name' at 'streamName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+"
            )
        );
    }

    #[test]
    fn types_are_checked_before_constraints() {
        let request = json!({"StreamName": "", "ShardCount": "three"});
        assert_eq!(check("CreateStream", map(&request)).expect_err("wrong type").kind, ErrorType::Serialization);
        let nested = json!({"StreamName": "s", "StreamModeDetails": {"StreamMode": 5}});
        assert_eq!(check("CreateStream", map(&nested)).expect_err("wrong nested type").kind, ErrorType::Serialization);
    }

    #[test]
    fn enums_ranges_maps_and_nested_members_are_checked() {
        let request = json!({
            "StreamName": "s",
            "ShardCount": 0,
            "StreamModeDetails": {"StreamMode": "SOMETIMES"},
            "Tags": {"": "v"},
        });
        let message = check("CreateStream", map(&request)).expect_err("invalid").message.unwrap_or_default();
        assert!(message.starts_with("3 validation errors detected: Value '0' at 'shardCount'"), "{message}");
        assert!(message.contains("at 'streamModeDetails.streamMode' failed to satisfy constraint: Member must satisfy enum value set: [PROVISIONED, ON_DEMAND]"), "{message}");
        assert!(message.contains("Value '' at 'tags.key'"), "{message}");
        check("CreateStream", map(&json!({"StreamName": "ok", "ShardCount": 2}))).expect("valid");
        check("NotAnOperation", map(&json!({"anything": 1})))
            .expect("operations outside the table are not checked here");
    }
}

//! Framelog's lease API (docs/consumer-groups.md), under the KDS endpoint: the table of an
//! application's leases on a stream, and the conditional changes workers make to it.

use serde_json::{Value, json};

use crate::error::{Error, Result};

/// The checkpoint of a shard processed to its end.
pub const SHARD_END: &str = "SHARD_END";

/// One lease as DescribeLeases shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseInfo {
    pub shard_id: String,
    pub parent_shard_ids: Vec<String>,
    /// Present while an owner holds it (not expired).
    pub owner: Option<String>,
    pub counter: u64,
    /// A sequence number, SHARD_END, TRIM_HORIZON, or None (the application's initial position).
    pub checkpoint: Option<String>,
    pub sub_sequence_number: u64,
}

impl LeaseInfo {
    pub fn is_finished(&self) -> bool {
        self.checkpoint.as_deref() == Some(SHARD_END)
    }
}

/// Which application's table, on which stream, as which worker.
#[derive(Debug, Clone)]
pub(crate) struct LeaseScope {
    pub stream: String,
    pub application: String,
    pub worker_id: String,
    pub lease_duration_ms: u64,
}

impl LeaseScope {
    fn call(&self, shard_id: &str) -> Value {
        json!({
            "StreamName": self.stream,
            "ApplicationName": self.application,
            "ShardId": shard_id,
            "WorkerId": self.worker_id,
        })
    }
}

impl crate::Client {
    /// DescribeLeases: the application's leases, one per shard (the server adds new shards').
    pub async fn describe_leases(&self, stream: &str, application: &str) -> Result<Vec<LeaseInfo>> {
        let answer =
            self.kinesis_call("DescribeLeases", &json!({"StreamName": stream, "ApplicationName": application})).await?;
        let leases = answer.get("Leases").and_then(Value::as_array).ok_or_else(|| protocol("Leases"))?;
        leases.iter().map(lease_info).collect()
    }

    /// DeleteLeases: removes the application's lease table and its checkpoints.
    pub async fn delete_leases(&self, stream: &str, application: &str) -> Result<()> {
        let request = json!({"StreamName": stream, "ApplicationName": application});
        self.kinesis_call("DeleteLeases", &request).await.map(drop)
    }

    pub(crate) async fn acquire_lease(&self, scope: &LeaseScope, lease: &LeaseInfo, steal: bool) -> Result<LeaseInfo> {
        let mut request = scope.call(&lease.shard_id);
        request["LeaseCounter"] = lease.counter.into();
        request["LeaseDurationMillis"] = scope.lease_duration_ms.into();
        request["Steal"] = steal.into();
        lease_info(&self.kinesis_call("AcquireLease", &request).await?)
    }

    pub(crate) async fn renew_lease(&self, scope: &LeaseScope, shard_id: &str) -> Result<LeaseInfo> {
        let mut request = scope.call(shard_id);
        request["LeaseDurationMillis"] = scope.lease_duration_ms.into();
        lease_info(&self.kinesis_call("RenewLease", &request).await?)
    }

    pub(crate) async fn checkpoint_lease(
        &self,
        scope: &LeaseScope,
        shard_id: &str,
        sequence_number: &str,
        sub_sequence_number: u64,
    ) -> Result<()> {
        let mut request = scope.call(shard_id);
        request["SequenceNumber"] = sequence_number.into();
        request["SubSequenceNumber"] = sub_sequence_number.into();
        self.kinesis_call("CheckpointLease", &request).await.map(drop)
    }

    pub(crate) async fn release_lease(&self, scope: &LeaseScope, shard_id: &str) -> Result<()> {
        self.kinesis_call("ReleaseLease", &scope.call(shard_id)).await.map(drop)
    }
}

/// Whether an error says the lease is no longer this worker's.
pub(crate) fn is_lease_lost(error: &Error) -> bool {
    error.error_type() == Some("ConditionalCheckFailedException")
}

fn lease_info(value: &Value) -> Result<LeaseInfo> {
    let text = |name: &str| value.get(name).and_then(Value::as_str).map(str::to_string);
    Ok(LeaseInfo {
        shard_id: text("ShardId").ok_or_else(|| protocol("ShardId"))?,
        parent_shard_ids: value
            .get("ParentShardIds")
            .and_then(Value::as_array)
            .map(|ids| ids.iter().filter_map(Value::as_str).map(str::to_string).collect())
            .unwrap_or_default(),
        owner: text("LeaseOwner"),
        counter: value.get("LeaseCounter").and_then(Value::as_u64).ok_or_else(|| protocol("LeaseCounter"))?,
        checkpoint: text("Checkpoint"),
        sub_sequence_number: value.get("SubSequenceNumber").and_then(Value::as_u64).unwrap_or(0),
    })
}

fn protocol(name: &str) -> Error {
    Error::Protocol(format!("no {name} in a lease"))
}

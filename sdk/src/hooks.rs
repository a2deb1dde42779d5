//! Consumer hooks: the consumer API (Framelog's ML consumers, docs/consumers.md) that defines consumers that
//! receive a stream's frames at a webhook. Requests and answers are the API's JSON documents.

use serde_json::{Value, json};

use crate::Client;
use crate::error::Result;

impl Client {
    /// `POST /createConsumer` with `definition` (StreamName, ConsumerName, StartSelector,
    /// Selection, Output, Webhook, Batching, LagPolicy, Retry).
    pub async fn create_consumer(&self, definition: &Value) -> Result<Value> {
        self.control("/createConsumer", definition.clone()).await
    }

    /// The consumer's definition, State, Checkpoint and Metrics.
    pub async fn describe_consumer(&self, stream: &str, consumer: &str) -> Result<Value> {
        let answer = self.control("/describeConsumer", json!({"StreamName": stream, "ConsumerName": consumer})).await?;
        Ok(answer.get("Consumer").cloned().unwrap_or(Value::Null))
    }

    pub async fn list_consumers(&self, stream: &str) -> Result<Vec<Value>> {
        let answer = self.control("/listConsumers", json!({"StreamName": stream})).await?;
        Ok(answer.get("Consumers").and_then(Value::as_array).cloned().unwrap_or_default())
    }

    /// `POST /updateConsumer`: `changes` are laid over the definition (add `"State": "PAUSED"` or
    /// `"ACTIVE"` to pause or resume).
    pub async fn update_consumer(&self, stream: &str, consumer: &str, changes: &Value) -> Result<Value> {
        let mut document = changes.clone();
        document["StreamName"] = json!(stream);
        document["ConsumerName"] = json!(consumer);
        self.control("/updateConsumer", document).await
    }

    pub async fn delete_consumer(&self, stream: &str, consumer: &str) -> Result<()> {
        self.control("/deleteConsumer", json!({"StreamName": stream, "ConsumerName": consumer})).await.map(|_| ())
    }

    /// The batches that could not be delivered (the newest 100).
    pub async fn list_consumer_dead_letters(&self, stream: &str, consumer: &str) -> Result<Vec<Value>> {
        let answer =
            self.control("/listConsumerDeadLetters", json!({"StreamName": stream, "ConsumerName": consumer})).await?;
        Ok(answer.get("DeadLetters").and_then(Value::as_array).cloned().unwrap_or_default())
    }
}

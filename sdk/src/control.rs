//! Control-plane calls (`POST /<operation>` with JSON documents, docs/spec/kvs.md#protocol).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::Client;
use crate::error::{Error, Result};

/// A stream as DescribeStream and ListStreams describe it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StreamInfo {
    pub stream_name: String,
    #[serde(rename = "StreamARN")]
    pub stream_arn: String,
    #[serde(default)]
    pub media_type: Option<String>,
    #[serde(default)]
    pub device_name: Option<String>,
    pub status: String,
    pub version: String,
    pub data_retention_in_hours: u64,
    /// Seconds since the epoch.
    pub creation_time: f64,
}

/// CreateStream's inputs; `retention_hours: None` takes the server's default.
#[derive(Debug, Clone, Default)]
pub struct NewStream {
    pub name: String,
    pub retention_hours: Option<u64>,
    pub media_type: Option<String>,
    pub device_name: Option<String>,
    /// Store the stream's media encrypted under this key id.
    pub kms_key_id: Option<String>,
    pub tags: BTreeMap<String, String>,
}

impl NewStream {
    pub fn named(name: impl Into<String>) -> Self {
        Self { name: name.into(), ..Self::default() }
    }
}

/// The data-plane APIs GetDataEndpoint knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataApi {
    PutMedia,
    GetMedia,
    ListFragments,
    GetMediaForFragmentList,
}

impl DataApi {
    fn name(self) -> &'static str {
        match self {
            DataApi::PutMedia => "PUT_MEDIA",
            DataApi::GetMedia => "GET_MEDIA",
            DataApi::ListFragments => "LIST_FRAGMENTS",
            DataApi::GetMediaForFragmentList => "GET_MEDIA_FOR_FRAGMENT_LIST",
        }
    }
}

fn field<'a>(value: &'a Value, name: &str) -> Result<&'a Value> {
    value.get(name).ok_or_else(|| Error::Protocol(format!("response without {name}")))
}

impl Client {
    pub(crate) async fn control(&self, path: &str, document: Value) -> Result<Value> {
        self.transport.json(self.transport.endpoint(), path, &document).await
    }

    /// Creates a stream and returns its ARN.
    pub async fn create_stream(&self, stream: &NewStream) -> Result<String> {
        let mut document = json!({"StreamName": stream.name});
        if let Some(hours) = stream.retention_hours {
            document["DataRetentionInHours"] = hours.into();
        }
        if let Some(media_type) = &stream.media_type {
            document["MediaType"] = media_type.clone().into();
        }
        if let Some(key) = &stream.kms_key_id {
            document["KmsKeyId"] = key.clone().into();
        }
        if let Some(device) = &stream.device_name {
            document["DeviceName"] = device.clone().into();
        }
        if !stream.tags.is_empty() {
            document["Tags"] = json!(stream.tags);
        }
        let answer = self.control("/createStream", document).await?;
        field(&answer, "StreamARN")?.as_str().map(str::to_string).ok_or_else(|| Error::Protocol("StreamARN".into()))
    }

    pub async fn describe_stream(&self, name: &str) -> Result<StreamInfo> {
        let answer = self.control("/describeStream", json!({"StreamName": name})).await?;
        serde_json::from_value(field(&answer, "StreamInfo")?.clone()).map_err(|e| Error::Protocol(e.to_string()))
    }

    /// Creates the stream unless it exists (producers do this at start-up, docs/spec/kvs.md#control-plane).
    pub async fn ensure_stream(&self, stream: &NewStream) -> Result<StreamInfo> {
        match self.describe_stream(&stream.name).await {
            Err(error) if error.error_type() == Some("ResourceNotFoundException") => {
                match self.create_stream(stream).await {
                    Ok(_) => {}
                    // Another producer created it in between.
                    Err(error) if error.error_type() == Some("ResourceInUseException") => {}
                    Err(error) => return Err(error),
                }
                self.describe_stream(&stream.name).await
            }
            other => other,
        }
    }

    /// Every stream, following NextToken.
    pub async fn list_streams(&self) -> Result<Vec<StreamInfo>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut document = json!({"MaxResults": 1000});
            if let Some(token) = &token {
                document["NextToken"] = token.clone().into();
            }
            let answer = self.control("/listStreams", document).await?;
            let page: Vec<StreamInfo> = serde_json::from_value(field(&answer, "StreamInfoList")?.clone())
                .map_err(|e| Error::Protocol(e.to_string()))?;
            out.extend(page);
            token = answer.get("NextToken").and_then(Value::as_str).filter(|t| !t.is_empty()).map(str::to_string);
            if token.is_none() {
                return Ok(out);
            }
        }
    }

    pub async fn delete_stream(&self, arn: &str) -> Result<()> {
        self.control("/deleteStream", json!({"StreamARN": arn})).await.map(|_| ())
    }

    /// Changes the retention by `change_hours` (positive: increase), against the stream version.
    pub async fn update_data_retention(&self, name: &str, version: &str, change_hours: i64) -> Result<()> {
        let operation = if change_hours >= 0 { "INCREASE_DATA_RETENTION" } else { "DECREASE_DATA_RETENTION" };
        let document = json!({
            "StreamName": name,
            "CurrentVersion": version,
            "Operation": operation,
            "DataRetentionChangeInHours": change_hours.unsigned_abs(),
        });
        self.control("/updateDataRetention", document).await.map(|_| ())
    }

    pub async fn tag_stream(&self, name: &str, tags: &BTreeMap<String, String>) -> Result<()> {
        self.control("/tagStream", json!({"StreamName": name, "Tags": tags})).await.map(|_| ())
    }

    pub async fn list_tags_for_stream(&self, name: &str) -> Result<BTreeMap<String, String>> {
        let answer = self.control("/listTagsForStream", json!({"StreamName": name})).await?;
        serde_json::from_value(answer.get("Tags").cloned().unwrap_or_else(|| json!({})))
            .map_err(|e| Error::Protocol(e.to_string()))
    }

    /// The base URL for a data-plane API on a stream.
    pub async fn get_data_endpoint(&self, name: &str, api: DataApi) -> Result<String> {
        let answer = self.control("/getDataEndpoint", json!({"StreamName": name, "APIName": api.name()})).await?;
        field(&answer, "DataEndpoint")?
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| Error::Protocol("DataEndpoint".into()))
    }
}

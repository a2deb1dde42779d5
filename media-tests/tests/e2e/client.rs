//! An `aws-sdk-kinesis` client pointed at a test server, as a user would configure one.

use aws_sdk_kinesis::config::{BehaviorVersion, Credentials, Region};

pub fn kinesis(url: &str) -> aws_sdk_kinesis::Client {
    let config = aws_sdk_kinesis::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(url)
        .credentials_provider(Credentials::new("AKIDUMMY", "dummy", None, None, "static"))
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    aws_sdk_kinesis::Client::from_conf(config)
}

//! AWS SDK clients (`aws-sdk-kinesis`, archived media) pointed at a test server, as a user would configure them.

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

/// The archived-media client (ListFragments, GetClip, HLS and DASH session URLs).
pub fn archived_media(url: &str) -> aws_sdk_kinesisvideoarchivedmedia::Client {
    let config = aws_sdk_kinesisvideoarchivedmedia::Config::builder()
        .behavior_version(aws_sdk_kinesisvideoarchivedmedia::config::BehaviorVersion::latest())
        .region(aws_sdk_kinesisvideoarchivedmedia::config::Region::new("us-east-1"))
        .endpoint_url(url)
        .credentials_provider(Credentials::new("AKIDUMMY", "dummy", None, None, "static"))
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    aws_sdk_kinesisvideoarchivedmedia::Client::from_conf(config)
}

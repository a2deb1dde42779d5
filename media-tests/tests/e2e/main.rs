//! End-to-end tests: one binary, a module per area. Each test runs the real `framelog` process.

mod client;
mod crash;
mod edge;
mod kds_sdk;
mod kvs_aws_sdk;
mod sdk;
mod shutdown;
mod tls;

//! End-to-end tests: one binary, a module per area. Each test runs the real `framelog` process.

mod client;
mod connections;
mod crash;
mod crash_campaign;
mod edge;
mod encryption;
mod kds_fanout_sdk;
mod kds_sdk;
mod kvs_aws_sdk;
mod power_cut;
mod sdk;
mod shutdown;
mod tls;

//! The `wva` controller: Kubernetes and Prometheus adapters, the CLI commands, and the
//! configuration they share. The decision policy lives in the `wva-actors` crate.

pub mod allocator;
pub mod analyze;
pub mod cli;
pub mod config;
pub mod controller;
pub mod crd;
pub mod crdgen;
pub mod diff;
pub mod exit;
pub mod external_scaler;
pub mod history;
pub mod poller;
pub mod prometheus_api;
pub mod queries;
pub mod replay;
pub mod telemetry;
pub mod timefmt;
pub mod tls;

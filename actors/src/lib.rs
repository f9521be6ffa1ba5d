//! The decision side of the autoscaler: pure policy functions, and (from the actor-runtime work on)
//! the actors that drive them. Nothing in this crate talks to Kubernetes or Prometheus.

pub mod policy;

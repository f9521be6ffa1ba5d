//! The decision side of the autoscaler: the pure policy, and the actors that run it.
//! Nothing in this crate talks to Kubernetes or Prometheus: adapters turn the outside world into
//! [`messages`] and the actors' outputs into effects.
//!
//! - [`registry::Registry`]: routes by model; one [`supervisor::ModelSupervisor`] per model.
//! - [`supervisor::ModelSupervisor`]: owns the [`variant::VariantActor`]s of a model and runs the
//!   policy over all of them on each tick.
//! - [`log_actor::LogActor`]: the decision log on its own thread.
//! - [`publisher::Publisher`]: the metrics HPA and KEDA read.
//! - [`effects::Effects`]: the one way out of a decision (log, then publish, then status).
//! - [`system::start`]: the one place where these actors are wired together.

pub mod authority;
pub mod compact;
pub mod effects;
pub mod lifeline;
pub mod log_actor;
pub mod messages;
pub mod policy;
pub mod pool;
pub mod precision;
pub mod publisher;
pub mod record;
pub mod redecide;
pub mod registry;
pub mod shards;
pub mod supervisor;
pub mod system;
pub mod telemetry;
pub mod variant;

//! The emulated cluster behind `wva simulate` and `wva emulate`: vLLM-like servers per
//! accelerator, the HPA and the peers' autoscalers, the load, and the virtual-time engine that
//! drives the real actors (`wva_actors::system`) against them.
//!
//! - [`server`], [`profiles`]: one emulated vLLM replica, and how each accelerator serves.
//! - [`cluster`]: the variants' replicas and the gateway in front of them.
//! - [`hpa`]: the HorizontalPodAutoscaler's algorithm.
//! - [`load`], [`scenario`]: request arrivals (shapes and traces) and the built-in runs.
//! - [`workloads`]: the training and validation split of the traces, and the zoo of shapes.
//! - [`engine`]: virtual time and the run, one step per event.
//! - [`policy`], [`autoscaler`]: the policies by name and knob, and how each acts (one trait).
//! - [`scrape`]: the emulated Prometheus.
//! - [`results`]: what a run produces and how it is judged (objectives, percentiles).
//! - [`misses`]: where attainment was lost (trigger, ask, grant, warm-up, never asked).
//! - [`report`], [`plot`]: the summary, `summary.json`, and the plots.
//! - [`simulate`]: one run or several policies on the same load.
//! - [`frontier`]: every policy across its knob's settings, the Pareto points, the figures.
//! - [`emulate`], [`exposition`]: emulated servers over HTTP for a real Prometheus.

pub mod autoscaler;
pub mod bound;
pub mod calibration;
pub mod capacity;
pub mod clock;
pub mod cluster;
pub mod emulate;
pub mod engine;
pub mod exposition;
pub mod frontier;
pub mod hpa;
pub mod learning;
pub mod load;
pub mod misses;
pub mod peers;
pub mod plot;
pub mod policy;
pub mod profiles;
pub mod recorded;
pub mod report;
pub mod results;
pub mod scenario;
pub mod scrape;
pub mod server;
pub mod shared_pool;
pub mod simulate;
pub mod workloads;

//! The emulated cluster behind `wva simulate` and `wva emulate`: vLLM-like servers per
//! accelerator, and (as it grows) the HPA, the load and the virtual-time engine.

pub mod cluster;
pub mod engine;
pub mod exposition;
pub mod hpa;
pub mod learning;
pub mod load;
pub mod plot;
pub mod profiles;
pub mod report;
pub mod scenario;
pub mod server;

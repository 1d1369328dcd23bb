//! Operations: what the server tells its operator. The error log (`log`)
//! and the running counts (`stats`); metrics and the status page land here.

pub mod log;
pub mod stats;

pub use log::Logging;
pub use stats::Stats;

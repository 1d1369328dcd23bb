//! Operations: what the server tells its operator. The error log (`log`),
//! the running counts (`stats`) and systemd's notifications (`notify`);
//! metrics and the status page land here.

pub mod access;
pub mod log;
pub mod notify;
pub mod stats;

pub use log::Logging;
pub use stats::Stats;

//! Operations: what the server tells its operator. The error log (`log`),
//! the running counts (`stats`), the open tunnels (`tunnels`), the
//! server-status page (`status`), the Prometheus metrics (`metrics`) and
//! systemd's notifications (`notify`).

pub mod access;
pub mod balancer_manager;
pub mod log;
pub mod metrics;
pub mod notify;
pub mod privilege;
pub mod proxy_status;
pub mod stats;
pub mod status;
pub mod tunnels;

pub use log::Logging;
pub use stats::Stats;

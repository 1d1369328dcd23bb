//! Everything toward backends, and the only place that opens connections
//! to them: name resolution (`resolve`), connecting over TCP and TLS
//! (`connect`), idle connections (`pool`), `max=` (`limit`), the health
//! checks (`health`), and the [`runtime::Runtime`] that keeps all of it by
//! worker and member identity across reloads; `order` is a polite close
//! ordered for a worker's (or a server's) tunnels.

pub(crate) mod connect;
pub(crate) mod health;
pub(crate) mod limit;
pub mod liveness;
pub mod memory;
pub mod order;
pub(crate) mod pool;
pub(crate) mod resolve;
pub(crate) mod runtime;
pub(crate) mod tls;

pub use connect::{BackendConn, BackendStream, ConnectError, ConnectSpec, Network, ReadTimer};
pub use limit::{Limit, Slot};
pub use pool::PoolKey;
pub use runtime::{Generation, Runtime, WorkerState, WorkerView};

//! Shared pieces of the benchmark's load generator and echo backend: a
//! minimal WebSocket framing (RFC 6455) with pre-built masked frames, a read
//! buffer that never allocates in the steady state, a log-linear latency
//! histogram, and `/proc` sampling of a process tree.

pub mod hist;
pub mod procstat;
pub mod rbuf;
pub mod ws;

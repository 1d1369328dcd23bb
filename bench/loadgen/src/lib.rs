//! Shared pieces of the benchmark's load generator and echo backend: a
//! minimal WebSocket framing (RFC 6455) with pre-built masked frames, a read
//! buffer that never allocates in the steady state, a log-linear latency
//! histogram, `/proc` sampling of a process tree, and the client's stream
//! (plain TCP or TLS).

pub mod hist;
pub mod procstat;
pub mod rbuf;
pub mod stream;
pub mod ws;

/// A tokio runtime with `threads` workers; one means a current-thread
/// runtime (the load generator and backend share one core in the benchmark).
pub fn runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
}

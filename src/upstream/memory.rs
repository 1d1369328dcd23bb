//! An in-process network: backends that listen on an address of this
//! network and the proxy's connections to them are in-memory pipes
//! (`tokio::io::duplex`), not sockets.
//!
//! It exists so that the whole proxy can be driven in one runtime with
//! tokio's clock paused: a socket's readiness comes through the I/O driver,
//! and a paused clock jumps to the next timer whenever the runtime polls
//! it, so timeouts cannot be tested exactly over real sockets; pipes wake
//! their reader directly, and the clock then moves only when every task
//! waits for it. A server uses this network instead of TCP only when it is
//! started with one (`Runtime::with_network`).

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Mutex;

use tokio::io::DuplexStream;
use tokio::sync::mpsc;

/// How much each direction of an in-memory connection buffers.
const PIPE: usize = 64 * 1024;

/// The addresses listening on this network.
#[derive(Debug, Default)]
pub struct MemoryNet {
    listeners: Mutex<HashMap<SocketAddr, mpsc::UnboundedSender<DuplexStream>>>,
}

/// Accepts the connections made to one address of a [`MemoryNet`].
#[derive(Debug)]
pub struct MemoryListener {
    incoming: mpsc::UnboundedReceiver<DuplexStream>,
}

impl MemoryListener {
    /// The next connection; `None` once the network is gone.
    pub async fn accept(&mut self) -> Option<DuplexStream> {
        self.incoming.recv().await
    }
}

impl MemoryNet {
    /// Listens on `addr` (any address: nothing is bound).
    pub fn listen(&self, addr: SocketAddr) -> MemoryListener {
        let (tx, rx) = mpsc::unbounded_channel();
        self.lock().insert(addr, tx);
        MemoryListener { incoming: rx }
    }

    /// A connection to `addr`, refused when nothing listens there (or the
    /// listener was dropped).
    pub fn connect(&self, addr: SocketAddr) -> io::Result<DuplexStream> {
        let (ours, theirs) = tokio::io::duplex(PIPE);
        let mut listeners = self.lock();
        match listeners.get(&addr).map(|tx| tx.send(theirs)) {
            Some(Ok(())) => Ok(ours),
            Some(Err(_)) => {
                listeners.remove(&addr);
                Err(io::ErrorKind::ConnectionRefused.into())
            }
            None => Err(io::ErrorKind::ConnectionRefused.into()),
        }
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, mpsc::UnboundedSender<DuplexStream>>> {
        self.listeners.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_connection_reaches_the_listener_and_an_unknown_address_is_refused() {
        let net = MemoryNet::default();
        let addr: SocketAddr = "10.0.0.1:80".parse().unwrap();
        let mut listener = net.listen(addr);
        let mut client = net.connect(addr).expect("listening");
        let mut server = listener.accept().await.expect("a connection");
        client.write_all(b"hi").await.unwrap();
        let mut got = [0u8; 2];
        server.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hi");
        let other: SocketAddr = "10.0.0.2:80".parse().unwrap();
        assert_eq!(
            net.connect(other).unwrap_err().kind(),
            io::ErrorKind::ConnectionRefused
        );
        drop(listener);
        assert!(net.connect(addr).is_err(), "the listener is gone");
    }
}

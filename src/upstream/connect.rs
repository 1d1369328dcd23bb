//! Connections to backends: TCP, optionally wrapped in TLS, with the
//! connect timeout and socket options a worker asks for.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::limit::Slot;
use super::memory::MemoryNet;
use super::resolve::Addresses;

/// A connected backend socket.
pub enum BackendStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// On an in-process network (see `memory`).
    Memory(Box<DuplexStream>),
}

/// Where connections to backends go: TCP, or an in-process network.
#[derive(Debug, Clone, Default)]
pub enum Network {
    #[default]
    Tcp,
    Memory(Arc<MemoryNet>),
}

impl BackendStream {
    /// Whether a pooled connection has been closed by the backend, or has
    /// sent something nobody asked for; either way it must not be reused.
    pub fn is_stale(&mut self) -> bool {
        let tcp = match self {
            BackendStream::Plain(s) => s,
            BackendStream::Tls(s) => s.get_ref().0,
            BackendStream::Memory(s) => {
                let mut cx = Context::from_waker(std::task::Waker::noop());
                let mut probe = [0u8; 1];
                let mut buf = ReadBuf::new(&mut probe);
                return Pin::new(s.as_mut()).poll_read(&mut cx, &mut buf).is_ready();
            }
        };
        let mut probe = [0u8; 1];
        !matches!(tcp.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }
}

impl AsyncRead for BackendStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            BackendStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            BackendStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            BackendStream::Memory(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for BackendStream {
    #[inline]
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            BackendStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            BackendStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            BackendStream::Memory(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    #[inline]
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            BackendStream::Plain(s) => Pin::new(s).poll_flush(cx),
            BackendStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            BackendStream::Memory(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            BackendStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            BackendStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            BackendStream::Memory(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            BackendStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            BackendStream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
            BackendStream::Memory(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            BackendStream::Plain(s) => s.is_write_vectored(),
            BackendStream::Tls(s) => s.is_write_vectored(),
            BackendStream::Memory(s) => s.is_write_vectored(),
        }
    }
}

/// A backend connection with the slot (`max=`) it occupies.
pub struct BackendConn {
    pub stream: BackendStream,
    pub slot: Slot,
    /// Whether this connection served a request before.
    pub reused: bool,
    /// The timer its reads used, kept with a pooled connection so that the
    /// next request moves its deadline rather than making a new one.
    pub timer: Option<ReadTimer>,
}

/// A connection's read deadline, one per connection rather than per read.
pub type ReadTimer = std::pin::Pin<Box<tokio::time::Sleep>>;

/// Where and how to connect.
pub struct ConnectSpec<'a> {
    pub host: &'a str,
    pub port: u16,
    /// The worker's resolved addresses, shared by its connections.
    pub addresses: &'a Addresses,
    pub tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
    pub connect_timeout: Duration,
    /// The worker's `keepalive=On`.
    pub keepalive: bool,
    /// The backend side of the request's server's liveness settings.
    pub liveness: crate::config::TcpLiveness,
    pub network: &'a Network,
    /// `ProxySourceAddress`: the local address the connection is bound to.
    pub source: Option<std::net::IpAddr>,
}

/// Why a backend connection could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    #[error("DNS lookup failure for: {0} ({1})")]
    Dns(String, String),
    #[error("backend connect failed: {0}")]
    Refused(String),
    #[error("TLS handshake with the backend failed: {0}")]
    TlsHandshake(String),
}

pub async fn connect(spec: &ConnectSpec<'_>) -> Result<BackendStream, ConnectError> {
    if let Network::Memory(net) = spec.network {
        return connect_memory(spec, net).await;
    }
    let tcp = match tokio::time::timeout(spec.connect_timeout, connect_tcp(spec)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(e),
        Err(_) => return Err(ConnectError::Refused("connect timed out".into())),
    };
    let _ = tcp.set_nodelay(true);
    if spec.keepalive || spec.liveness != crate::config::TcpLiveness::default() {
        // Best effort, as Apache's keepalive=On: a failure only loses probes.
        use std::os::fd::AsFd;
        if let Err(e) = super::liveness::apply(tcp.as_fd(), &spec.liveness, spec.keepalive) {
            tracing::warn!(
                "{}:{}: TCP keepalive or user timeout not set: {e}",
                spec.host,
                spec.port
            );
        }
    }
    let Some((config, name)) = &spec.tls else {
        return Ok(BackendStream::Plain(tcp));
    };
    let connector = tokio_rustls::TlsConnector::from(config.clone());
    // Boxed: a TLS handshake's state is over a kilobyte, and held inline it
    // would be part of every plain connection's task too.
    let handshake = Box::pin(tokio::time::timeout(
        spec.connect_timeout,
        connector.connect(name.clone(), tcp),
    ));
    match handshake.await {
        Ok(Ok(tls)) => Ok(BackendStream::Tls(Box::new(tls))),
        Ok(Err(e)) => Err(ConnectError::TlsHandshake(
            super::tls::describe_handshake_error(&e),
        )),
        Err(_) => Err(ConnectError::TlsHandshake("handshake timed out".into())),
    }
}

/// Tries each of the backend's addresses in turn, as `TcpStream::connect`
/// would, but with the worker's resolved addresses instead of a lookup per
/// connection.
async fn connect_tcp(spec: &ConnectSpec<'_>) -> Result<TcpStream, ConnectError> {
    let found = addresses(spec).await?;
    let mut last = None;
    for addr in found.as_slice() {
        let connected = match spec.source {
            Some(source) => connect_from(source, *addr).await,
            None => TcpStream::connect(addr).await,
        };
        match connected {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(refused(last))
}

/// A connection from `source` (any port), as Apache binds the socket
/// before connecting; an address of the other family cannot be reached
/// from it.
async fn connect_from(source: std::net::IpAddr, to: std::net::SocketAddr) -> io::Result<TcpStream> {
    let socket = match to {
        std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket
        .bind(std::net::SocketAddr::new(source, 0))
        .map_err(|e| io::Error::new(e.kind(), format!("ProxySourceAddress {source}: {e}")))?;
    socket.connect(to).await
}

/// The backend's addresses, from the worker's cache.
async fn addresses(spec: &ConnectSpec<'_>) -> Result<super::resolve::Found, ConnectError> {
    spec.addresses
        .get(spec.host, spec.port)
        .await
        .map_err(|e| ConnectError::Dns(spec.host.to_string(), e.to_string()))
}

/// Every address refused: the last error says why.
fn refused(last: Option<io::Error>) -> ConnectError {
    ConnectError::Refused(last.map_or_else(|| "no address to connect to".into(), |e| e.to_string()))
}

/// [`connect`] on an in-process network: the name resolved as for TCP,
/// then each address tried; no TLS there.
async fn connect_memory(
    spec: &ConnectSpec<'_>,
    net: &MemoryNet,
) -> Result<BackendStream, ConnectError> {
    if spec.tls.is_some() {
        return Err(ConnectError::TlsHandshake(
            "no TLS on an in-process network".into(),
        ));
    }
    let found = addresses(spec).await?;
    let mut last = None;
    for addr in found.as_slice() {
        match net.connect(*addr) {
            Ok(pipe) => return Ok(BackendStream::Memory(Box::new(pipe))),
            Err(e) => last = Some(e),
        }
    }
    Err(refused(last))
}

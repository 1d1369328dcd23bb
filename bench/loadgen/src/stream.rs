//! The client's connection: plain TCP or TLS over it (`loadgen --tls`), one
//! type used wherever the scenarios read and write after connecting.
//!
//! The TLS client is rustls on ring, offering exactly TLS 1.3,
//! TLS13_AES_128_GCM_SHA256 and X25519, with resumption disabled (every
//! connection is a full handshake; tickets the server sends are dropped),
//! and verifying the server's certificate against the benchmark's own CA.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use rustls::client::Resumption;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, HandshakeKind, RootCertStore};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

pub enum Stream {
    Plain(TcpStream),
    /// Boxed: the TLS state is large and most of it is cold.
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    #[inline]
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    #[inline]
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    #[inline]
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    #[inline]
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// What the TLS handshakes negotiated, summed over a run (for the JSON line).
#[derive(Default, Clone, Debug)]
pub struct TlsStats {
    /// The first handshake's "version suite group", e.g.
    /// `TLSv1_3 TLS13_AES_128_GCM_SHA256 X25519`.
    pub negotiated: Option<String>,
    /// Handshakes whose version, suite or group differed from the first's.
    pub mismatched: u64,
    pub full: u64,
    /// Full handshakes after a HelloRetryRequest (the server wanted another group).
    pub hello_retry: u64,
    pub resumed: u64,
}

pub struct Tls {
    connector: TlsConnector,
    name: ServerName<'static>,
    stats: Mutex<TlsStats>,
}

impl Tls {
    /// `sni`: the name sent and verified; `ca`: a PEM file of the CA(s).
    pub fn new(sni: &str, ca: &str) -> io::Result<Tls> {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca)
            .map_err(|e| io::Error::other(format!("--ca {ca}: {e}")))?
        {
            let cert = cert.map_err(|e| io::Error::other(format!("--ca {ca}: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| io::Error::other(format!("--ca {ca}: {e}")))?;
        }
        if roots.is_empty() {
            return Err(io::Error::other(format!("--ca {ca}: no certificate")));
        }
        // Its suites and groups are replaced just below (rustls deprecates
        // it for lacking post-quantum groups, which are not offered here).
        #[allow(deprecated)]
        let mut provider = rustls::crypto::ring::default_provider();
        provider.cipher_suites = vec![rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256];
        provider.kx_groups = vec![rustls::crypto::ring::kx_group::X25519];
        let mut config = ClientConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| io::Error::other(format!("TLS client: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.resumption = Resumption::disabled();
        config.enable_early_data = false;
        let name = ServerName::try_from(sni.to_string())
            .map_err(|e| io::Error::other(format!("--sni {sni}: {e}")))?;
        Ok(Tls {
            connector: TlsConnector::from(Arc::new(config)),
            name,
            stats: Mutex::new(TlsStats::default()),
        })
    }

    /// The TLS handshake over a connected socket.
    pub async fn connect(&self, tcp: TcpStream) -> io::Result<Stream> {
        let s = self.connector.connect(self.name.clone(), tcp).await?;
        let (_, c) = s.get_ref();
        let desc = format!(
            "{:?} {:?} {:?}",
            c.protocol_version()
                .map(|v| format!("{v:?}"))
                .unwrap_or_default(),
            c.negotiated_cipher_suite().map(|s| s.suite()),
            c.negotiated_key_exchange_group().map(|g| g.name()),
        )
        .replace(['"'], "")
        .replace("Some(", "")
        .replace(')', "");
        let kind = c.handshake_kind();
        let mut st = self.stats.lock().unwrap();
        match kind {
            Some(HandshakeKind::Full) => st.full += 1,
            Some(HandshakeKind::FullWithHelloRetryRequest) => st.hello_retry += 1,
            Some(HandshakeKind::Resumed) => st.resumed += 1,
            None => {}
        }
        match &st.negotiated {
            None => st.negotiated = Some(desc),
            Some(d) if *d != desc => st.mismatched += 1,
            _ => {}
        }
        Ok(Stream::Tls(Box::new(s)))
    }

    pub fn stats(&self) -> TlsStats {
        self.stats.lock().unwrap().clone()
    }
}

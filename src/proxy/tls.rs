//! TLS toward clients (mod_ssl's `SSLEngine on`): a rustls server
//! configuration per TLS server, the handshake, and the choice of server by
//! the name the client sends (SNI).
//!
//! Whether a connection speaks TLS follows the server its address reaches
//! before any name is known (the first virtual host of the address, or the
//! main server), as in Apache. The handshake reads the client's hello
//! first, then answers with the configuration of the virtual host the SNI
//! name selects — its own certificates and protocol versions — or, with no
//! name or an unknown one, that first server's.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::server::{Acceptor, ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::LazyConfigAcceptor;

use super::plan::Local;
use super::wire::{self, Wire};
use crate::config::{CipherSuite, Config, KxGroup, Server, ServerTls, SniPolicy};
use crate::route;

/// The first byte of a TLS record carrying a handshake message.
const HANDSHAKE_RECORD: u8 = 0x16;

/// The rustls configurations of one generation's TLS servers.
#[derive(Default)]
pub struct Edge {
    /// By the address of the server's [`ServerTls`] (which the generation's
    /// configuration keeps alive as long as this).
    configs: HashMap<usize, Arc<ServerConfig>>,
}

impl Edge {
    pub fn new(config: &Config) -> Edge {
        let mut configs = HashMap::new();
        for server in std::iter::once(&config.main).chain(&config.vhosts) {
            if let Some(tls) = &server.tls {
                configs
                    .entry(key(tls))
                    .or_insert_with(|| server_config(tls, server.http2.enabled));
            }
        }
        Edge { configs }
    }

    fn config_for(&self, tls: &Arc<ServerTls>) -> Option<Arc<ServerConfig>> {
        self.configs.get(&key(tls)).cloned()
    }
}

fn key(tls: &Arc<ServerTls>) -> usize {
    Arc::as_ptr(tls) as usize
}

/// The rustls configuration of one TLS server; `h2`: HTTP/2 is offered
/// (ALPN `h2` before `http/1.1`).
fn server_config(tls: &ServerTls, h2: bool) -> Arc<ServerConfig> {
    let mut versions: Vec<&'static rustls::SupportedProtocolVersion> = Vec::new();
    if tls.versions.tls13 {
        versions.push(&rustls::version::TLS13);
    }
    if tls.versions.tls12 {
        versions.push(&rustls::version::TLS12);
    }
    let provider = Arc::new(provider(tls));
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        // The configuration checked that a version is left with suites
        // for it; should rustls still refuse, its defaults serve.
        .unwrap_or_else(|e| {
            tracing::error!("TLS settings refused ({e}); using rustls's defaults");
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("the ring provider supports the default versions")
        });
    let mut config = builder
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Keys(tls.keys.clone())));
    config.alpn_protocols = if h2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    config.ignore_client_order = tls.honor_cipher_order;
    // A quiet wss:// tunnel's session leaves rustls for the park table.
    config.key_log = Arc::new(wire::CatchSecrets);
    config.enable_secret_extraction = true;
    if tls.session_tickets {
        match rustls::crypto::ring::Ticketer::new() {
            Ok(ticketer) => config.ticketer = ticketer,
            Err(e) => tracing::warn!("no session tickets: {e}"),
        }
    } else {
        // As OpenSSL with SSL_OP_NO_TICKET under mod_ssl's default of no
        // SSLSessionCache: no ticket of any kind, no resumption.
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
    }
    Arc::new(config)
}

/// ring's primitives with the server's cipher suites and key exchange
/// groups, in its order of preference.
fn provider(tls: &ServerTls) -> rustls::crypto::CryptoProvider {
    use rustls::crypto::ring::kx_group;
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites = tls.ciphers.iter().map(|c| suite(*c)).collect();
    if !tls.groups.is_empty() {
        provider.kx_groups = tls
            .groups
            .iter()
            .map(|g| match g {
                KxGroup::X25519 => kx_group::X25519,
                KxGroup::Secp256r1 => kx_group::SECP256R1,
                KxGroup::Secp384r1 => kx_group::SECP384R1,
            })
            .collect();
    }
    provider
}

fn suite(c: CipherSuite) -> rustls::SupportedCipherSuite {
    use rustls::crypto::ring::cipher_suite as cs;
    match c {
        CipherSuite::EcdheEcdsaAes128Gcm => cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        CipherSuite::EcdheEcdsaAes256Gcm => cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        CipherSuite::EcdheEcdsaChacha20 => cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        CipherSuite::EcdheRsaAes128Gcm => cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        CipherSuite::EcdheRsaAes256Gcm => cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        CipherSuite::EcdheRsaChacha20 => cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        CipherSuite::Tls13Aes128Gcm => cs::TLS13_AES_128_GCM_SHA256,
        CipherSuite::Tls13Aes256Gcm => cs::TLS13_AES_256_GCM_SHA384,
        CipherSuite::Tls13Chacha20 => cs::TLS13_CHACHA20_POLY1305_SHA256,
    }
}

/// A server's certificates: the first whose key the client can verify.
#[derive(Debug)]
struct Keys(Vec<Arc<CertifiedKey>>);

impl ResolvesServerCert for Keys {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let schemes = hello.signature_schemes();
        self.0
            .iter()
            .find(|k| k.key.choose_scheme(schemes).is_some())
            .or(self.0.first())
            .cloned()
    }
}

/// The server a connection on `local` reaches before any name is known,
/// when that server speaks TLS.
pub fn tls_server(config: &Config, local: SocketAddr) -> Option<&Server> {
    let server = route::select_server(config, local, None);
    server.tls.is_some().then_some(server)
}

/// What the client said in its handshake.
#[derive(Debug, Clone, Default)]
pub struct TlsFacts {
    /// The SNI name, lower-case.
    pub sni: Option<String>,
}

/// How a connection to a TLS address began.
pub enum Handshake {
    Done(Box<TlsStream<Wire>>, TlsFacts),
    /// The client spoke plain HTTP: its first bytes are a GET, POST, HEAD
    /// or PUT request line (what OpenSSL recognises, and Apache answers).
    PlainHttp(TcpStream),
    /// The client spoke neither TLS nor such a request: closed without an
    /// answer.
    NotTls(TcpStream),
    /// Closed, timed out, not TLS, or failed: nothing more to do.
    Failed,
}

/// Methods whose request lines mod_ssl answers with its 400 page.
const PLAIN_HTTP: [&[u8]; 4] = [b"GET ", b"POST ", b"HEAD ", b"PUT "];

/// Runs the server side of a TLS handshake within `timeout`.
pub async fn handshake(
    stream: TcpStream,
    config: &Config,
    edge: &Edge,
    local: SocketAddr,
    timeout: Duration,
) -> Handshake {
    match tokio::time::timeout(timeout, handshake_inner(stream, config, edge, local)).await {
        Ok(Ok(done)) => done,
        Ok(Err(e)) => {
            tracing::debug!("TLS handshake failed: {e}");
            Handshake::Failed
        }
        Err(_) => {
            tracing::debug!("TLS handshake timed out");
            Handshake::Failed
        }
    }
}

/// Reads a request line's first bytes, as many as tell whether it starts
/// with one of [`PLAIN_HTTP`]'s methods (the request is not served, so
/// they need not be kept).
async fn plain_http_method(stream: &mut TcpStream) -> io::Result<bool> {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::with_capacity(5);
    let mut byte = [0u8; 1];
    while got.len() < 5 {
        if stream.read(&mut byte).await? == 0 {
            return Ok(false);
        }
        got.push(byte[0]);
        if PLAIN_HTTP.contains(&got.as_slice()) {
            return Ok(true);
        }
        if !PLAIN_HTTP.iter().any(|m| m.starts_with(&got)) {
            return Ok(false);
        }
    }
    Ok(false)
}

async fn handshake_inner(
    mut stream: TcpStream,
    config: &Config,
    edge: &Edge,
    local: SocketAddr,
) -> io::Result<Handshake> {
    let mut first = [0u8; 1];
    if stream.peek(&mut first).await? == 0 {
        return Ok(Handshake::Failed);
    }
    if first[0] != HANDSHAKE_RECORD {
        return Ok(if plain_http_method(&mut stream).await? {
            Handshake::PlainHttp(stream)
        } else {
            Handshake::NotTls(stream)
        });
    }
    let start = LazyConfigAcceptor::new(Acceptor::default(), Wire::new(stream)).await?;
    let sni = start
        .client_hello()
        .server_name()
        .map(|n| n.to_ascii_lowercase());
    // The virtual host the name selects, if it speaks TLS; else the
    // address's first server.
    let by_name = route::select_server(config, local, sni.as_deref());
    let chosen = by_name
        .tls
        .as_ref()
        .or_else(|| tls_server(config, local).and_then(|s| s.tls.as_ref()));
    let Some(server_config) = chosen.and_then(|tls| edge.config_for(tls)) else {
        return Ok(Handshake::Failed);
    };
    // rustls logs the session's traffic secrets while it handles a client
    // hello: the first here, a second (after HelloRetryRequest) in a poll.
    wire::take_secrets();
    let mut accept = start.into_stream(server_config);
    let mut secrets = wire::take_secrets();
    let mut stream = std::future::poll_fn(|cx| {
        let polled = std::pin::Pin::new(&mut accept).poll(cx);
        secrets = secrets.take().or_else(wire::take_secrets);
        polled
    })
    .await?;
    stream.get_mut().0.keep_secrets(secrets);
    Ok(Handshake::Done(Box::new(stream), TlsFacts { sni }))
}

/// What a request on a TLS connection gets before it is routed, when its
/// `Host` does not fit the handshake: 400 for a request without a Host
/// after an SNI name; 403 without an SNI name where
/// `SSLStrictSNIVHostCheck` asks for one; 421 Misdirected Request when the
/// Host selects a server other than the one the handshake was made for (by
/// SNI, or the address's first without one) and `SSLVHostSNIPolicy` does
/// not let it: `strict` never does, `secure` (the default) when the two
/// share their TLS setup — the same certificate and key files, protocol
/// versions and cipher suites — and `authonly` and `insecure` always.
pub fn misdirected(
    config: &Config,
    local: SocketAddr,
    sni: Option<&str>,
    host: Option<&str>,
) -> Option<Local> {
    if sni.is_some() && host.is_none() {
        return Some(Local::BAD_REQUEST);
    }
    let handshake = route::select_server(config, local, sni);
    let by_host = route::select_server(config, local, host);
    // SSLStrictSNIVHostCheck: a client that sent no name may not reach a
    // server that asks for one, nor any server when the first one does.
    let strict = |s: &Server| s.tls.as_ref().is_some_and(|t| t.strict_sni);
    if sni.is_none() && (strict(handshake) || strict(by_host)) {
        return Some(Local::NO_SNI);
    }
    if std::ptr::eq(handshake, by_host) {
        return None;
    }
    let fits = match (config.sni_policy, &handshake.tls, &by_host.tls) {
        (SniPolicy::Strict, ..) => false,
        (SniPolicy::Secure, Some(a), Some(b)) => Arc::ptr_eq(a, b) || same_setup(a, b),
        (SniPolicy::Secure, ..) => false,
        // Client certificates are not asked for by any server here.
        (SniPolicy::AuthOnly | SniPolicy::Insecure, ..) => true,
    };
    (!fits).then_some(Local::MISDIRECTED)
}

fn same_setup(a: &ServerTls, b: &ServerTls) -> bool {
    a.files == b.files
        && a.chain_file == b.chain_file
        && a.versions == b.versions
        && a.ciphers == b.ciphers
}

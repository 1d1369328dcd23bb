//! TLS toward backends, with the checks `SSLProxyVerify`,
//! `SSLProxyCheckPeerName` and `SSLProxyCheckPeerExpire` ask for — each on its
//! own, as in Apache, where the name and expiry checks apply even with
//! `SSLProxyVerify none`.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, Error, RootCertStore, SignatureScheme};

use crate::config::SslProxy;

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Builds the client configuration for one server's `SSLProxy*` settings
/// (whose certificates the configuration has read and checked).
pub fn client_config(ssl: &SslProxy) -> Result<rustls::ClientConfig, String> {
    let provider = provider();
    let trusted = ssl.ca_certificates.clone();
    let chain = if ssl.verify && !trusted.is_empty() {
        let mut roots = RootCertStore::empty();
        for cert in &trusted {
            roots.add(cert.clone()).map_err(|e| e.to_string())?;
        }
        Some(
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| e.to_string())?,
        )
    } else {
        None
    };
    let verifier = BackendVerifier {
        chain,
        trusted,
        check_name: ssl.check_peer_name,
        check_expire: ssl.check_peer_expire,
        provider: provider.clone(),
    };
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

#[derive(Debug)]
struct BackendVerifier {
    chain: Option<Arc<WebPkiServerVerifier>>,
    /// The certificates of `SSLProxyCACertificateFile` themselves.
    trusted: Vec<CertificateDer<'static>>,
    check_name: bool,
    check_expire: bool,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for BackendVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        if let Some(chain) = &self.chain {
            match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
                Ok(ok) => return Ok(ok),
                // The chain and its dates are good; the name is checked
                // below as Apache checks it (the CN too), unless turned off.
                Err(Error::InvalidCertificate(
                    CertificateError::NotValidForName
                    | CertificateError::NotValidForNameContext { .. },
                )) => {}
                Err(Error::InvalidCertificate(
                    CertificateError::Expired
                    | CertificateError::ExpiredContext { .. }
                    | CertificateError::NotValidYet
                    | CertificateError::NotValidYetContext { .. },
                )) if !self.check_expire => {
                    if self.check_name {
                        check_name(end_entity, server_name)?;
                    }
                    return Ok(ServerCertVerified::assertion());
                }
                // The backend's own certificate is in the CA file, as a
                // self-signed one usually is: OpenSSL, and so Apache, trust
                // it as it is, where WebPKI refuses a CA certificate (as
                // `openssl req -x509` makes them) or one that is its own
                // issuer as the end of a chain. Name and dates below.
                Err(_) if self.trusted.iter().any(|t| t == end_entity) => {}
                Err(e) => return Err(e),
            }
        }
        if self.check_name {
            check_name(end_entity, server_name)?;
        }
        if self.check_expire {
            check_expiry(end_entity, now)?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// What went wrong in a handshake with a backend, in an operator's words
/// and naming the directive concerned, rather than rustls's type names.
pub fn describe_handshake_error(e: &std::io::Error) -> String {
    let Some(Error::InvalidCertificate(c)) = e.get_ref().and_then(|i| i.downcast_ref::<Error>())
    else {
        return e.to_string();
    };
    let what = match c {
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            "does not name the host connected to (SSLProxyCheckPeerName)"
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            "has expired (SSLProxyCheckPeerExpire)"
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            "is not valid yet (SSLProxyCheckPeerExpire)"
        }
        CertificateError::UnknownIssuer => {
            "is not signed by a certificate in SSLProxyCACertificateFile"
        }
        CertificateError::BadSignature => "has a bad signature",
        CertificateError::Revoked => "is revoked",
        CertificateError::Other(o) if o.to_string().contains("CaUsedAsEndEntity") => {
            "is a CA certificate (as 'openssl req -x509' makes them) and is not itself in SSLProxyCACertificateFile"
        }
        other => return format!("the backend's certificate was refused ({other:?})"),
    };
    format!("the backend's certificate {what}")
}

fn parse<'a>(
    cert: &'a CertificateDer<'_>,
) -> Result<x509_parser::certificate::X509Certificate<'a>, Error> {
    x509_parser::parse_x509_certificate(cert.as_ref())
        .map(|(_, c)| c)
        .map_err(|_| Error::InvalidCertificate(CertificateError::BadEncoding))
}

/// The name check Apache makes: dNSName SANs, else the CN, with a single
/// leading `*.` label wildcard. wsgate also accepts an IP-address SAN equal to
/// an IP target (Apache ignores IP SANs; accepting one is no weaker).
fn check_name(cert: &CertificateDer<'_>, server_name: &ServerName<'_>) -> Result<(), Error> {
    let cert = parse(cert)?;
    let wanted = match server_name {
        ServerName::DnsName(d) => d.as_ref().to_ascii_lowercase(),
        ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
        _ => return Err(Error::InvalidCertificate(CertificateError::NotValidForName)),
    };
    let mut dns_names = Vec::new();
    let mut ips = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                x509_parser::extensions::GeneralName::DNSName(d) => {
                    dns_names.push(d.to_ascii_lowercase())
                }
                x509_parser::extensions::GeneralName::IPAddress(bytes) => {
                    let ip = match bytes.len() {
                        4 => <[u8; 4]>::try_from(&bytes[..])
                            .ok()
                            .map(|b| std::net::IpAddr::from(b).to_string()),
                        16 => <[u8; 16]>::try_from(&bytes[..])
                            .ok()
                            .map(|b| std::net::IpAddr::from(b).to_string()),
                        _ => None,
                    };
                    ips.extend(ip);
                }
                _ => {}
            }
        }
    }
    if dns_names.is_empty() {
        for cn in cert.subject().iter_common_name() {
            if let Ok(cn) = cn.as_str() {
                dns_names.push(cn.to_ascii_lowercase());
            }
        }
    }
    let matches = dns_names.iter().any(|n| name_matches(n, &wanted)) || ips.contains(&wanted);
    if matches {
        Ok(())
    } else {
        Err(Error::InvalidCertificate(CertificateError::NotValidForName))
    }
}

fn name_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(suffix) => name
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
        None => pattern == name,
    }
}

fn check_expiry(cert: &CertificateDer<'_>, now: UnixTime) -> Result<(), Error> {
    let cert = parse(cert)?;
    let now = now.as_secs() as i64;
    let validity = cert.validity();
    if now < validity.not_before.timestamp() {
        return Err(Error::InvalidCertificate(CertificateError::NotValidYet));
    }
    if now > validity.not_after.timestamp() {
        return Err(Error::InvalidCertificate(CertificateError::Expired));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::name_matches;

    #[test]
    fn wildcards_cover_one_label() {
        assert!(name_matches("*.example.com", "a.example.com"));
        assert!(!name_matches("*.example.com", "a.b.example.com"));
        assert!(!name_matches("*.example.com", "example.com"));
        assert!(name_matches("localhost", "localhost"));
    }
}

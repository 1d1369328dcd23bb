//! mod_ssl's proxy directives: TLS toward `https://` and `wss://` backends.

use std::path::{Path, PathBuf};

use rustls::pki_types::CertificateDer;

use super::directives::arg;
use super::error::{ConfigError, Origin};
use super::lexer::Node;
use super::{At, Builder};

/// The `SSLProxy*` directives.
pub(super) fn ssl_proxy(b: &mut Builder, at: &mut At<'_>, node: &Node) -> Result<(), ConfigError> {
    let lower = node.name.to_ascii_lowercase();
    at.server.ssl.set(node, &lower, arg(node), &b.root)
}
use super::model::SslProxy;
use super::values;

/// The `SSLProxy*` directives of one server before merging.
#[derive(Default, Clone)]
pub struct SslDraft {
    engine: Option<bool>,
    verify: Option<bool>,
    ca_file: Option<(PathBuf, Origin)>,
    check_peer_name: Option<bool>,
    check_peer_expire: Option<bool>,
    verify_origin: Option<Origin>,
}

impl SslDraft {
    pub fn is_empty(&self) -> bool {
        self.engine.is_none()
            && self.verify.is_none()
            && self.ca_file.is_none()
            && self.check_peer_name.is_none()
            && self.check_peer_expire.is_none()
    }

    pub fn set(
        &mut self,
        node: &Node,
        lower: &str,
        value: &str,
        root: &Path,
    ) -> Result<(), ConfigError> {
        let o = &node.origin;
        match lower {
            "sslproxyengine" => self.engine = Some(values::on_off(o, &node.name, value)?),
            "sslproxyverify" => {
                self.verify = Some(match value.to_ascii_lowercase().as_str() {
                    "none" => false,
                    "require" => true,
                    "optional" | "optional_no_ca" => {
                        return Err(ConfigError::new(
                            o,
                            format!("SSLProxyVerify {value} is not supported by wsgate"),
                        )
                        .hint("use 'require' to verify the backend's chain, or 'none'"))
                    }
                    _ => {
                        return Err(ConfigError::new(
                            o,
                            format!("SSLProxyVerify: invalid type '{value}'"),
                        )
                        .hint("one of none, require"))
                    }
                });
                self.verify_origin = Some(o.clone());
            }
            "sslproxycacertificatefile" => {
                let path = root.join(value);
                if !path.is_file() {
                    return Err(ConfigError::new(
                        o,
                        format!(
                            "SSLProxyCACertificateFile: file '{}' does not exist or is empty",
                            path.display()
                        ),
                    ));
                }
                self.ca_file = Some((path, o.clone()));
            }
            "sslproxycheckpeername" | "sslproxycheckpeercn" => {
                self.check_peer_name = Some(values::on_off(o, &node.name, value)?)
            }
            _ => self.check_peer_expire = Some(values::on_off(o, &node.name, value)?),
        }
        Ok(())
    }

    /// Merges over `parent` (the main server's, for a vhost) and reads the
    /// certificates the backends' chains are checked against.
    pub fn resolve(&self, parent: Option<&SslDraft>) -> Result<SslProxy, ConfigError> {
        let p = parent.cloned().unwrap_or_default();
        let verify = self.verify.or(p.verify).unwrap_or(false);
        let ca_file = self.ca_file.clone().or(p.ca_file);
        let mut ssl = SslProxy {
            engine: self.engine.or(p.engine).unwrap_or(false),
            verify,
            ca_file: ca_file.as_ref().map(|(f, _)| f.clone()),
            ca_certificates: Vec::new(),
            check_peer_name: self.check_peer_name.or(p.check_peer_name).unwrap_or(true),
            check_peer_expire: self
                .check_peer_expire
                .or(p.check_peer_expire)
                .unwrap_or(true),
        };
        if verify && ca_file.is_none() {
            let origin = self
                .verify_origin
                .clone()
                .or(p.verify_origin)
                .expect("verify was set by a directive");
            return Err(ConfigError::new(
                &origin,
                "SSLProxyVerify require needs SSLProxyCACertificateFile",
            )
            .hint("name the PEM file of the CA that signed the backends' certificates"));
        }
        if let (true, true, Some((path, origin))) = (ssl.engine, verify, &ca_file) {
            ssl.ca_certificates = trust_anchors(path)
                .map_err(|e| ConfigError::new(origin, format!("SSLProxyCACertificateFile: {e}")))?;
        }
        Ok(ssl)
    }
}

/// The certificates of a PEM file, each checked to be usable as a trust
/// anchor.
fn trust_anchors(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read '{}': {e}", path.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    let mut certificates = Vec::new();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        let cert = cert.map_err(|e| format!("'{}' is not PEM: {e}", path.display()))?;
        roots
            .add(cert.clone())
            .map_err(|e| format!("'{}': not a usable CA certificate: {e}", path.display()))?;
        certificates.push(cert);
    }
    if certificates.is_empty() {
        return Err(format!("'{}' holds no PEM certificate", path.display()));
    }
    Ok(certificates)
}

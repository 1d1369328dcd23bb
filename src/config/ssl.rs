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
use super::ciphers;
use super::model::{CipherSuite, KxGroup, ServerTls, SniPolicy, SslProxy, TlsVersions};
use super::source;
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
                if !source::is_file(&path) {
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
    let pem = source::read(path).map_err(|e| format!("cannot read '{}': {e}", path.display()))?;
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

/// mod_ssl's server directives (`SSLEngine`, certificates, `SSLProtocol`):
/// TLS toward clients.
pub(super) fn ssl_server(b: &mut Builder, at: &mut At<'_>, node: &Node) -> Result<(), ConfigError> {
    let lower = node.name.to_ascii_lowercase();
    at.server.tls.set(node, &lower, &b.root)
}

/// `SSLStaplingCache`: Apache's cache of fetched OCSP responses, which
/// stapling needs there; wsgate reads its responses from files.
pub(super) fn stapling_cache(_: &mut Builder, _: &mut At<'_>, _: &Node) -> Result<(), ConfigError> {
    Ok(())
}

/// `SSLVHostSNIPolicy strict|secure|authonly|insecure` (server config only,
/// as in Apache).
pub(super) fn sni_policy(b: &mut Builder, _: &mut At<'_>, node: &Node) -> Result<(), ConfigError> {
    let value = arg(node);
    b.sni_policy = match value.to_ascii_lowercase().as_str() {
        "strict" => SniPolicy::Strict,
        "secure" => SniPolicy::Secure,
        "authonly" => SniPolicy::AuthOnly,
        "insecure" => SniPolicy::Insecure,
        _ => {
            return Err(ConfigError::new(
                &node.origin,
                format!("Invalid SSLVHostSNIPolicy argument '{value}'"),
            )
            .hint("SSLVHostSNIPolicy strict|secure|authonly|insecure"))
        }
    };
    Ok(())
}

/// The TLS directives of one server before merging with the main server's.
#[derive(Default, Clone)]
pub struct TlsDraft {
    engine: Option<(bool, Origin)>,
    certs: Vec<(PathBuf, Origin)>,
    keys: Vec<(PathBuf, Origin)>,
    chain: Option<(PathBuf, Origin)>,
    protocols: Option<TlsVersions>,
    /// `SSLCipherSuite [SSL] LIST` and `SSLCipherSuite TLSv1.3 LIST`.
    ciphers12: Option<(String, Origin)>,
    ciphers13: Option<(String, Origin)>,
    honor_order: Option<bool>,
    tickets: Option<bool>,
    groups: Option<Vec<KxGroup>>,
    strict_sni: Option<bool>,
    /// `SSLUseStapling`, and the responses to staple (`WsgateStaplingFile`,
    /// the i-th for the i-th certificate).
    stapling: Option<(bool, Origin)>,
    staples: Vec<(PathBuf, Origin)>,
    /// Things to say once at startup (`SSLOpenSSLConfCmd DHParameters`).
    notes: Vec<String>,
}

impl TlsDraft {
    fn set(&mut self, node: &Node, lower: &str, root: &Path) -> Result<(), ConfigError> {
        let o = &node.origin;
        match lower {
            "sslengine" => {
                let value = arg(node);
                let on = match value.to_ascii_lowercase().as_str() {
                    "on" => true,
                    "off" => false,
                    "optional" | "addr" => return Err(ConfigError::new(
                        o,
                        format!("SSLEngine {value} is not supported by wsgate"),
                    )
                    .hint(
                        "SSLEngine on serves TLS on this server's addresses; off serves plain HTTP",
                    )),
                    _ => {
                        return Err(ConfigError::new(o, "Argument must be On, Off, or Optional")
                            .hint("SSLEngine on|off"))
                    }
                };
                self.engine = Some((on, o.clone()));
            }
            "sslprotocol" => self.protocols = Some(parse_protocols(o, &node.args)?),
            "sslciphersuite" => match node.args.as_slice() {
                [list] => self.ciphers12 = Some((list.clone(), o.clone())),
                [proto, list] if proto.eq_ignore_ascii_case("SSL") => {
                    self.ciphers12 = Some((list.clone(), o.clone()))
                }
                [proto, list] if proto.eq_ignore_ascii_case("TLSv1.3") => {
                    self.ciphers13 = Some((list.clone(), o.clone()))
                }
                [proto, _] => {
                    return Err(ConfigError::new(
                        o,
                        format!("SSLCipherSuite: protocol '{proto}' not supported"),
                    )
                    .hint("SSLCipherSuite [SSL|TLSv1.3] LIST"))
                }
                _ => {
                    return Err(ConfigError::new(
                        o,
                        "SSLCipherSuite takes [protocol] cipher-spec",
                    ))
                }
            },
            "sslhonorcipherorder" => {
                self.honor_order = Some(values::on_off(o, &node.name, arg(node))?)
            }
            "sslsessiontickets" => self.tickets = Some(values::on_off(o, &node.name, arg(node))?),
            "sslstrictsnivhostcheck" => {
                self.strict_sni = Some(values::on_off(o, &node.name, arg(node))?)
            }
            "sslusestapling" => {
                self.stapling = Some((values::on_off(o, &node.name, arg(node))?, o.clone()))
            }
            "wsgatestaplingfile" => {
                let path = readable_file(o, &node.name, arg(node), root)?;
                self.staples.push((path, o.clone()));
            }
            "sslopensslconfcmd" => self.conf_cmd(node)?,
            _ => {
                let path = readable_file(o, &node.name, arg(node), root)?;
                match lower {
                    "sslcertificatefile" => self.certs.push((path, o.clone())),
                    "sslcertificatekeyfile" => self.keys.push((path, o.clone())),
                    _ => self.chain = Some((path, o.clone())),
                }
            }
        }
        Ok(())
    }

    /// `SSLOpenSSLConfCmd COMMAND VALUE`: the commands that mean something
    /// with rustls.
    fn conf_cmd(&mut self, node: &Node) -> Result<(), ConfigError> {
        let o = &node.origin;
        let [command, value] = node.args.as_slice() else {
            return Err(ConfigError::new(
                o,
                "SSLOpenSSLConfCmd takes a command and a value",
            ));
        };
        match command.to_ascii_lowercase().as_str() {
            "curves" | "groups" | "ecdhparameters" => {
                let mut groups = Vec::new();
                for name in value.split([':', ',']) {
                    let group = match name.to_ascii_lowercase().as_str() {
                        "x25519" => KxGroup::X25519,
                        "prime256v1" | "secp256r1" | "p-256" => KxGroup::Secp256r1,
                        "secp384r1" | "p-384" => KxGroup::Secp384r1,
                        // Groups rustls does not have: left out, as OpenSSL
                        // leaves out the ones it lacks.
                        _ => continue,
                    };
                    if !groups.contains(&group) {
                        groups.push(group);
                    }
                }
                if groups.is_empty() {
                    return Err(ConfigError::new(
                        o,
                        format!("SSLOpenSSLConfCmd {command} {value}: no group wsgate speaks"),
                    )
                    .hint("wsgate (rustls) speaks X25519, prime256v1 (P-256) and secp384r1 (P-384)"));
                }
                self.groups = Some(groups);
            }
            "dhparameters" => self.notes.push(format!(
                "{o}: SSLOpenSSLConfCmd DHParameters is not used: wsgate (rustls) offers no finite-field DHE, only ECDHE"
            )),
            _ => {
                return Err(ConfigError::new(
                    o,
                    format!("SSLOpenSSLConfCmd {command} is not supported by wsgate"),
                )
                .hint("wsgate reads Curves (or Groups) and accepts DHParameters; the rest is OpenSSL's own"))
            }
        }
        Ok(())
    }

    /// Merges over `main` (the main server's, for a vhost; mod_ssl's merge:
    /// `SSLEngine` and `SSLProtocol` are inherited, certificates and keys
    /// are the vhost's followed by the main server's) and loads the
    /// certificates and keys. `https`: the server is reached on `Listen …
    /// https` addresses, where certificates without an `SSLEngine` line
    /// turn TLS on (as mod_ssl). `None`: this server speaks plain HTTP.
    pub fn resolve(
        &self,
        main: Option<&TlsDraft>,
        server: &str,
        https: bool,
        warnings: &mut Vec<String>,
    ) -> Result<Option<std::sync::Arc<ServerTls>>, ConfigError> {
        let m = main.cloned().unwrap_or_default();
        let certs: Vec<_> = self.certs.iter().chain(&m.certs).cloned().collect();
        let engine = self.engine.clone().or(m.engine.clone()).or_else(|| {
            let (_, first) = certs.first().filter(|_| https)?;
            Some((true, first.clone()))
        });
        let Some((true, engine_origin)) = engine else {
            return Ok(None);
        };
        let keys: Vec<_> = self.keys.iter().chain(&m.keys).cloned().collect();
        let chain = self.chain.clone().or(m.chain.clone());
        if certs.is_empty() {
            return Err(ConfigError::new(
                &engine_origin,
                format!("SSLEngine on for {server}, but no SSLCertificateFile: Failed to configure at least one certificate and key"),
            )
            .hint("add SSLCertificateFile (and SSLCertificateKeyFile, unless the key is in the same file)"));
        }
        let mut certified = Vec::with_capacity(certs.len());
        let mut files = Vec::with_capacity(certs.len());
        for (i, (cert_file, cert_origin)) in certs.iter().enumerate() {
            let mut chain_certs = read_certificates(cert_origin, "SSLCertificateFile", cert_file)?;
            // As mod_ssl: a chain file replaces the chain that follows the
            // certificate in its own file.
            if let Some((chain_file, chain_origin)) = &chain {
                chain_certs.truncate(1);
                chain_certs.extend(read_certificates(
                    chain_origin,
                    "SSLCertificateChainFile",
                    chain_file,
                )?);
            }
            // As mod_ssl: the i-th key file goes with the i-th certificate;
            // without one, the key is in the certificate's file.
            let (key_file, key_origin) = keys
                .get(i)
                .map_or((cert_file, cert_origin), |(f, o)| (f, o));
            let key = read_private_key(key_origin, key_file)?;
            let provider = rustls::crypto::ring::default_provider();
            let key =
                rustls::sign::CertifiedKey::from_der(chain_certs, key, &provider).map_err(|e| {
                    let why = match e {
                        rustls::Error::InconsistentKeys(_) => format!(
                            "Certificate and private key from '{}' and '{}' do not match",
                            cert_file.display(),
                            key_file.display()
                        ),
                        e => format!("unusable private key in '{}': {e}", key_file.display()),
                    };
                    ConfigError::new(
                        key_origin,
                        format!("{}: {why}", node_name(key_origin, cert_origin)),
                    )
                })?;
            let mut key = key;
            key.ocsp = self.staple(&m, i, &key, server, warnings)?;
            certified.push(std::sync::Arc::new(key));
            files.push((cert_file.clone(), key_file.clone()));
        }
        let mut versions = self.protocols.or(m.protocols).unwrap_or_default();
        let ciphers = self.ciphers(&m, &mut versions, warnings)?;
        warnings.extend(self.notes.iter().cloned());
        Ok(Some(std::sync::Arc::new(ServerTls {
            keys: certified,
            files,
            chain_file: chain.map(|(f, _)| f),
            versions,
            ciphers,
            honor_cipher_order: self.honor_order.or(m.honor_order).unwrap_or(false),
            session_tickets: self.tickets.or(m.tickets).unwrap_or(true),
            groups: self.groups.clone().or(m.groups).unwrap_or_default(),
            strict_sni: self.strict_sni.or(m.strict_sni).unwrap_or(false),
        })))
    }
}

impl TlsDraft {
    /// The OCSP response the `i`-th certificate staples, with
    /// `SSLUseStapling on`: read from the `i`-th `WsgateStaplingFile`
    /// (wsgate fetches none) and checked (`ocsp::check`). One past its
    /// `nextUpdate` is left out with a warning: a client may refuse a stale
    /// one, but not a missing one.
    fn staple(
        &self,
        main: &TlsDraft,
        i: usize,
        key: &rustls::sign::CertifiedKey,
        server: &str,
        warnings: &mut Vec<String>,
    ) -> Result<Option<Vec<u8>>, ConfigError> {
        let Some((true, on)) = self.stapling.clone().or(main.stapling.clone()) else {
            return Ok(None);
        };
        let staples: Vec<_> = self.staples.iter().chain(&main.staples).collect();
        let Some((file, origin)) = staples.get(i) else {
            if i > 0 {
                warnings.push(format!(
                    "{on}: SSLUseStapling on for {server}, but its certificate number {} has no WsgateStaplingFile: not stapled",
                    i + 1
                ));
                return Ok(None);
            }
            return Err(ConfigError::new(
                &on,
                format!("SSLUseStapling on for {server}: wsgate staples an OCSP response it reads from a file, and fetches none"),
            )
            .hint("add `WsgateStaplingFile FILE` inside <IfModule wsgate_module> (a DER response, e.g. from `openssl ocsp -issuer CA -cert CERT -url URL -respout FILE`, renewed by cron and a reload)"));
        };
        let response = source::read(file).map_err(|e| {
            ConfigError::new(
                origin,
                format!("WsgateStaplingFile: cannot read '{}': {e}", file.display()),
            )
        })?;
        let leaf = key.end_entity_cert().map_err(|e| {
            ConfigError::new(origin, format!("WsgateStaplingFile: no certificate: {e}"))
        })?;
        let serial = x509_parser::parse_x509_certificate(leaf)
            .map(|(_, c)| c.tbs_certificate.raw_serial().to_vec())
            .map_err(|e| ConfigError::new(origin, format!("WsgateStaplingFile: {e}")))?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        match super::ocsp::check(&response, &serial, now) {
            Ok(()) => Ok(Some(response)),
            Err(why @ super::ocsp::Unfit::Expired(_)) => {
                warnings.push(format!(
                    "{origin}: WsgateStaplingFile '{}': {why}: not stapled until it is renewed (and wsgate reloaded)",
                    file.display()
                ));
                Ok(None)
            }
            Err(why) => Err(ConfigError::new(
                origin,
                format!("WsgateStaplingFile '{}': {why}", file.display()),
            )
            .hint("the response must be the OCSP responder's answer for this SSLCertificateFile's certificate")),
        }
    }

    /// The cipher suites the two `SSLCipherSuite` lists leave, TLS 1.3's
    /// first (a TLS 1.3 handshake picks from those only). A version whose
    /// list is empty is not offered; both empty is an error.
    fn ciphers(
        &self,
        main: &TlsDraft,
        versions: &mut TlsVersions,
        warnings: &mut Vec<String>,
    ) -> Result<Vec<CipherSuite>, ConfigError> {
        let mut out = Vec::new();
        let lists = [
            (self.ciphers13.clone().or(main.ciphers13.clone()), true),
            (self.ciphers12.clone().or(main.ciphers12.clone()), false),
        ];
        let mut last_origin = None;
        for (list, tls13) in lists {
            let Some((text, origin)) = list else {
                out.extend(if tls13 { &ciphers::TLS13[..] } else { &[][..] });
                if !tls13 {
                    out.extend(ciphers::tls12("DEFAULT").0);
                }
                continue;
            };
            let (suites, left) = if tls13 {
                ciphers::tls13(&text)
            } else {
                ciphers::tls12(&text)
            };
            if !left.is_empty() {
                warnings.push(format!(
                    "{origin}: SSLCipherSuite: wsgate (rustls) has no suite for {}; left out",
                    left.join(", ")
                ));
            }
            if suites.is_empty() {
                if tls13 {
                    versions.tls13 = false;
                } else {
                    versions.tls12 = false;
                }
            }
            out.extend(suites);
            last_origin = Some(origin);
        }
        if !versions.tls12 && !versions.tls13 {
            let origin = last_origin.unwrap_or_else(|| self.engine_origin(main));
            return Err(ConfigError::new(
                &origin,
                "SSLCipherSuite: No cipher can be selected (none wsgate speaks, for the protocols SSLProtocol leaves)",
            )
            .hint("e.g. the suites of Mozilla's intermediate list: ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:..."));
        }
        Ok(out)
    }

    fn engine_origin(&self, main: &TlsDraft) -> Origin {
        self.engine
            .clone()
            .or(main.engine.clone())
            .map(|(_, o)| o)
            .or_else(|| self.certs.first().map(|(_, o)| o.clone()))
            .unwrap_or(Origin {
                file: std::sync::Arc::new(PathBuf::from("the configuration")),
                line: 0,
            })
    }
}

/// Which directive an error about a key names: the key file's, or the
/// certificate file's when the key was read from it.
fn node_name(key_origin: &Origin, cert_origin: &Origin) -> &'static str {
    if key_origin == cert_origin {
        "SSLCertificateFile"
    } else {
        "SSLCertificateKeyFile"
    }
}

fn readable_file(
    o: &Origin,
    directive: &str,
    value: &str,
    root: &Path,
) -> Result<PathBuf, ConfigError> {
    let path = root.join(value);
    if !source::is_file(&path) {
        return Err(ConfigError::new(
            o,
            format!(
                "{directive}: file '{}' does not exist or is empty",
                path.display()
            ),
        ));
    }
    Ok(path)
}

/// The certificates of a PEM file, in order: a leaf, then its chain.
fn read_certificates(
    o: &Origin,
    directive: &str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let pem = source::read(path).map_err(|e| {
        ConfigError::new(
            o,
            format!("{directive}: cannot read '{}': {e}", path.display()),
        )
    })?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            ConfigError::new(
                o,
                format!("{directive}: '{}' is not PEM: {e}", path.display()),
            )
        })?;
    if certs.is_empty() {
        return Err(ConfigError::new(
            o,
            format!("{directive}: '{}' holds no PEM certificate", path.display()),
        ));
    }
    Ok(certs)
}

/// The private key of a PEM file: PKCS#1 (RSA), PKCS#8 or SEC1 (EC).
fn read_private_key(
    o: &Origin,
    path: &Path,
) -> Result<rustls::pki_types::PrivateKeyDer<'static>, ConfigError> {
    let pem = source::read(path)
        .map_err(|e| ConfigError::new(o, format!("cannot read '{}': {e}", path.display())))?;
    let text = String::from_utf8_lossy(&pem);
    if text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----")
        || text.contains("Proc-Type: 4,ENCRYPTED")
    {
        return Err(ConfigError::new(
            o,
            format!("the private key in '{}' is encrypted", path.display()),
        )
        .hint(format!(
            "wsgate does not ask for pass phrases; store it decrypted, readable only by the server: openssl pkey -in {0} -out {0}.plain",
            path.display()
        )));
    }
    match rustls_pemfile::private_key(&mut pem.as_slice()) {
        Ok(Some(key)) => Ok(key),
        Ok(None) => Err(
            ConfigError::new(o, format!("no private key in '{}'", path.display())).hint(
                "name the key's PEM file with SSLCertificateKeyFile (PKCS#1, PKCS#8 or SEC1)",
            ),
        ),
        Err(e) => Err(ConfigError::new(
            o,
            format!("'{}' is not PEM: {e}", path.display()),
        )),
    }
}

/// `SSLProtocol`: mod_ssl's words `all`, `TLSv1`, `TLSv1.1`, `TLSv1.2`,
/// `TLSv1.3` (and `SSLv3`, `SSLv2` only to remove), each optionally `+`
/// (add) or `-` (remove); a bare word replaces what came before. As with
/// OpenSSL, the versions offered are the range from the lowest to the
/// highest left. wsgate speaks TLS 1.2 and 1.3 (rustls): a list whose
/// range holds neither is an error.
fn parse_protocols(o: &Origin, args: &[String]) -> Result<TlsVersions, ConfigError> {
    // Bits from TLSv1 (0) to TLSv1.3 (3).
    const ALL: u8 = 0b1111;
    let mut set: u8 = 0;
    for word in args {
        let (action, name) = match word.as_bytes().first() {
            Some(b'+') => ('+', &word[1..]),
            Some(b'-') => ('-', &word[1..]),
            _ => (' ', word.as_str()),
        };
        let bits = match name.to_ascii_lowercase().as_str() {
            "all" => ALL,
            "sslv2" | "sslv3" if action == '-' => 0,
            "sslv2" => {
                return Err(ConfigError::new(
                    o,
                    "SSLProtocol: SSLv2 is no longer supported",
                ))
            }
            "sslv3" => {
                return Err(ConfigError::new(
                    o,
                    "SSLProtocol: SSLv3 not supported by this version of wsgate",
                )
                .hint("wsgate speaks TLSv1.2 and TLSv1.3"))
            }
            "tlsv1" => 0b0001,
            "tlsv1.1" => 0b0010,
            "tlsv1.2" => 0b0100,
            "tlsv1.3" => 0b1000,
            _ => {
                return Err(ConfigError::new(
                    o,
                    format!("SSLProtocol: Illegal protocol '{name}'"),
                )
                .hint("one of all, TLSv1.2, TLSv1.3 (and TLSv1, TLSv1.1, SSLv3 to remove them), each with + or -"))
            }
        };
        match action {
            '+' => set |= bits,
            '-' => set &= !bits,
            _ => set = bits,
        }
    }
    // The range from the lowest version left to the highest.
    let range = if set == 0 {
        0
    } else {
        let low = set.trailing_zeros();
        let high = 8 - set.leading_zeros();
        let up_to_high = ((1u16 << high) - 1) as u8;
        up_to_high & !((1u8 << low) - 1)
    };
    let versions = TlsVersions {
        tls12: range & 0b0100 != 0,
        tls13: range & 0b1000 != 0,
    };
    if !versions.tls12 && !versions.tls13 {
        return Err(ConfigError::new(
            o,
            format!(
                "SSLProtocol {} leaves no protocol wsgate speaks (No SSL protocols available)",
                args.join(" ")
            ),
        )
        .hint("wsgate speaks TLSv1.2 and TLSv1.3 (rustls); e.g. SSLProtocol all -SSLv3 -TLSv1 -TLSv1.1"));
    }
    Ok(versions)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn versions(line: &str) -> Result<(bool, bool), String> {
        let o = Origin {
            file: std::sync::Arc::new(PathBuf::from("t.conf")),
            line: 1,
        };
        let args: Vec<String> = line.split_whitespace().map(str::to_string).collect();
        parse_protocols(&o, &args)
            .map(|v| (v.tls12, v.tls13))
            .map_err(|e| e.message)
    }

    /// As Apache 2.4.71 with OpenSSL 3 reads them (checked against it).
    #[test]
    fn sslprotocol_words_as_mod_ssl_reads_them() {
        let both = Ok((true, true));
        assert_eq!(versions("all"), both);
        assert_eq!(versions("all -SSLv3 -TLSv1 -TLSv1.1"), both);
        assert_eq!(versions("-all +TLSv1.3"), Ok((false, true)));
        assert_eq!(versions("TLSv1.2"), Ok((true, false)));
        // A bare word replaces: only the last counts.
        assert_eq!(versions("TLSv1.2 TLSv1.3"), Ok((false, true)));
        assert_eq!(versions("TLSv1 +TLSv1.3"), both, "a range: 1.0 to 1.3");
        assert_eq!(versions("-all +TLSv1.1 +TLSv1.3"), both, "no gaps");
        assert_eq!(versions("all -TLSv1.2"), both, "the range still spans 1.2");
        assert_eq!(
            versions("-all +TLSv1.2 +TLSv1.3 -TLSv1.3"),
            Ok((true, false))
        );
        assert_eq!(versions("tlsv1.3"), Ok((false, true)), "any case");
        assert_eq!(
            versions("TLSv9"),
            Err("SSLProtocol: Illegal protocol 'TLSv9'".into())
        );
        assert_eq!(
            versions("SSLv2"),
            Err("SSLProtocol: SSLv2 is no longer supported".into())
        );
        assert!(versions("all -SSLv2 -SSLv3").is_ok());
        assert!(versions("-all +TLSv1.1").is_err());
        assert!(versions("-all").is_err());
    }
}

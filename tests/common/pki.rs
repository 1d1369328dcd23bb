//! A test CA made at run time, its certificates written as PEM files, and
//! the configuration of a TLS virtual host that uses one.

use std::path::PathBuf;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use rustls::pki_types::CertificateDer;

/// A test CA that signs certificates for names, written as PEM files.
pub struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
    pub dir: tempfile::TempDir,
}

/// A certificate's files, and its DER to compare with what a client got.
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub der: CertificateDer<'static>,
}

impl Ca {
    pub fn new() -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // What strict verifiers (Python 3.13's default) ask of a CA.
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params
            .distinguished_name
            .push(DnType::CommonName, "wsgate listener test CA");
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca {
            cert,
            key,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// A certificate for `name`, in `<name>.crt` and `<name>.key`
    /// (replacing earlier files of that name).
    pub fn issue(&self, name: &str) -> Issued {
        let mut params = CertificateParams::new(vec![name.to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        let issued = Issued {
            cert: self.dir.path().join(format!("{name}.crt")),
            key: self.dir.path().join(format!("{name}.key")),
            der: cert.der().clone(),
        };
        std::fs::write(&issued.cert, cert.pem()).unwrap();
        std::fs::write(&issued.key, key.serialize_pem()).unwrap();
        issued
    }

    /// The CA's certificate as a PEM file (for clients outside Rust).
    pub fn ca_pem_file(&self) -> PathBuf {
        let path = self.dir.path().join("ca.pem");
        std::fs::write(&path, self.cert.pem()).unwrap();
        path
    }

    /// The CA's private key as a PEM file (to sign with `openssl`).
    pub fn key_pem_file(&self) -> PathBuf {
        let path = self.dir.path().join("ca.key");
        std::fs::write(&path, self.key.serialize_pem()).unwrap();
        path
    }

    pub fn roots(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.cert.der().clone()).unwrap();
        roots
    }
}

/// A `<VirtualHost *>` with TLS for `name`.
pub fn tls_vhost(name: &str, issued: &Issued, more: &str) -> String {
    format!(
        "<VirtualHost *>\nServerName {name}\nSSLEngine on\nSSLCertificateFile {}\nSSLCertificateKeyFile {}\n{more}</VirtualHost>\n",
        issued.cert.display(),
        issued.key.display()
    )
}

//! Certificates and configurations for the TLS tests, made with rcgen at
//! run time: a test CA, a server certificate for `localhost` and
//! 127.0.0.1 signed by it, and PEM files of both for external peers
//! (openssl, Python, curl).
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use evloop::net::tls::{self, pki_types};
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};

/// A CA and a server certificate it signed.
pub struct TestPki {
    pub ca_der: pki_types::CertificateDer<'static>,
    pub ca_pem: String,
    pub cert_der: pki_types::CertificateDer<'static>,
    pub cert_pem: String,
    pub key_der: Vec<u8>,
    pub key_pem: String,
}

impl TestPki {
    /// A fresh CA and a server certificate for `names`.
    pub fn new(names: &[&str]) -> TestPki {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // A name of its own: two test CAs must not look like one issuer.
        static SERIAL: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("evloop test CA {} {n}", std::process::id());
        ca_params.distinguished_name.push(rcgen::DnType::CommonName, name);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let params = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
        TestPki {
            ca_der: ca.der().clone(),
            ca_pem: ca.pem(),
            cert_der: cert.der().clone(),
            cert_pem: cert.pem(),
            key_der: key.serialize_der(),
            key_pem: key.serialize_pem(),
        }
    }

    /// The usual one: `localhost` and 127.0.0.1.
    pub fn localhost() -> TestPki {
        TestPki::new(&["localhost", "127.0.0.1"])
    }

    pub fn server_config(&self) -> Arc<tls::rustls::ServerConfig> {
        tls::server_config(vec![self.cert_der.clone()], self.key()).unwrap()
    }

    pub fn server_config_alpn(&self, alpn: &[&[u8]]) -> Arc<tls::rustls::ServerConfig> {
        let mut config = (*self.server_config()).clone();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }

    pub fn key(&self) -> pki_types::PrivateKeyDer<'static> {
        pki_types::PrivateKeyDer::Pkcs8(self.key_der.clone().into())
    }

    /// A client that trusts this CA only.
    pub fn client_config(&self) -> Arc<tls::rustls::ClientConfig> {
        tls::client_config_with_roots([self.ca_der.clone()]).unwrap()
    }

    pub fn client_config_alpn(&self, alpn: &[&[u8]]) -> Arc<tls::rustls::ClientConfig> {
        let mut config = (*self.client_config()).clone();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }

    /// Writes `ca.pem`, `cert.pem` and `key.pem` into `dir`.
    pub fn write_pem(&self, dir: &std::path::Path) -> (PathBuf, PathBuf, PathBuf) {
        let ca = dir.join("ca.pem");
        let cert = dir.join("cert.pem");
        let key = dir.join("key.pem");
        std::fs::write(&ca, &self.ca_pem).unwrap();
        std::fs::write(&cert, &self.cert_pem).unwrap();
        std::fs::write(&key, &self.key_pem).unwrap();
        (ca, cert, key)
    }
}

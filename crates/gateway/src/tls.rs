//! TLS termination with rustls (ring provider), ALPN `h2` and `http/1.1`.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsSettings;
use crate::error::{Error, Result};

/// Builds the acceptor from the certificate and key files.
pub fn acceptor(settings: &TlsSettings) -> Result<tokio_rustls::TlsAcceptor> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&settings.cert_file)
        .and_then(|certs| certs.collect::<Result<_, _>>())
        .map_err(|err| Error::TlsFile {
            what: "certificate",
            path: settings.cert_file.clone(),
            reason: err.to_string(),
        })?;
    if certs.is_empty() {
        return Err(Error::TlsFile {
            what: "certificate",
            path: settings.cert_file.clone(),
            reason: "no certificate found in the file".to_owned(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(&settings.key_file).map_err(|err| Error::TlsFile {
        what: "private key",
        path: settings.key_file.clone(),
        reason: err.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

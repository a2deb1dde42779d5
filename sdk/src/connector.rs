//! The HTTP(S) connector: plain HTTP for `http://` endpoints, rustls for `https://`, trusting
//! the system's roots plus any CA the caller adds (a private CA such as `framelog cert --dev`'s).

use std::path::Path;
use std::sync::Arc;

use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;

use crate::error::{Error, Result};

/// Reads every certificate of a PEM file.
pub fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let invalid = |e: rustls_pki_types::pem::Error| Error::InvalidInput(format!("CA file {}: {e}", path.display()));
    let certificates: Vec<_> =
        CertificateDer::pem_file_iter(path).map_err(invalid)?.collect::<Result<_, _>>().map_err(invalid)?;
    if certificates.is_empty() {
        return Err(Error::InvalidInput(format!("CA file {} holds no certificate", path.display())));
    }
    // Checked here, where the caller can be told, so building the connector cannot fail later.
    let mut check = rustls::RootCertStore::empty();
    for certificate in &certificates {
        check.add(certificate.clone()).map_err(|e| Error::InvalidInput(format!("CA file {}: {e}", path.display())))?;
    }
    Ok(certificates)
}

pub(crate) fn connector(extra_roots: &[CertificateDer<'static>]) -> HttpsConnector<HttpConnector> {
    let mut roots = rustls::RootCertStore::empty();
    // A machine without system roots can still reach a server whose CA it was given.
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    roots.add_parsable_certificates(extra_roots.iter().cloned());
    // ring, as the server uses: no aws-lc C build (docs/decisions.md).
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(rustls::DEFAULT_VERSIONS)
        .unwrap_or_else(|_| unreachable!("ring supports TLS 1.2 and 1.3"))
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    // The builder's default would refuse http:// URLs; both are allowed, the endpoint decides.
    http.enforce_http(false);
    HttpsConnectorBuilder::new().with_tls_config(tls).https_or_http().enable_http1().wrap_connector(http)
}

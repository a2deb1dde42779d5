//! Whom `https://` destinations must prove they are: the system's roots, plus a CA file the
//! configuration names (`[consumers] ca_file`, for destinations with a private CA). Built once;
//! every call shares it.

use std::path::Path;
use std::sync::Arc;

use rustls::ClientConfig;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;

#[derive(Clone)]
pub struct OutboundTrust(Arc<ClientConfig>);

impl std::fmt::Debug for OutboundTrust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OutboundTrust(..)")
    }
}

/// Two trusts are the same when they are the same configuration (they are built once).
impl PartialEq for OutboundTrust {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for OutboundTrust {}

impl Default for OutboundTrust {
    /// The system's roots only.
    fn default() -> Self {
        OutboundTrust::with_extra(Vec::new())
    }
}

impl OutboundTrust {
    /// The system's roots and every certificate of `ca_file` (PEM); the error says what is wrong.
    pub fn with_ca_file(ca_file: &Path) -> Result<Self, String> {
        let read = |e: rustls_pki_types::pem::Error| format!("{}: {e}", ca_file.display());
        let extra: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(ca_file).map_err(read)?.collect::<Result<_, _>>().map_err(read)?;
        if extra.is_empty() {
            return Err(format!("{} holds no certificate", ca_file.display()));
        }
        Ok(OutboundTrust::with_extra(extra))
    }

    pub fn with_extra(extra: Vec<CertificateDer<'static>>) -> Self {
        let mut roots = rustls::RootCertStore::empty();
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        roots.add_parsable_certificates(extra);
        // ring, as everywhere in the project (docs/decisions.md).
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(rustls::DEFAULT_VERSIONS)
            .unwrap_or_else(|_| unreachable!("ring supports TLS 1.2 and 1.3"))
            .with_root_certificates(roots)
            .with_no_client_auth();
        OutboundTrust(Arc::new(config))
    }

    pub fn connector(&self) -> tokio_rustls::TlsConnector {
        tokio_rustls::TlsConnector::from(self.0.clone())
    }
}

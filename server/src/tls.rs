//! TLS for the HTTP listener (https/wss) and for `--tcp-tls` listeners, with
//! rustls (no OpenSSL). The certificate sits behind a resolver that reads it
//! per handshake, so SIGHUP can swap in a new pair without touching open
//! connections; a bad new pair is refused and the old one stays.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::crypto::{ring, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use sha2::{Digest, Sha256};
use tokio_rustls::TlsAcceptor;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {0}: {1}")]
    Read(PathBuf, rustls::pki_types::pem::Error),
    #[error("{0} holds no certificate")]
    NoCertificate(PathBuf),
    #[error("the key in {key} does not fit the certificate in {cert}: {error}")]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        error: rustls::Error,
    },
    #[error("cannot generate a self-signed certificate: {0}")]
    SelfSigned(#[from] rcgen::Error),
    #[error("TLS setup failed: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Where the certificate comes from.
#[derive(Debug, Clone)]
pub enum CertSource {
    Files {
        cert: PathBuf,
        key: PathBuf,
    },
    /// Generated at start-up for these names; nothing to reload.
    SelfSigned(Vec<String>),
}

/// The current certificate, swapped whole on reload.
#[derive(Debug)]
struct CurrentCert(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for CurrentCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // A poisoned lock only means a reload panicked; the stored key is still whole.
        let guard = self.0.read().unwrap_or_else(|e| e.into_inner());
        Some(guard.clone())
    }
}

/// TLS acceptors sharing one reloadable certificate.
pub struct Tls {
    source: CertSource,
    current: Arc<CurrentCert>,
    /// For `--tcp-tls`: no ALPN, the timestamp protocol is not negotiated.
    pub tcp: TlsAcceptor,
    /// For the HTTP listener: ALPN `http/1.1` (WebSockets upgrade over HTTP/1.1).
    pub http: TlsAcceptor,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

impl Tls {
    pub fn new(source: CertSource) -> Result<Tls, TlsError> {
        let key = load(&source)?;
        let current = Arc::new(CurrentCert(RwLock::new(Arc::new(key))));
        let config = |alpn: &[&[u8]]| -> Result<TlsAcceptor, TlsError> {
            // rustls' safe defaults: TLS 1.2 and 1.3 with its default suites only.
            let mut c = ServerConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()?
                .with_no_client_auth()
                .with_cert_resolver(current.clone());
            c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
            Ok(TlsAcceptor::from(Arc::new(c)))
        };
        Ok(Tls {
            tcp: config(&[])?,
            http: config(&[b"http/1.1"])?,
            source,
            current,
        })
    }

    /// Loads the certificate and key again; on error the old pair stays in use.
    pub fn reload(&self) -> Result<(), TlsError> {
        let key = load(&self.source)?;
        *self.current.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(key);
        Ok(())
    }

    pub fn is_reloadable(&self) -> bool {
        matches!(self.source, CertSource::Files { .. })
    }

    /// The DNS names the leaf certificate is for.
    pub fn dns_names(&self) -> Vec<String> {
        let key = self
            .current
            .0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let Some(leaf) = key.cert.first() else {
            return Vec::new();
        };
        webpki::EndEntityCert::try_from(leaf)
            .map(|cert| cert.valid_dns_names().map(str::to_owned).collect())
            .unwrap_or_default()
    }

    /// SHA-256 of the leaf certificate, as browsers and `openssl x509 -fingerprint` show it.
    pub fn fingerprint(&self) -> String {
        let key = self
            .current
            .0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        key.cert.first().map(|c| fingerprint(c)).unwrap_or_default()
    }
}

fn fingerprint(cert: &CertificateDer<'_>) -> String {
    let digest = Sha256::digest(cert.as_ref());
    let mut s = String::with_capacity(95);
    for (i, b) in digest.iter().enumerate() {
        if i > 0 {
            s.push(':');
        }
        let _ = write!(s, "{b:02X}");
    }
    s
}

fn load(source: &CertSource) -> Result<CertifiedKey, TlsError> {
    match source {
        CertSource::Files { cert, key } => load_files(cert, key),
        CertSource::SelfSigned(names) => {
            let generated = rcgen::generate_simple_self_signed(names.clone())?;
            let der = PrivateKeyDer::try_from(generated.signing_key.serialize_der())
                .map_err(|e| rustls::Error::General(e.to_owned()))?;
            Ok(CertifiedKey::from_der(
                vec![generated.cert.der().clone()],
                der,
                &provider(),
            )?)
        }
    }
}

fn load_files(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Read(cert.to_owned(), e))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(cert.to_owned()));
    }
    let private =
        PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Read(key.to_owned(), e))?;
    CertifiedKey::from_der(chain, private, &provider()).map_err(|error| TlsError::Mismatch {
        cert: cert.to_owned(),
        key: key.to_owned(),
        error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let g = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let cert = dir.join(format!("{name}.crt"));
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&cert, g.cert.pem()).unwrap();
        std::fs::write(&key, g.signing_key.serialize_pem()).unwrap();
        (cert, key)
    }

    fn temp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("timecho-tls-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn reload_swaps_a_good_pair_and_keeps_the_old_one_on_a_bad_pair() {
        let dir = temp_dir("reload");
        let (cert, key) = write_pair(&dir, "a");
        let tls = Tls::new(CertSource::Files {
            cert: cert.clone(),
            key: key.clone(),
        })
        .unwrap();
        let first = tls.fingerprint();
        let (cert_b, key_b) = write_pair(&dir, "b");
        std::fs::copy(&cert_b, &cert).unwrap();
        std::fs::copy(&key_b, &key).unwrap();
        tls.reload().unwrap();
        let second = tls.fingerprint();
        assert_ne!(first, second);
        // A certificate whose key is another one's: refused, the current pair stays.
        let (cert_c, _) = write_pair(&dir, "c");
        std::fs::copy(&cert_c, &cert).unwrap();
        assert!(matches!(tls.reload(), Err(TlsError::Mismatch { .. })));
        assert_eq!(tls.fingerprint(), second);
    }

    #[test]
    fn self_signed_has_a_fingerprint() {
        let tls = Tls::new(CertSource::SelfSigned(vec!["localhost".into()])).unwrap();
        assert_eq!(tls.fingerprint().len(), 95);
        assert!(!tls.is_reloadable());
    }
}

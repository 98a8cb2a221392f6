//! Which server certificates a client believes: those that chain to a CA it
//! trusts (`--ca FILE`, or the system's roots), a certificate named in
//! `--ca` itself (the usual `openssl req -x509` self-signed one, which is its
//! own trust anchor), or one whose SHA-256 fingerprint is pinned with
//! `--pin sha256:HEX` (the fingerprint `timecho serve --tls-self-signed`
//! prints). A pinned or named certificate is trusted as the server's own, as
//! ssh trusts a known host key: its names and its issuer are not checked.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, Error, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};

/// Verifies as the module says.
#[derive(Debug)]
pub struct Trust {
    /// SHA-256 of the certificates trusted as they are.
    known: Vec<[u8; 32]>,
    /// Chains to trusted CAs; `None` when only known certificates count.
    chains: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
}

impl Trust {
    pub fn new(
        roots: RootCertStore,
        known: Vec<[u8; 32]>,
        pinned_only: bool,
        provider: Arc<CryptoProvider>,
    ) -> Result<Trust, Error> {
        let chains = match pinned_only || roots.is_empty() {
            true => None,
            false => Some(
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| Error::General(e.to_string()))?,
            ),
        };
        Ok(Trust {
            known,
            chains,
            provider,
        })
    }
}

pub fn fingerprint(cert: &CertificateDer<'_>) -> [u8; 32] {
    Sha256::digest(cert.as_ref()).into()
}

impl ServerCertVerifier for Trust {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        if self.known.contains(&fingerprint(end_entity)) {
            return Ok(ServerCertVerified::assertion());
        }
        match &self.chains {
            Some(chains) => {
                chains.verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
            }
            None => Err(Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            )),
        }
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

/// What to do when the server's certificate is not believed, in plain words.
pub fn explain(e: &Error, target: &str, pinned: bool) -> String {
    let advice = "give --ca FILE with the CA that signed it (or the certificate itself), \
                  or --pin sha256:FINGERPRINT with the fingerprint the server prints";
    match e {
        Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure) if pinned => {
            format!("{target}'s certificate is not the one pinned (its fingerprint differs): is it the server you meant?")
        }
        Error::InvalidCertificate(CertificateError::UnknownIssuer)
        | Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure) => {
            format!("{target}'s certificate is not signed by a CA this machine trusts: {advice}")
        }
        Error::InvalidCertificate(CertificateError::NotValidForName) => {
            format!("{target}'s certificate is for another name: connect by a name it carries, or {advice}")
        }
        Error::InvalidCertificate(CertificateError::Expired) => {
            format!("{target}'s certificate has expired (or this machine's clock is wrong)")
        }
        Error::InvalidCertificate(_) => {
            format!("{target}'s certificate is not valid: {advice}")
        }
        other => format!("TLS handshake with {target} failed: {other}"),
    }
}

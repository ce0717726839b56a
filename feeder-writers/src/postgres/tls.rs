//! TLS for the `postgres` writer: rustls behind tokio-postgres's `MakeTlsConnect`, with the
//! certificate checks that each `sslmode` asks for.
//!
//! - [`Verify::Full`]: the chain up to a trusted root, and the host name (`verify-full`).
//! - [`Verify::Chain`]: the chain only (`verify-ca`, and `require`/`prefer` given a root
//!   certificate, as libpq does).
//! - [`Verify::Nothing`]: any certificate (`require` and `prefer` without one, which the user
//!   has to write out). The handshake's signatures are still checked, so the server holds the
//!   key of the certificate it shows; what is not known is whose certificate it is.

use std::fmt;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_cert_signed_by_trust_anchor, WebPkiServerVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};
use tokio_postgres::Socket;

/// What is checked of the server's certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Verify {
    /// Nothing: the user asked for encryption only.
    Nothing,
    /// The chain up to a trusted root, not the name.
    Chain,
    /// The chain and the host name.
    Full,
}

/// Where the trusted roots come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Roots {
    /// The Mozilla roots compiled in (webpki-roots): the default.
    Webpki,
    /// The operating system's store (`sslrootcert=system`).
    System,
    /// The PEM certificates of a file (`sslrootcert=/path`).
    File(PathBuf),
}

/// The TLS side of a connection, from the options, before any file is read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct TlsSettings {
    /// What is checked of the server's certificate.
    pub verify: Verify,
    /// The trusted roots, for [`Verify::Chain`] and [`Verify::Full`].
    pub roots: Roots,
    /// A client certificate chain and its key (PEM files), shown when the server asks.
    pub client: Option<(PathBuf, PathBuf)>,
}

/// Why the TLS set-up could not be built: a file that cannot be read or holds nothing
/// usable. The message names the option and the file.
#[derive(Debug, thiserror::Error)]
pub(super) enum TlsSetupError {
    /// A file could not be read or parsed.
    #[error("{key} {}: {what}", .path.display())]
    File {
        key: &'static str,
        path: PathBuf,
        what: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A file was read but holds no certificate (or key) of use.
    #[error("{key} {}: {what}", .path.display())]
    Empty {
        key: &'static str,
        path: PathBuf,
        what: &'static str,
    },
    /// The system's store gave no certificate.
    #[error("sslrootcert=system: the system's certificate store holds no usable certificate")]
    NoSystemRoots,
    /// rustls refused the settings (a key that does not match its certificate, ...).
    #[error("the TLS settings were refused")]
    Rustls(#[source] rustls::Error),
}

/// A tokio-postgres TLS connector on rustls, cheap to clone (the settings are shared).
#[derive(Clone)]
pub(super) struct MakeRustlsConnect {
    config: Arc<ClientConfig>,
}

impl fmt::Debug for MakeRustlsConnect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MakeRustlsConnect").finish_non_exhaustive()
    }
}

impl MakeRustlsConnect {
    /// Reads the files the settings name and builds the rustls client.
    pub(super) fn new(settings: &TlsSettings) -> Result<Self, TlsSetupError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(TlsSetupError::Rustls)?;
        let verifier: Arc<dyn ServerCertVerifier> = match settings.verify {
            Verify::Nothing => Arc::new(WithoutName {
                roots: None,
                provider: Arc::clone(&provider),
            }),
            Verify::Chain => Arc::new(WithoutName {
                roots: Some(Arc::new(roots(&settings.roots)?)),
                provider: Arc::clone(&provider),
            }),
            Verify::Full => WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots(&settings.roots)?),
                Arc::clone(&provider),
            )
            .build()
            .map_err(|e| TlsSetupError::Rustls(rustls::Error::General(e.to_string())))?,
        };
        let builder = builder
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let mut config = match &settings.client {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let chain = certificates("sslcert", cert)?;
                let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsSetupError::File {
                    key: "sslkey",
                    path: key.clone(),
                    what: "no private key can be read from it",
                    source: Box::new(e),
                })?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(TlsSetupError::Rustls)?
            }
        };
        // Servers from PostgreSQL 17 on check it when the client opens with TLS directly
        // (`sslnegotiation=direct`); older ones ignore it.
        config.alpn_protocols = vec![b"postgresql".to_vec()];
        Ok(Self {
            config: Arc::new(config),
        })
    }
}

/// The trusted roots the settings name.
fn roots(roots: &Roots) -> Result<RootCertStore, TlsSetupError> {
    let mut store = RootCertStore::empty();
    match roots {
        Roots::Webpki => store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        Roots::System => {
            // Unreadable entries of the store are skipped, as browsers do; an empty result
            // is an error rather than a client that trusts nothing.
            let found = rustls_native_certs::load_native_certs();
            store.add_parsable_certificates(found.certs);
            if store.is_empty() {
                return Err(TlsSetupError::NoSystemRoots);
            }
        }
        Roots::File(path) => {
            let (added, _ignored) =
                store.add_parsable_certificates(certificates("sslrootcert", path)?);
            if added == 0 {
                return Err(TlsSetupError::Empty {
                    key: "sslrootcert",
                    path: path.clone(),
                    what: "no certificate in it is a usable CA certificate",
                });
            }
        }
    }
    Ok(store)
}

/// Every PEM certificate of a file; at least one.
fn certificates(
    key: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let file_error = |e: rustls::pki_types::pem::Error| TlsSetupError::File {
        key,
        path: path.to_owned(),
        what: "cannot be read as PEM certificates",
        source: Box::new(e),
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(file_error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(file_error)?;
    if certs.is_empty() {
        return Err(TlsSetupError::Empty {
            key,
            path: path.to_owned(),
            what: "holds no PEM certificate",
        });
    }
    Ok(certs)
}

/// The modes that do not check the host name. With roots (`verify-ca`) the chain must lead
/// to one of them; without (`require` and `prefer` with no root certificate, as the user
/// asked) any certificate is taken. Either way the handshake must be signed by the
/// certificate's key.
#[derive(Debug)]
struct WithoutName {
    roots: Option<Arc<RootCertStore>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for WithoutName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(roots) = &self.roots {
            let cert = ParsedCertificate::try_from(end_entity)?;
            verify_server_cert_signed_by_trust_anchor(
                &cert,
                roots,
                intermediates,
                now,
                self.provider.signature_verification_algorithms.all,
            )?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
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
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
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

impl MakeTlsConnect<Socket> for MakeRustlsConnect {
    type Stream = RustlsStream;
    type TlsConnect = RustlsConnect;
    type Error = rustls::pki_types::InvalidDnsNameError;

    /// `domain` is the connection's `host` (also when `hostaddr` says where to connect): the
    /// name the certificate must carry under `verify-full`. An IP address is checked against
    /// the certificate's IP addresses. It is empty for a Unix socket, where the server never
    /// offers TLS: `prefer` then goes on in plain text and the other modes fail.
    fn make_tls_connect(&mut self, domain: &str) -> Result<RustlsConnect, Self::Error> {
        let name = if domain.is_empty() {
            None
        } else {
            Some(ServerName::try_from(domain)?.to_owned())
        };
        Ok(RustlsConnect {
            config: Arc::clone(&self.config),
            name,
        })
    }
}

/// One TLS handshake to come, for one host.
pub(super) struct RustlsConnect {
    config: Arc<ClientConfig>,
    /// `None` when there is no host name to check (a Unix socket).
    name: Option<ServerName<'static>>,
}

impl TlsConnect<Socket> for RustlsConnect {
    type Stream = RustlsStream;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream>> + Send>>;

    fn connect(self, stream: Socket) -> Self::Future {
        Box::pin(async move {
            let name = self.name.ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "TLS needs the server's host name",
                )
            })?;
            let stream = tokio_rustls::TlsConnector::from(self.config)
                .connect(name, stream)
                .await?;
            Ok(RustlsStream(stream))
        })
    }
}

/// A connection after its TLS handshake.
pub(super) struct RustlsStream(tokio_rustls::client::TlsStream<Socket>);

impl AsyncRead for RustlsStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for RustlsStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}

impl TlsStream for RustlsStream {
    /// `tls-server-end-point` (RFC 5929): the hash of the server's certificate, which SCRAM
    /// authentication binds to so that a relay in the middle is found out. None when the
    /// certificate's signature algorithm has no single hash PostgreSQL would use.
    fn channel_binding(&self) -> ChannelBinding {
        let (_, session) = self.0.get_ref();
        session
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|cert| end_point_hash(cert))
            .map_or_else(ChannelBinding::none, ChannelBinding::tls_server_end_point)
    }
}

/// The hash of a DER certificate for `tls-server-end-point`: the hash of its signature
/// algorithm, SHA-256 for MD5 and SHA-1 (RFC 5929, section 4.1).
fn end_point_hash(cert: &[u8]) -> Option<Vec<u8>> {
    let algorithm = match signature_algorithm(cert)? {
        // sha256WithRSAEncryption, ecdsa-with-SHA256, and the MD5 and SHA-1 ones.
        [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b | 0x04 | 0x05]
        | [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]
        | [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x01] => &ring::digest::SHA256,
        // sha384WithRSAEncryption, ecdsa-with-SHA384.
        [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c]
        | [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03] => &ring::digest::SHA384,
        // sha512WithRSAEncryption, ecdsa-with-SHA512.
        [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d]
        | [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04] => &ring::digest::SHA512,
        // RSASSA-PSS (hash in its parameters), Ed25519 and others: no binding; the server
        // then gets plain SCRAM.
        _ => return None,
    };
    Some(ring::digest::digest(algorithm, cert).as_ref().to_vec())
}

/// The object identifier (its DER content) of a certificate's outer `signatureAlgorithm`:
/// `Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue }`.
fn signature_algorithm(cert: &[u8]) -> Option<&[u8]> {
    let (certificate, _) = der(cert, 0x30)?;
    let (_tbs, rest) = der(certificate, 0x30)?;
    let (algorithm, _) = der(rest, 0x30)?;
    let (oid, _) = der(algorithm, 0x06)?;
    Some(oid)
}

/// One DER element of tag `tag` at the start of `input`: its content and what follows it.
fn der(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&first, rest) = input.split_first()?;
    if first != tag {
        return None;
    }
    let (&len, mut rest) = rest.split_first()?;
    let len = if len < 0x80 {
        usize::from(len)
    } else {
        let n = usize::from(len & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (bytes, after) = rest.split_at(n);
        rest = after;
        bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
    };
    (rest.len() >= len).then(|| rest.split_at(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A certificate's outline with only the parts the hash choice reads.
    fn outline(oid: &[u8]) -> Vec<u8> {
        let mut algorithm = vec![0x06, oid.len() as u8];
        algorithm.extend_from_slice(oid);
        let mut body = vec![0x30, 0x00, 0x30, algorithm.len() as u8];
        body.extend_from_slice(&algorithm);
        body.extend_from_slice(&[0x03, 0x01, 0x00]);
        let mut cert = vec![0x30, 0x81, body.len() as u8];
        cert.extend_from_slice(&body);
        cert
    }

    #[test]
    fn the_end_point_hash_follows_the_signature_algorithm() {
        let ecdsa_sha256 = [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
        let rsa_sha1 = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x05];
        let ecdsa_sha384 = [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03];
        let rsa_sha512 = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d];
        let ed25519 = [0x2b, 0x65, 0x70];
        for (oid, len) in [
            (&ecdsa_sha256[..], Some(32)),
            (&rsa_sha1[..], Some(32)),
            (&ecdsa_sha384[..], Some(48)),
            (&rsa_sha512[..], Some(64)),
            (&ed25519[..], None),
        ] {
            let cert = outline(oid);
            assert_eq!(signature_algorithm(&cert), Some(oid));
            assert_eq!(end_point_hash(&cert).map(|h| h.len()), len, "{oid:x?}");
        }
        let cert = outline(&ecdsa_sha256);
        assert_eq!(
            end_point_hash(&cert).unwrap(),
            ring::digest::digest(&ring::digest::SHA256, &cert).as_ref()
        );
    }

    #[test]
    fn malformed_certificates_give_no_binding_rather_than_a_panic() {
        let good = outline(&[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]);
        for cut in 0..good.len() {
            assert_eq!(end_point_hash(&good[..cut]), None, "cut at {cut}");
        }
        assert_eq!(end_point_hash(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(end_point_hash(&[0x30, 0x80]), None);
    }

    #[test]
    fn missing_and_empty_files_name_their_option_and_path() {
        let dir = std::env::temp_dir().join(format!("pg-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let missing = dir.join("missing.pem");
        let settings = |roots| TlsSettings {
            verify: Verify::Full,
            roots,
            client: None,
        };
        for (path, want) in [(&missing, "cannot be read"), (&empty, "holds no PEM")] {
            let err = MakeRustlsConnect::new(&settings(Roots::File(path.clone()))).unwrap_err();
            let shown = err.to_string();
            assert!(shown.starts_with("sslrootcert "), "{shown}");
            assert!(shown.contains(&*path.to_string_lossy()), "{shown}");
            assert!(shown.contains(want), "{shown}");
        }
        // The compiled-in roots need no file.
        assert!(MakeRustlsConnect::new(&settings(Roots::Webpki)).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

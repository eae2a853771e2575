//! The listener: TLS (rustls, ALPN h2 and http/1.1, optional client certificates verified
//! against the client CA), HTTP/1.1 and HTTP/2 through hyper-util's auto connection builder,
//! and a panic guard that turns a handler panic into a 500 Status instead of a dropped
//! connection.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use futures::FutureExt;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::RootCertStore;
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, warn};

use crate::authn;
use crate::endpoints::{self, ApiServer, status_error::ApiError};

/// A certificate chain and its key from PEM files.
pub fn read_identity(
    cert_file: &Path,
    key_file: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
        .with_context(|| format!("reading {}", cert_file.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing {}", cert_file.display()))?;
    let key = PrivateKeyDer::from_pem_file(key_file)
        .with_context(|| format!("reading {}", key_file.display()))?;
    Ok((certs, key))
}

/// The CA certificates of a PEM bundle.
pub fn read_roots(ca_file: &Path) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(ca_file)
        .with_context(|| format!("reading {}", ca_file.display()))?
    {
        roots.add(ca?)?;
    }
    Ok(roots)
}

/// Builds the TLS configuration from PEM files.
pub fn tls_config(
    cert_file: &Path,
    key_file: &Path,
    client_ca_file: &Path,
) -> Result<ServerConfig> {
    let (certs, key) = read_identity(cert_file, key_file)?;
    let roots = read_roots(client_ca_file)?;
    let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
        .allow_unauthenticated()
        .build()
        .context("building the client certificate verifier")?;
    let mut config = ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .context("loading the serving certificate")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Accepts connections until the task is dropped.
pub async fn serve(listener: TcpListener, tls: ServerConfig, server: Arc<ApiServer>) -> Result<()> {
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(err) => {
                warn!(error = %err, "accept failed");
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let server = server.clone();
        tokio::spawn(async move {
            if let Err(err) = serve_connection(acceptor, tcp, peer, server).await {
                debug!(%peer, error = %err, "connection ended with an error");
            }
        });
    }
}

async fn serve_connection(
    acceptor: TlsAcceptor,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    server: Arc<ApiServer>,
) -> Result<()> {
    let tls = acceptor.accept(tcp).await.context("TLS handshake")?;
    let user = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(authn::from_client_certificate);
    debug!(%peer, user = ?user.as_ref().map(|u| &u.name), "connection");
    let service = service_fn(move |req| {
        let server = server.clone();
        let user = user.clone();
        async move { Ok::<_, std::convert::Infallible>(respond(server, req, user).await) }
    });
    hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
        .serve_connection_with_upgrades(TokioIo::new(tls), service)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// Handles one request; a panic in a handler becomes a 500 Status instead of a dropped
/// connection.
pub async fn respond<B>(
    server: Arc<ApiServer>,
    req: http::Request<B>,
    user: Option<authn::UserInfo>,
) -> http::Response<endpoints::Body>
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    std::panic::AssertUnwindSafe(endpoints::handle(server, req, user))
        .catch_unwind()
        .await
        .unwrap_or_else(|_| {
            endpoints::error_response(&ApiError::internal(
                "the server panicked while handling the request",
            ))
        })
}

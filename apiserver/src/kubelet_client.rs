//! Connections to a node's streaming server (the kubelet API the node agent serves): where a
//! node is reached (its Node's `status.addresses` and `daemonEndpoints.kubeletEndpoint.Port`)
//! and the mutual TLS it is reached over — the apiserver's kubelet-client certificate, and the
//! node's serving certificate checked against `--kubelet-certificate-authority`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// The kubelet's default port, used when a Node does not say.
pub const DEFAULT_KUBELET_PORT: u16 = 10250;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Dials nodes.
#[derive(Clone)]
pub struct KubeletClient {
    tls: TlsConnector,
}

impl std::fmt::Debug for KubeletClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KubeletClient")
    }
}

/// Where a node's streaming server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeAddress {
    pub host: String,
    pub port: u16,
}

impl NodeAddress {
    /// The address of a Node object: InternalIP first, then ExternalIP, then Hostname.
    pub fn of(node: &Value) -> Option<NodeAddress> {
        let addresses = node["status"]["addresses"].as_array()?;
        let host = ["InternalIP", "ExternalIP", "Hostname"]
            .iter()
            .find_map(|kind| {
                addresses
                    .iter()
                    .find(|a| a["type"] == *kind)
                    .and_then(|a| a["address"].as_str())
                    .filter(|a| !a.is_empty())
            })?
            .to_owned();
        let port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p != 0)
            .unwrap_or(DEFAULT_KUBELET_PORT);
        Some(NodeAddress { host, port })
    }
}

impl KubeletClient {
    /// A client presenting `cert_file`/`key_file` and trusting nodes signed by `ca_file`.
    pub fn new(cert_file: &Path, key_file: &Path, ca_file: &Path) -> Result<KubeletClient> {
        let (certs, key) = crate::serve::read_identity(cert_file, key_file)?;
        let roots = crate::serve::read_roots(ca_file)?;
        let mut config = ClientConfig::builder()
            .with_root_certificates(roots)
            .with_client_auth_cert(certs, key)
            .context("loading the kubelet client certificate")?;
        // Upgraded streams (exec, attach, port-forward) need HTTP/1.1.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(KubeletClient {
            tls: TlsConnector::from(Arc::new(config)),
        })
    }

    /// An open TLS connection to the node.
    pub async fn connect(&self, node: &NodeAddress) -> std::io::Result<TlsStream<TcpStream>> {
        let tcp = tokio::time::timeout(
            CONNECT_TIMEOUT,
            TcpStream::connect((node.host.as_str(), node.port)),
        )
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
        tcp.set_nodelay(true)?;
        let name = ServerName::try_from(node.host.clone())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        self.tls.connect(name, tcp).await
    }
}

impl KubeletClient {
    /// `GET path` on the node's streaming server: the body of a 200 answer.
    pub async fn get(&self, node: &NodeAddress, path: &str) -> Result<bytes::Bytes> {
        use http_body_util::BodyExt;
        let request = async {
            let tls = self.connect(node).await?;
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls)).await?;
            tokio::spawn(connection);
            let req = http::Request::builder()
                .uri(path)
                .header(http::header::HOST, format!("{}:{}", node.host, node.port))
                .body(http_body_util::Empty::<bytes::Bytes>::new())?;
            let resp = sender.send_request(req).await?;
            let status = resp.status();
            let body = resp.into_body().collect().await?.to_bytes();
            anyhow::ensure!(status.is_success(), "the node answered {status}");
            anyhow::Ok(body)
        };
        tokio::time::timeout(Duration::from_secs(15), request)
            .await
            .map_err(|_| anyhow::anyhow!("the node did not answer in time"))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn node_addresses_prefer_internal_ip_and_the_advertised_port() {
        let node = json!({"status": {
            "addresses": [{"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "10.0.0.5"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10333}}}});
        assert_eq!(
            NodeAddress::of(&node),
            Some(NodeAddress {
                host: "10.0.0.5".into(),
                port: 10333
            })
        );
        let bare = json!({"status": {"addresses": [{"type": "Hostname", "address": "n1"}]}});
        assert_eq!(NodeAddress::of(&bare).unwrap().port, DEFAULT_KUBELET_PORT);
        assert_eq!(NodeAddress::of(&json!({})), None);
    }
}

//! The cluster PKI: a CA, serving certificates with the right SANs, client certificates
//! (CN = user, O = groups) and kubeconfig files, all made with rcgen.
//!
//! Material lives in one directory (the apiserver's data dir); anything already there is
//! reused and never overwritten. Private keys and kubeconfigs are written with mode 0600.
//! This crate knows nothing about the apiserver; the apiserver, compat-tests and the `certs`
//! command use it.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

/// File names inside the PKI directory.
pub const CA_CERT: &str = "ca.crt";
pub const CA_KEY: &str = "ca.key";
/// The key service-account tokens are signed with (ECDSA P-256, PKCS#8 PEM).
pub const SERVICE_ACCOUNT_KEY: &str = "sa.key";

const CA_VALIDITY: Duration = Duration::days(3650);
const LEAF_VALIDITY: Duration = Duration::days(365);

/// A certificate and its private key, PEM encoded.
#[derive(Debug, Clone)]
pub struct CertAndKey {
    pub cert_pem: String,
    pub key_pem: String,
}

/// Paths of a certificate and key written to disk.
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The cluster CA in a directory.
pub struct Pki {
    dir: PathBuf,
    ca: CertAndKey,
}

impl Pki {
    /// Loads the CA from `dir`, creating the directory and a new CA if none is there.
    pub fn load_or_create(dir: &Path) -> Result<Pki> {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let cert_path = dir.join(CA_CERT);
        let key_path = dir.join(CA_KEY);
        let ca = match (cert_path.exists(), key_path.exists()) {
            (true, true) => CertAndKey {
                cert_pem: fs::read_to_string(&cert_path)?,
                key_pem: fs::read_to_string(&key_path)?,
            },
            (false, false) => {
                let ca = new_ca("kubernetes-ca")?;
                write_private(&key_path, ca.key_pem.as_bytes())?;
                write_public(&cert_path, ca.cert_pem.as_bytes())?;
                ca
            }
            _ => bail!(
                "{} holds only one of {CA_CERT} and {CA_KEY}; refusing to replace a CA",
                dir.display()
            ),
        };
        // Fail early on unusable material rather than at first use.
        let key = KeyPair::from_pem(&ca.key_pem).context("parsing the CA key")?;
        Issuer::from_ca_cert_pem(&ca.cert_pem, key).context("parsing the CA certificate")?;
        Ok(Pki {
            dir: dir.to_path_buf(),
            ca,
        })
    }

    /// The service-account token signing key (PKCS#8 PEM), made on first use and kept.
    pub fn ensure_service_account_key(&self) -> Result<String> {
        let path = self.dir.join(SERVICE_ACCOUNT_KEY);
        if path.exists() {
            let pem =
                fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            KeyPair::from_pem(&pem).context("parsing the service-account key")?;
            return Ok(pem);
        }
        let pem = KeyPair::generate()?.serialize_pem();
        write_private(&path, pem.as_bytes())?;
        Ok(pem)
    }

    /// The directory holding the PKI.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The CA certificate, PEM encoded.
    pub fn ca_cert_pem(&self) -> &str {
        &self.ca.cert_pem
    }

    fn issuer(&self) -> Result<Issuer<'static, KeyPair>> {
        let key = KeyPair::from_pem(&self.ca.key_pem)?;
        Ok(Issuer::from_ca_cert_pem(&self.ca.cert_pem, key)?)
    }

    /// Issues a serving certificate for `hosts` (DNS names or IP addresses).
    pub fn issue_serving(&self, common_name: &str, hosts: &[String]) -> Result<CertAndKey> {
        let mut params = CertificateParams::new(hosts.to_vec())?;
        params.distinguished_name = name(common_name, &[]);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        self.sign(params)
    }

    /// Issues a client certificate for `user` in `groups`.
    ///
    /// At most one group: rcgen's distinguished name holds one value per attribute type, so a
    /// second O attribute cannot be written. More groups are refused rather than dropped.
    pub fn issue_client(&self, user: &str, groups: &[&str]) -> Result<CertAndKey> {
        if groups.len() > 1 {
            bail!("a client certificate can carry one group (O) here; got {groups:?}");
        }
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = name(user, groups);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        self.sign(params)
    }

    fn sign(&self, mut params: CertificateParams) -> Result<CertAndKey> {
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::minutes(5);
        params.not_after = now + LEAF_VALIDITY;
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer()?)?;
        Ok(CertAndKey {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Makes `<stem>.crt`/`<stem>.key` with `issue` unless both already exist.
    pub fn ensure_files(
        &self,
        stem: &str,
        issue: impl FnOnce(&Self) -> Result<CertAndKey>,
    ) -> Result<CertFiles> {
        let files = CertFiles {
            cert: self.dir.join(format!("{stem}.crt")),
            key: self.dir.join(format!("{stem}.key")),
        };
        if !(files.cert.exists() && files.key.exists()) {
            let made = issue(self)?;
            write_private(&files.key, made.key_pem.as_bytes())?;
            write_public(&files.cert, made.cert_pem.as_bytes())?;
        }
        Ok(files)
    }

    /// Writes a kubeconfig for a client certificate unless the file already exists. An
    /// existing one keeps its credentials; only its server address follows `server` (the port
    /// may change between runs on one data dir).
    pub fn ensure_kubeconfig(
        &self,
        path: &Path,
        server: &str,
        user: &str,
        groups: &[&str],
    ) -> Result<()> {
        if path.exists() {
            let text = fs::read_to_string(path)?;
            if let Ok(mut config) = serde_json::from_str::<serde_json::Value>(&text)
                && let Some(current) = config["clusters"][0]["cluster"]["server"].as_str()
                && current != server
            {
                config["clusters"][0]["cluster"]["server"] = server.into();
                let updated = serde_json::to_string_pretty(&config)?;
                write_private(path, updated.as_bytes())?;
            }
            return Ok(());
        }
        let client = self.issue_client(user, groups)?;
        let config = kubeconfig(server, self.ca_cert_pem(), user, &client);
        write_private(path, config.as_bytes())
    }
}

/// The files of a node's identity, as `write_node_identity` makes them.
pub struct NodeIdentity {
    /// Client identity `system:node:<name>` (group `system:nodes`), the CA pinned.
    pub kubeconfig: PathBuf,
    /// The node's serving certificate (its streaming server) and key.
    pub serving: CertFiles,
    /// The CA its streaming server trusts for clients (the apiserver's kubelet client).
    pub client_ca: PathBuf,
}

impl Pki {
    /// Makes (or keeps) a node's identity in `dir`: a kubeconfig for `system:node:<node>`
    /// against `server`, and a serving certificate for `address` and the node's name.
    pub fn write_node_identity(
        &self,
        dir: &Path,
        node: &str,
        address: &str,
        server: &str,
    ) -> Result<NodeIdentity> {
        fs::create_dir_all(dir)?;
        let kubeconfig = dir.join("kubelet.kubeconfig");
        self.ensure_kubeconfig(
            &kubeconfig,
            server,
            &format!("system:node:{node}"),
            &["system:nodes"],
        )?;
        let serving = CertFiles {
            cert: dir.join("kubelet.crt"),
            key: dir.join("kubelet.key"),
        };
        if !(serving.cert.exists() && serving.key.exists()) {
            let made = self.issue_serving(
                &format!("system:node:{node}"),
                &[address.to_owned(), node.to_owned(), "localhost".to_owned()],
            )?;
            write_private(&serving.key, made.key_pem.as_bytes())?;
            write_public(&serving.cert, made.cert_pem.as_bytes())?;
        }
        let client_ca = dir.join("ca.crt");
        write_public(&client_ca, self.ca_cert_pem().as_bytes())?;
        Ok(NodeIdentity {
            kubeconfig,
            serving,
            client_ca,
        })
    }
}

/// The SANs a serving certificate gets by default: loopback names, the host name and `extra`.
pub fn default_serving_hosts(extra: &[String]) -> Vec<String> {
    let mut hosts: Vec<String> = [
        "localhost",
        "127.0.0.1",
        "::1",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Ok(host) = fs::read_to_string("/proc/sys/kernel/hostname") {
        let host = host.trim();
        if !host.is_empty() {
            hosts.push(host.to_owned());
        }
    }
    hosts.extend(extra.iter().cloned());
    let mut seen = std::collections::HashSet::new();
    hosts.retain(|h| seen.insert(h.clone()));
    hosts
}

/// A kubeconfig (JSON, which kubectl reads as YAML) with the CA pinned and the client
/// credentials embedded.
pub fn kubeconfig(server: &str, ca_pem: &str, user: &str, client: &CertAndKey) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    let cluster = "local";
    let context = format!("{user}@{cluster}");
    let value = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{
            "name": cluster,
            "cluster": {"server": server, "certificate-authority-data": b64(ca_pem)},
        }],
        "users": [{
            "name": user,
            "user": {
                "client-certificate-data": b64(&client.cert_pem),
                "client-key-data": b64(&client.key_pem),
            },
        }],
        "contexts": [{
            "name": context,
            "context": {"cluster": cluster, "user": user, "namespace": "default"},
        }],
        "current-context": context,
        "preferences": {},
    });
    serde_json::to_string_pretty(&value).expect("a JSON value serializes")
}

fn name(common_name: &str, organizations: &[&str]) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    for org in organizations {
        dn.push(DnType::OrganizationName, *org);
    }
    dn.push(DnType::CommonName, common_name);
    dn
}

fn new_ca(common_name: &str) -> Result<CertAndKey> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = name(common_name, &[]);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::minutes(5);
    params.not_after = now + CA_VALIDITY;
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok(CertAndKey {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

fn write_with_mode(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Writes a secret (key, kubeconfig) readable by its owner only.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    write_with_mode(path, bytes, 0o600)
}

fn write_public(path: &Path, bytes: &[u8]) -> Result<()> {
    write_with_mode(path, bytes, 0o644)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_service_account_key_is_made_once_and_kept_private() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(dir.path()).unwrap();
        let first = pki.ensure_service_account_key().unwrap();
        assert!(first.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert_eq!(pki.ensure_service_account_key().unwrap(), first);
        let mode = fs::metadata(dir.path().join(SERVICE_ACCOUNT_KEY))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    use x509_parser::prelude::*;

    fn subject_of(pem: &str) -> (String, Vec<String>) {
        let (_, pem) = parse_x509_pem(pem.as_bytes()).unwrap();
        let cert = pem.parse_x509().unwrap();
        let cn = cert
            .subject()
            .iter_common_name()
            .next()
            .unwrap()
            .as_str()
            .unwrap()
            .to_owned();
        let orgs = cert
            .subject()
            .iter_organization()
            .map(|o| o.as_str().unwrap().to_owned())
            .collect();
        (cn, orgs)
    }

    #[test]
    fn client_certificates_carry_user_as_cn_and_groups_as_o() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(dir.path()).unwrap();
        let client = pki.issue_client("alice", &["dev"]).unwrap();
        assert_eq!(
            subject_of(&client.cert_pem),
            ("alice".into(), vec!["dev".into()])
        );
        let nobody = pki.issue_client("bob", &[]).unwrap();
        assert_eq!(subject_of(&nobody.cert_pem), ("bob".into(), vec![]));
        // Two groups cannot be encoded; refusing beats silently dropping one.
        assert!(pki.issue_client("carol", &["a", "b"]).is_err());
    }

    #[test]
    fn serving_certificates_list_every_requested_host() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(dir.path()).unwrap();
        let hosts = default_serving_hosts(&["api.example.test".into(), "10.0.0.1".into()]);
        let serving = pki.issue_serving("kube-apiserver", &hosts).unwrap();
        let (_, pem) = parse_x509_pem(serving.cert_pem.as_bytes()).unwrap();
        let cert = pem.parse_x509().unwrap();
        let san = cert.subject_alternative_name().unwrap().unwrap();
        let names: Vec<String> = san
            .value
            .general_names
            .iter()
            .map(|n| match n {
                GeneralName::DNSName(d) => d.to_string(),
                GeneralName::IPAddress(ip) => match ip.len() {
                    4 => std::net::Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3]).to_string(),
                    16 => std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*ip).unwrap()).to_string(),
                    _ => String::new(),
                },
                other => format!("{other:?}"),
            })
            .collect();
        for want in [
            "localhost",
            "127.0.0.1",
            "::1",
            "api.example.test",
            "10.0.0.1",
        ] {
            assert!(
                names.iter().any(|n| n == want),
                "{want} missing from {names:?}"
            );
        }
    }

    #[test]
    fn existing_material_is_reused_and_keys_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let first = Pki::load_or_create(dir.path()).unwrap();
        let files = first
            .ensure_files("apiserver", |p| p.issue_serving("x", &["localhost".into()]))
            .unwrap();
        let cert_before = fs::read_to_string(&files.cert).unwrap();
        let second = Pki::load_or_create(dir.path()).unwrap();
        assert_eq!(first.ca_cert_pem(), second.ca_cert_pem());
        let again = second
            .ensure_files("apiserver", |_| panic!("must not reissue"))
            .unwrap();
        assert_eq!(fs::read_to_string(&again.cert).unwrap(), cert_before);
        for key in [dir.path().join(CA_KEY), files.key] {
            let mode = fs::metadata(&key).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{} has mode {mode:o}", key.display());
        }
    }

    #[test]
    fn a_lone_ca_certificate_is_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(CA_CERT), "not a cert").unwrap();
        assert!(Pki::load_or_create(dir.path()).is_err());
        assert_eq!(
            fs::read_to_string(dir.path().join(CA_CERT)).unwrap(),
            "not a cert"
        );
    }

    #[test]
    fn kubeconfig_pins_the_ca_and_embeds_the_client() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(dir.path()).unwrap();
        let path = dir.path().join("admin.kubeconfig");
        pki.ensure_kubeconfig(
            &path,
            "https://127.0.0.1:6443",
            "admin",
            &["system:masters"],
        )
        .unwrap();
        let config: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(
            config["clusters"][0]["cluster"]["server"],
            "https://127.0.0.1:6443"
        );
        let ca = config["clusters"][0]["cluster"]["certificate-authority-data"]
            .as_str()
            .unwrap();
        let ca = base64::engine::general_purpose::STANDARD
            .decode(ca)
            .unwrap();
        assert_eq!(String::from_utf8(ca).unwrap(), pki.ca_cert_pem());
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // A new port keeps the credentials and moves the server address.
        pki.ensure_kubeconfig(
            &path,
            "https://127.0.0.1:7443",
            "admin",
            &["system:masters"],
        )
        .unwrap();
        let moved: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(
            moved["clusters"][0]["cluster"]["server"],
            "https://127.0.0.1:7443"
        );
        assert_eq!(moved["users"], config["users"]);
    }
}

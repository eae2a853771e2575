//! Authentication: who a request comes from. X.509 client certificates verified against the
//! client CA during the TLS handshake (CN = user, O = groups). Requests without credentials
//! are unauthenticated; the endpoints answer them 401.

use rustls_pki_types::CertificateDer;
use x509_parser::prelude::{FromDer, X509Certificate};

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub groups: Vec<String>,
}

/// The user of a verified client certificate chain (leaf first).
pub fn from_client_certificate(chain: &[CertificateDer<'_>]) -> Option<UserInfo> {
    let leaf = chain.first()?;
    let (_, cert) = X509Certificate::from_der(leaf.as_ref()).ok()?;
    let subject = cert.subject();
    let name = subject.iter_common_name().next()?.as_str().ok()?.to_owned();
    if name.is_empty() {
        return None;
    }
    let mut groups: Vec<String> = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_owned))
        .collect();
    groups.push("system:authenticated".into());
    Some(UserInfo { name, groups })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cn_is_the_user_and_o_the_groups() {
        let dir = tempfile::tempdir().unwrap();
        let pki = certs::Pki::load_or_create(dir.path()).unwrap();
        let client = pki.issue_client("admin", &["system:masters"]).unwrap();
        let der =
            rustls_pki_types::pem::PemObject::from_pem_slice(client.cert_pem.as_bytes()).unwrap();
        let user = from_client_certificate(&[der]).unwrap();
        assert_eq!(user.name, "admin");
        assert_eq!(user.groups, ["system:masters", "system:authenticated"]);
        assert!(from_client_certificate(&[]).is_none());
    }
}

//! Service-account tokens: ES256-signed JWTs with the claims kube-apiserver puts in them
//! (`iss`, `sub` = `system:serviceaccount:<ns>:<name>`, `aud`, `exp`/`iat`/`nbf`, `jti`, and
//! the `kubernetes.io` claim naming the service account and any bound object). This module
//! signs and verifies; whether the named objects still exist is the caller's check.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair,
    UnparsedPublicKey,
};
use rustls_pki_types::PrivatePkcs8KeyDer;
use rustls_pki_types::pem::PemObject;
use serde::{Deserialize, Serialize};

/// An object a token is bound to, or the service account itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRef {
    pub name: String,
    pub uid: String,
}

/// The `kubernetes.io` claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubernetesClaim {
    pub namespace: String,
    pub serviceaccount: ObjectRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<ObjectRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<ObjectRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<ObjectRef>,
}

/// A token's claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub aud: Vec<String>,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub iss: String,
    pub jti: String,
    pub sub: String,
    #[serde(rename = "kubernetes.io")]
    pub kubernetes: KubernetesClaim,
}

impl Claims {
    /// The user a token authenticates as, with its groups.
    pub fn user(&self) -> (String, Vec<String>) {
        let ns = &self.kubernetes.namespace;
        (
            format!(
                "system:serviceaccount:{ns}:{}",
                self.kubernetes.serviceaccount.name
            ),
            vec![
                "system:serviceaccounts".to_owned(),
                format!("system:serviceaccounts:{ns}"),
                "system:authenticated".to_owned(),
            ],
        )
    }
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    kid: String,
}

/// Signs and verifies tokens with one key.
pub struct TokenSigner {
    key: EcdsaKeyPair,
    kid: String,
    issuer: String,
    rng: SystemRandom,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSigner")
            .field("kid", &self.kid)
            .field("issuer", &self.issuer)
            .finish()
    }
}

impl TokenSigner {
    /// A signer for a PKCS#8 PEM ECDSA P-256 key; `issuer` goes into `iss` and is checked.
    pub fn from_pem(pem: &str, issuer: &str) -> Result<TokenSigner, String> {
        let der = PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes())
            .map_err(|e| format!("reading the service-account key: {e}"))?;
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            der.secret_pkcs8_der(),
            &rng,
        )
        .map_err(|e| format!("the service-account key is not an ECDSA P-256 key: {e}"))?;
        let digest = ring::digest::digest(&ring::digest::SHA256, key.public_key().as_ref());
        Ok(TokenSigner {
            kid: URL_SAFE_NO_PAD.encode(digest.as_ref()),
            key,
            issuer: issuer.to_owned(),
            rng,
        })
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// A signed token for `claims` (its `iss` is set to this signer's issuer).
    pub fn sign(&self, mut claims: Claims) -> Result<String, String> {
        claims.iss = self.issuer.clone();
        let header = Header {
            alg: "ES256".into(),
            kid: self.kid.clone(),
        };
        let encode = |v: &[u8]| URL_SAFE_NO_PAD.encode(v);
        let signing_input = format!(
            "{}.{}",
            encode(&serde_json::to_vec(&header).map_err(|e| e.to_string())?),
            encode(&serde_json::to_vec(&claims).map_err(|e| e.to_string())?)
        );
        let signature = self
            .key
            .sign(&self.rng, signing_input.as_bytes())
            .map_err(|_| "signing failed".to_owned())?;
        Ok(format!("{signing_input}.{}", encode(signature.as_ref())))
    }

    /// The claims of a token this signer issued, if its signature, issuer and times hold at
    /// `now` (Unix seconds).
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, String> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("not a JWT".into());
        };
        let decode = |p: &str| {
            URL_SAFE_NO_PAD
                .decode(p)
                .map_err(|_| "malformed token".to_owned())
        };
        let head: Header =
            serde_json::from_slice(&decode(header)?).map_err(|_| "malformed token header")?;
        if head.alg != "ES256" || head.kid != self.kid {
            return Err("token not signed by this server".into());
        }
        let public =
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, self.key.public_key().as_ref());
        public
            .verify(
                format!("{header}.{payload}").as_bytes(),
                &decode(signature)?,
            )
            .map_err(|_| "invalid token signature".to_owned())?;
        let claims: Claims =
            serde_json::from_slice(&decode(payload)?).map_err(|_| "malformed token claims")?;
        if claims.iss != self.issuer {
            return Err("token issued by another issuer".into());
        }
        if now >= claims.exp {
            return Err("token has expired".into());
        }
        if now + 60 < claims.nbf {
            return Err("token is not valid yet".into());
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer(issuer: &str) -> TokenSigner {
        let dir = tempfile::tempdir().unwrap();
        let pki = certs::Pki::load_or_create(dir.path()).unwrap();
        TokenSigner::from_pem(&pki.ensure_service_account_key().unwrap(), issuer).unwrap()
    }

    fn claims(now: i64) -> Claims {
        Claims {
            aud: vec!["https://kubernetes.default.svc.cluster.local".into()],
            exp: now + 3600,
            iat: now,
            nbf: now,
            iss: String::new(),
            jti: "1".into(),
            sub: "system:serviceaccount:default:builder".into(),
            kubernetes: KubernetesClaim {
                namespace: "default".into(),
                serviceaccount: ObjectRef {
                    name: "builder".into(),
                    uid: "u-1".into(),
                },
                pod: None,
                secret: None,
                node: None,
            },
        }
    }

    #[test]
    fn tokens_verify_until_they_expire() {
        let s = signer("https://issuer");
        let now = 1_800_000_000;
        let token = s.sign(claims(now)).unwrap();
        let back = s.verify(&token, now + 10).unwrap();
        assert_eq!(back.iss, "https://issuer");
        assert_eq!(back.user().0, "system:serviceaccount:default:builder");
        assert!(
            s.verify(&token, now + 3600)
                .unwrap_err()
                .contains("expired")
        );
    }

    #[test]
    fn forged_or_foreign_tokens_are_refused() {
        let s = signer("https://issuer");
        let now = 1_800_000_000;
        let token = s.sign(claims(now)).unwrap();
        let mut parts: Vec<&str> = token.split('.').collect();
        let mut forged_claims = claims(now);
        forged_claims.kubernetes.serviceaccount.name = "admin".into();
        forged_claims.iss = "https://issuer".into();
        let forged = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged_claims).unwrap());
        parts[1] = &forged;
        assert!(s.verify(&parts.join("."), now).is_err());
        let other = signer("https://issuer");
        assert!(other.verify(&token, now).is_err(), "another key");
        assert!(s.verify("a.b", now).is_err());
        assert!(s.verify("", now).is_err());
    }
}

//! Service-account tokens at the API: bearer authentication, `serviceaccounts/token`
//! (TokenRequest) and TokenReview. A token is good only while the service account it names
//! (and any object it is bound to) still exists with the same uid, as kube-apiserver checks.

use http::{HeaderMap, header};
use jiff::Timestamp;
use serde_json::{Value, json};

use super::ApiServer;
use super::status_error::{ApiError, FieldError};
use crate::authn::UserInfo;
use crate::registry::resource_table;
use crate::service_account_tokens::{Claims, KubernetesClaim, ObjectRef};

/// The bearer token of an `Authorization` header.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Checks a token fully: signature, times, audience (when given) and the objects it names.
async fn authenticate(
    server: &ApiServer,
    token: &str,
    audiences: &[String],
) -> Result<Claims, String> {
    let claims = server.tokens.verify(token, Timestamp::now().as_second())?;
    if !claims.aud.iter().any(|a| audiences.contains(a)) {
        return Err("token audiences do not match".into());
    }
    let k = &claims.kubernetes;
    let namespace = Some(k.namespace.as_str());
    let check = |plural: &'static str, namespaced: bool, reference: &ObjectRef| {
        let r = resource_table::lookup("", "v1", plural).expect("core resources are served");
        let ns = if namespaced { namespace } else { None };
        let name = reference.name.clone();
        let uid = reference.uid.clone();
        async move {
            match server.store.get(r, ns, &name).await {
                Ok(obj) if obj["metadata"]["uid"] == json!(uid) => {
                    if obj["metadata"]["deletionTimestamp"].is_null() {
                        Ok(())
                    } else {
                        Err(format!("{plural} {name:?} is being deleted"))
                    }
                }
                Ok(_) => Err(format!("{plural} {name:?} has been recreated")),
                Err(_) => Err(format!("{plural} {name:?} no longer exists")),
            }
        }
    };
    check("serviceaccounts", true, &k.serviceaccount).await?;
    if let Some(pod) = &k.pod {
        check("pods", true, pod).await?;
    }
    if let Some(secret) = &k.secret {
        check("secrets", true, secret).await?;
    }
    if let Some(node) = &k.node {
        check("nodes", false, node).await?;
    }
    Ok(claims)
}

/// The user a request's bearer token authenticates, if it does.
pub async fn token_user(server: &ApiServer, token: &str) -> Option<UserInfo> {
    let audiences = [server.tokens.issuer().to_owned()];
    match authenticate(server, token, &audiences).await {
        Ok(claims) => {
            let (name, groups) = claims.user();
            Some(UserInfo { name, groups })
        }
        Err(e) => {
            tracing::debug!(error = %e, "bearer token refused");
            None
        }
    }
}

/// A TokenReview answered: `status.authenticated` with the user, or the reason it is not.
pub async fn token_review(server: &ApiServer, mut review: Value) -> Value {
    let token = review["spec"]["token"].as_str().unwrap_or("").to_owned();
    let asked: Vec<String> = review["spec"]["audiences"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let audiences = if asked.is_empty() {
        vec![server.tokens.issuer().to_owned()]
    } else {
        asked.clone()
    };
    let status = match authenticate(server, &token, &audiences).await {
        Ok(claims) => {
            let (username, groups) = claims.user();
            let mut extra = json!({
                "authentication.kubernetes.io/credential-id": [format!("JTI={}", claims.jti)],
            });
            if let Some(pod) = &claims.kubernetes.pod {
                extra["authentication.kubernetes.io/pod-name"] = json!([pod.name]);
                extra["authentication.kubernetes.io/pod-uid"] = json!([pod.uid]);
            }
            let matched: Vec<&String> = claims
                .aud
                .iter()
                .filter(|a| audiences.contains(a))
                .collect();
            json!({
                "authenticated": true,
                "user": {"username": username, "uid": claims.kubernetes.serviceaccount.uid,
                         "groups": groups, "extra": extra},
                "audiences": matched,
            })
        }
        Err(e) => json!({"authenticated": false, "user": {}, "error": e}),
    };
    review["status"] = status;
    if !review["metadata"].is_object() {
        review["metadata"] = json!({});
    }
    review["metadata"]["creationTimestamp"] = Value::Null;
    review
}

/// `POST serviceaccounts/<name>/token`: a TokenRequest answered with a signed token.
pub async fn token_request(
    server: &ApiServer,
    namespace: &str,
    name: &str,
    mut request: Value,
) -> Result<Value, ApiError> {
    let accounts = resource_table::lookup("", "v1", "serviceaccounts").expect("served");
    let account = server.store.get(accounts, Some(namespace), name).await?;
    let spec = &mut request["spec"];
    if !spec.is_object() {
        *spec = json!({});
    }
    let expiration = spec["expirationSeconds"].as_i64().unwrap_or(3600);
    let invalid = |errs: &[FieldError]| {
        ApiError::invalid("TokenRequest", "authentication.k8s.io", name, errs)
    };
    if expiration < 600 {
        return Err(invalid(&[FieldError::invalid(
            "spec.expirationSeconds",
            &json!(expiration),
            "may not specify a duration less than 10 minutes",
        )]));
    }
    if expiration > 1 << 32 {
        return Err(invalid(&[FieldError::invalid(
            "spec.expirationSeconds",
            &json!(expiration),
            "may not specify a duration larger than 2^32 seconds",
        )]));
    }
    spec["expirationSeconds"] = json!(expiration);
    let audiences: Vec<String> = match spec["audiences"].as_array() {
        Some(a) if !a.is_empty() => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => vec![server.tokens.issuer().to_owned()],
    };
    spec["audiences"] = json!(audiences);
    let mut claim = KubernetesClaim {
        namespace: namespace.to_owned(),
        serviceaccount: ObjectRef {
            name: name.to_owned(),
            uid: account["metadata"]["uid"].as_str().unwrap_or("").to_owned(),
        },
        pod: None,
        secret: None,
        node: None,
    };
    let bound = spec["boundObjectRef"].clone();
    if bound.is_object() {
        let kind = bound["kind"].as_str().unwrap_or("");
        let (plural, namespaced) = match kind {
            "Pod" => ("pods", true),
            "Secret" => ("secrets", true),
            "Node" => ("nodes", false),
            other => {
                return Err(invalid(&[FieldError::not_supported(
                    "spec.boundObjectRef.kind",
                    &json!(other),
                    &["Pod", "Secret", "Node"],
                )]));
            }
        };
        let bound_name = bound["name"].as_str().unwrap_or("");
        let r = resource_table::lookup("", "v1", plural).expect("served");
        let ns = namespaced.then_some(namespace);
        let object = server.store.get(r, ns, bound_name).await?;
        let uid = object["metadata"]["uid"].as_str().unwrap_or("").to_owned();
        if let Some(wanted) = bound["uid"].as_str().filter(|u| !u.is_empty())
            && wanted != uid
        {
            return Err(ApiError::conflict(
                plural,
                "",
                bound_name,
                &format!(
                    "the UID in the bound object reference ({wanted}) does not match the UID in record ({uid}). The object might have been deleted and then recreated"
                ),
            ));
        }
        if kind == "Pod" {
            let pod_account = object["spec"]["serviceAccountName"]
                .as_str()
                .unwrap_or("default");
            if pod_account != name {
                return Err(ApiError::bad_request(format!(
                    "cannot bind token for pod {bound_name:?} to service account {name:?}: the pod runs as {pod_account:?}"
                )));
            }
        }
        let reference = Some(ObjectRef {
            name: bound_name.to_owned(),
            uid: uid.clone(),
        });
        match kind {
            "Pod" => claim.pod = reference,
            "Secret" => claim.secret = reference,
            _ => claim.node = reference,
        }
        spec["boundObjectRef"]["uid"] = json!(uid);
    }
    let now = Timestamp::now().as_second();
    let claims = Claims {
        aud: audiences,
        exp: now + expiration,
        iat: now,
        nbf: now,
        iss: String::new(),
        jti: uuid::Uuid::new_v4().to_string(),
        sub: format!("system:serviceaccount:{namespace}:{name}"),
        kubernetes: claim,
    };
    let exp = claims.exp;
    let token = server.tokens.sign(claims).map_err(ApiError::internal)?;
    let expires = Timestamp::from_second(exp)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default();
    request["apiVersion"] = json!("authentication.k8s.io/v1");
    request["kind"] = json!("TokenRequest");
    request["metadata"] = json!({"name": name, "namespace": namespace, "creationTimestamp": null});
    request["status"] = json!({"token": token, "expirationTimestamp": expires});
    Ok(request)
}

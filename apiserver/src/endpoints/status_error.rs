//! Every error the API answers with, and its one mapping to a `metav1.Status` response.
//! Other layers return [`ApiError`]; only this module builds Status bodies.

use http::StatusCode;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta;
use kube_core::response::{Status, StatusCause, StatusDetails, StatusSummary};
use serde_json::Value;

use apiserver_storage::StorageError;

/// One invalid field, as validation reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// `FieldValueRequired`, `FieldValueInvalid`, `FieldValueDuplicate`, `FieldValueNotSupported`,
    /// `FieldValueForbidden`, `FieldValueTooLong`.
    pub reason: &'static str,
    /// Path like `spec.containers[0].image`.
    pub field: String,
    /// Message without the field path, e.g. `Required value`.
    pub detail: String,
}

impl FieldError {
    pub fn required(field: impl Into<String>, detail: &str) -> Self {
        let detail = if detail.is_empty() {
            "Required value".to_owned()
        } else {
            format!("Required value: {detail}")
        };
        FieldError {
            reason: "FieldValueRequired",
            field: field.into(),
            detail,
        }
    }

    pub fn invalid(field: impl Into<String>, value: &Value, detail: &str) -> Self {
        FieldError {
            reason: "FieldValueInvalid",
            field: field.into(),
            detail: format!("Invalid value: {}: {detail}", render_value(value)),
        }
    }

    pub fn duplicate(field: impl Into<String>, value: &Value) -> Self {
        FieldError {
            reason: "FieldValueDuplicate",
            field: field.into(),
            detail: format!("Duplicate value: {}", render_value(value)),
        }
    }

    pub fn not_supported(field: impl Into<String>, value: &Value, allowed: &[&str]) -> Self {
        let allowed: Vec<String> = allowed.iter().map(|a| format!("{a:?}")).collect();
        FieldError {
            reason: "FieldValueNotSupported",
            field: field.into(),
            detail: format!(
                "Unsupported value: {}: supported values: {}",
                render_value(value),
                allowed.join(", ")
            ),
        }
    }

    pub fn forbidden(field: impl Into<String>, detail: &str) -> Self {
        FieldError {
            reason: "FieldValueForbidden",
            field: field.into(),
            detail: format!("Forbidden: {detail}"),
        }
    }

    fn full(&self) -> String {
        format!("{}: {}", self.field, self.detail)
    }
}

/// Strings are quoted as Go's `%q` does; other values print as JSON.
fn render_value(value: &Value) -> String {
    match value {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

/// An error answered as a Status.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code} {reason}: {message}")]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Box<StatusDetails>>,
    /// Seconds for a `Retry-After` header.
    pub retry_after: Option<u32>,
}

fn details(name: &str, group: &str, kind: &str) -> Option<Box<StatusDetails>> {
    Some(Box::new(StatusDetails {
        name: name.to_owned(),
        group: group.to_owned(),
        kind: kind.to_owned(),
        uid: String::new(),
        causes: Vec::new(),
        retry_after_seconds: 0,
    }))
}

/// `deployments.apps` / `pods`, as messages name resources.
pub fn qualified_resource(resource: &str, group: &str) -> String {
    if group.is_empty() {
        resource.to_owned()
    } else {
        format!("{resource}.{group}")
    }
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    pub fn not_found(resource: &str, group: &str, name: &str) -> Self {
        ApiError {
            details: details(name, group, resource),
            ..Self::new(
                404,
                "NotFound",
                format!("{} {name:?} not found", qualified_resource(resource, group)),
            )
        }
    }

    pub fn path_not_found() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    pub fn already_exists(resource: &str, group: &str, name: &str) -> Self {
        ApiError {
            details: details(name, group, resource),
            ..Self::new(
                409,
                "AlreadyExists",
                format!(
                    "{} {name:?} already exists",
                    qualified_resource(resource, group)
                ),
            )
        }
    }

    pub fn conflict(resource: &str, group: &str, name: &str, why: &str) -> Self {
        ApiError {
            details: details(name, group, resource),
            ..Self::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} {name:?}: {why}",
                    qualified_resource(resource, group)
                ),
            )
        }
    }

    /// 403 for a request a policy refuses, such as an admission plugin (`errors.NewForbidden`).
    pub fn forbidden(resource: &str, group: &str, name: &str, why: &str) -> Self {
        let resource_name = qualified_resource(resource, group);
        let message = if name.is_empty() {
            format!("{resource_name} is forbidden: {why}")
        } else {
            format!("{resource_name} {name:?} is forbidden: {why}")
        };
        ApiError {
            details: details(name, group, resource),
            ..Self::new(403, "Forbidden", message)
        }
    }

    /// 422 with one cause per field error; `kind` is like `Deployment.apps` or `Pod`.
    pub fn invalid(kind: &str, group: &str, name: &str, errors: &[FieldError]) -> Self {
        let qualified_kind = qualified_resource(kind, group);
        let summary = if errors.len() == 1 {
            errors[0].full()
        } else {
            let all: Vec<String> = errors.iter().map(FieldError::full).collect();
            format!("[{}]", all.join(", "))
        };
        ApiError {
            details: Some(Box::new(StatusDetails {
                name: name.to_owned(),
                group: group.to_owned(),
                kind: kind.to_owned(),
                causes: errors
                    .iter()
                    .map(|e| StatusCause {
                        reason: e.reason.to_owned(),
                        message: e.detail.clone(),
                        field: e.field.clone(),
                    })
                    .collect(),
                uid: String::new(),
                retry_after_seconds: 0,
            })),
            ..Self::new(
                422,
                "Invalid",
                format!("{qualified_kind} {name:?} is invalid: {summary}"),
            )
        }
    }

    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(405, "MethodNotAllowed", message)
    }

    pub fn not_acceptable(message: impl Into<String>) -> Self {
        Self::new(406, "NotAcceptable", message)
    }

    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf (got {content_type:?})"
            ),
        )
    }

    pub fn too_large(limit: usize) -> Self {
        Self::new(
            413,
            "RequestEntityTooLarge",
            format!("the request body is larger than the limit of {limit} bytes"),
        )
    }

    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message)
    }

    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(504, "Timeout", message)
    }

    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// The Status body, with `kind` and `apiVersion` (kube-core's type carries neither).
    pub fn to_status_json(&self) -> Value {
        let status = Status {
            status: Some(StatusSummary::Failure),
            code: self.code,
            message: self.message.clone(),
            metadata: Some(ListMeta::default()),
            reason: self.reason.to_owned(),
            details: self.details.as_deref().cloned(),
        };
        let mut value = serde_json::to_value(&status).expect("Status serializes");
        if let Value::Object(map) = &mut value {
            map.insert("kind".into(), "Status".into());
            map.insert("apiVersion".into(), "v1".into());
        }
        value
    }

    /// Maps a storage failure for the object `name` of `resource`.
    pub fn from_storage(err: StorageError, resource: &str, group: &str, name: &str) -> Self {
        match err {
            StorageError::NotFound { .. } => Self::not_found(resource, group, name),
            StorageError::AlreadyExists { .. } => Self::already_exists(resource, group, name),
            StorageError::Conflict { .. } => Self::conflict(
                resource,
                group,
                name,
                "the object has been modified; please apply your changes to the latest version and try again",
            ),
            StorageError::Compacted {
                requested,
                compacted,
            } => Self::expired(format!(
                "too old resource version: {requested} ({compacted})"
            )),
            StorageError::FutureRevision { requested, current } => ApiError {
                retry_after: Some(1),
                ..Self::timeout(format!(
                    "Too large resource version: {requested}, current: {current}"
                ))
            },
            StorageError::InvalidKey { reason, .. } => {
                Self::bad_request(format!("invalid object name: {reason}"))
            }
            other => Self::internal(other.to_string()),
        }
    }
}

/// The body of a successful delete that returns a Status.
pub fn success_status(name: &str, group: &str, kind: &str, uid: &str) -> Value {
    let status = Status {
        status: Some(StatusSummary::Success),
        code: 0,
        message: String::new(),
        metadata: Some(ListMeta::default()),
        reason: String::new(),
        details: Some(StatusDetails {
            name: name.to_owned(),
            group: group.to_owned(),
            kind: kind.to_owned(),
            uid: uid.to_owned(),
            causes: Vec::new(),
            retry_after_seconds: 0,
        }),
    };
    let mut value = serde_json::to_value(&status).expect("Status serializes");
    if let Value::Object(map) = &mut value {
        map.insert("kind".into(), "Status".into());
        map.insert("apiVersion".into(), "v1".into());
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_reads_like_the_real_server() {
        let body = ApiError::not_found("deployments", "apps", "x").to_status_json();
        assert_eq!(body["kind"], "Status");
        assert_eq!(body["apiVersion"], "v1");
        assert_eq!(body["status"], "Failure");
        assert_eq!(body["message"], "deployments.apps \"x\" not found");
        assert_eq!(body["reason"], "NotFound");
        assert_eq!(body["code"], 404);
        assert_eq!(body["details"]["kind"], "deployments");
    }

    #[test]
    fn forbidden_names_the_resource_and_the_reason() {
        let body = ApiError::forbidden("pods", "", "x", "no PriorityClass with name foo was found")
            .to_status_json();
        assert_eq!(body["code"], 403);
        assert_eq!(body["reason"], "Forbidden");
        assert_eq!(
            body["message"],
            "pods \"x\" is forbidden: no PriorityClass with name foo was found"
        );
        assert_eq!(body["details"]["kind"], "pods");
        assert_eq!(body["details"]["name"], "x");
        let unnamed = ApiError::forbidden("priorityclasses", "scheduling.k8s.io", "", "no");
        assert_eq!(
            unnamed.message,
            "priorityclasses.scheduling.k8s.io is forbidden: no"
        );
    }

    #[test]
    fn invalid_lists_each_cause() {
        let errors = [
            FieldError::required("spec.containers[0].image", ""),
            FieldError::invalid("metadata.name", &"A".into(), "bad"),
        ];
        let e = ApiError::invalid("Pod", "", "p", &errors);
        assert_eq!(e.code, 422);
        assert_eq!(
            e.message,
            "Pod \"p\" is invalid: [spec.containers[0].image: Required value, metadata.name: Invalid value: \"A\": bad]"
        );
        let body = e.to_status_json();
        assert_eq!(
            body["details"]["causes"][0]["field"],
            "spec.containers[0].image"
        );
        assert_eq!(body["details"]["causes"][1]["reason"], "FieldValueInvalid");
    }
}

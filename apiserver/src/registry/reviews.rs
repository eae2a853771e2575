//! The review APIs: create-only objects answered on the spot and never stored
//! (SelfSubjectAccessReview, SelfSubjectRulesReview, SubjectAccessReview,
//! LocalSubjectAccessReview, SelfSubjectReview, TokenReview).
//!
//! No authorizer is enabled yet, so every authenticated user may do everything; the answers say
//! so instead of pretending to evaluate RBAC. A TokenReview needs the token signer and the
//! store, so `endpoints::tokens` answers it.

use serde_json::{Value, json};

use crate::authn::UserInfo;
use crate::endpoints::status_error::ApiError;

/// What a review answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Review {
    SelfSubjectAccess,
    SelfSubjectRules,
    SubjectAccess,
    LocalSubjectAccess,
    SelfSubject,
    Token,
}

const NO_AUTHORIZER: &str = "no authorizer is enabled: every authenticated user is allowed";

impl Review {
    /// The review object with its `status` filled in.
    pub fn answer(
        self,
        user: &UserInfo,
        mut review: Value,
        namespace: Option<&str>,
    ) -> Result<Value, ApiError> {
        let status = match self {
            Review::SelfSubjectAccess | Review::SubjectAccess | Review::LocalSubjectAccess => {
                let spec = &review["spec"];
                if spec["resourceAttributes"].is_null() && spec["nonResourceAttributes"].is_null() {
                    return Err(ApiError::invalid(
                        kind(self),
                        "authorization.k8s.io",
                        "",
                        &[crate::endpoints::status_error::FieldError::required(
                            "spec.resourceAttributes",
                            "exactly one of nonResourceAttributes or resourceAttributes must be specified",
                        )],
                    ));
                }
                if self == Review::LocalSubjectAccess {
                    let ns = spec["resourceAttributes"]["namespace"]
                        .as_str()
                        .unwrap_or("");
                    if namespace != Some(ns) {
                        return Err(ApiError::bad_request(format!(
                            "spec.resourceAttributes.namespace must match metadata.namespace: {ns:?}"
                        )));
                    }
                }
                json!({"allowed": true, "reason": NO_AUTHORIZER})
            }
            Review::SelfSubjectRules => json!({
                "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
                "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
                "incomplete": false,
            }),
            Review::SelfSubject => {
                json!({"userInfo": {"username": user.name, "groups": user.groups}})
            }
            Review::Token => {
                return Err(ApiError::internal(
                    "a TokenReview is answered by the token authenticator",
                ));
            }
        };
        review["status"] = status;
        if !review["metadata"].is_object() {
            review["metadata"] = json!({});
        }
        review["metadata"]["creationTimestamp"] = Value::Null;
        Ok(review)
    }
}

fn kind(review: Review) -> &'static str {
    match review {
        Review::SelfSubjectAccess => "SelfSubjectAccessReview",
        Review::SelfSubjectRules => "SelfSubjectRulesReview",
        Review::SubjectAccess => "SubjectAccessReview",
        Review::LocalSubjectAccess => "LocalSubjectAccessReview",
        Review::SelfSubject => "SelfSubjectReview",
        Review::Token => "TokenReview",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admin() -> UserInfo {
        UserInfo {
            name: "kubernetes-admin".into(),
            groups: vec!["system:masters".into(), "system:authenticated".into()],
        }
    }

    #[test]
    fn access_reviews_are_allowed_and_say_why() {
        let review =
            json!({"spec": {"resourceAttributes": {"verb": "create", "resource": "pods"}}});
        let answer = Review::SelfSubjectAccess
            .answer(&admin(), review, None)
            .unwrap();
        assert_eq!(answer["status"]["allowed"], true);
        assert!(
            answer["status"]["reason"]
                .as_str()
                .unwrap()
                .contains("no authorizer")
        );
        assert_eq!(
            Review::SubjectAccess
                .answer(&admin(), json!({"spec": {}}), None)
                .unwrap_err()
                .code,
            422
        );
    }

    #[test]
    fn who_am_i_reports_the_certificate_identity() {
        let answer = Review::SelfSubject
            .answer(&admin(), json!({}), None)
            .unwrap();
        assert_eq!(answer["status"]["userInfo"]["username"], "kubernetes-admin");
        assert_eq!(answer["status"]["userInfo"]["groups"][0], "system:masters");
    }
}

//! What an API error says: its HTTP status (`is_status`, `not_found`) and whether it refuses
//! a creation because the namespace is being deleted (`namespace_terminating`). Every
//! controller reads errors through these instead of matching on `kube::Error` itself.

/// Whether `e` is an API status error with HTTP code `code`.
pub fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

/// Whether `e` says the object is not there (404).
pub fn not_found(e: &kube::Error) -> bool {
    is_status(e, 404)
}

/// The outcome of a status write guarded by the resourceVersion the controller read: done,
/// or settled without it when the object is gone (404) or the controller's copy was stale
/// (409: the newer object is on its way and brings another reconcile, so nothing is
/// overwritten with old news).
pub fn settle_status_write<T>(written: Result<T, kube::Error>) -> Result<(), kube::Error> {
    match written {
        Ok(_) => Ok(()),
        Err(e) if not_found(&e) || is_status(&e, 409) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Whether `e` refuses a creation because the namespace is being deleted: the
/// `NamespaceTerminating` cause, or a 403 saying so where the server gives no cause.
pub fn namespace_terminating(e: &kube::Error) -> bool {
    let kube::Error::Api(s) = e else { return false };
    s.details
        .as_ref()
        .is_some_and(|d| d.causes.iter().any(|c| c.reason == "NamespaceTerminating"))
        || (s.code == 403 && s.message.contains("being terminated"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;
    use kube::core::response::{StatusCause, StatusDetails};

    fn api(code: u16, message: &str, cause: Option<&str>) -> kube::Error {
        let mut s = Status::failure(message, "").with_code(code);
        if let Some(reason) = cause {
            s.details = Some(StatusDetails {
                name: String::new(),
                group: String::new(),
                kind: String::new(),
                uid: String::new(),
                causes: vec![StatusCause {
                    reason: reason.into(),
                    message: String::new(),
                    field: String::new(),
                }],
                retry_after_seconds: 0,
            });
        }
        kube::Error::Api(Box::new(s))
    }

    #[test]
    fn guarded_status_writes_settle_on_gone_or_stale_objects_only() {
        assert!(settle_status_write(Ok::<(), _>(())).is_ok());
        assert!(settle_status_write::<()>(Err(api(404, "gone", None))).is_ok());
        assert!(settle_status_write::<()>(Err(api(409, "stale", None))).is_ok());
        assert!(settle_status_write::<()>(Err(api(500, "broken", None))).is_err());
    }

    #[test]
    fn statuses_and_namespace_termination_are_recognised() {
        assert!(not_found(&api(404, "gone", None)));
        assert!(!not_found(&api(409, "conflict", None)));
        assert!(is_status(&api(409, "conflict", None), 409));
        assert!(namespace_terminating(&api(
            403,
            "forbidden",
            Some("NamespaceTerminating")
        )));
        assert!(namespace_terminating(&api(
            403,
            "unable to create new content in namespace x because it is being terminated",
            None
        )));
        assert!(!namespace_terminating(&api(403, "forbidden", None)));
    }
}

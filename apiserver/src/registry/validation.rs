//! Validation shared by every resource: names, metadata, labels, and the small helpers that
//! build field paths. Messages follow the real API server word for word.

use serde_json::Value;

use crate::endpoints::status_error::FieldError;

/// Which rule a resource's `metadata.name` follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    /// DNS-1123 subdomain (most kinds).
    Subdomain,
    /// DNS-1123 label (Namespace, StatefulSet).
    Label,
    /// DNS-1035 label (Service).
    Dns1035,
    /// Only the path-segment rule (core Event).
    PathSegment,
}

const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1035_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
const NAME_PART_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric()
}

/// DNS-1123 label: lowercase alphanumerics and '-', alphanumeric at both ends, at most 63.
pub fn dns_label_errors(value: &str) -> Vec<&'static str> {
    let mut errs = Vec::new();
    if value.len() > 63 {
        errs.push("must be no more than 63 characters");
    }
    let shape_ok =
        value.len() <= 63 && is_dns_label(value) || value.len() > 63 && is_dns_label(&value[..63]);
    if !shape_ok {
        errs.push(LABEL_MSG);
    }
    errs
}

/// DNS-1123 subdomain: dot-separated labels, at most 253.
pub fn dns_subdomain_errors(value: &str) -> Vec<&'static str> {
    let mut errs = Vec::new();
    if value.len() > 253 {
        errs.push("must be no more than 253 characters");
    }
    let ok = !value.is_empty()
        && value.split('.').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && part.as_bytes()[0].is_ascii_alphanumeric()
                && part.as_bytes()[part.len() - 1].is_ascii_alphanumeric()
        });
    if !ok {
        errs.push(SUBDOMAIN_MSG);
    }
    errs
}

fn dns1035_errors(value: &str) -> Vec<&'static str> {
    let mut errs = Vec::new();
    if value.len() > 63 {
        errs.push("must be no more than 63 characters");
    }
    let ok = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && value.as_bytes()[0].is_ascii_lowercase()
        && value.as_bytes()[value.len() - 1].is_ascii_alphanumeric();
    if !ok {
        errs.push(DNS1035_MSG);
    }
    errs
}

fn path_segment_errors(value: &str) -> Vec<&'static str> {
    let mut errs = Vec::new();
    if value == "." || value == ".." {
        errs.push(if value == "." {
            "may not be '.'"
        } else {
            "may not be '..'"
        });
    }
    if value.contains('/') {
        errs.push("may not contain '/'");
    }
    if value.contains('%') {
        errs.push("may not contain '%'");
    }
    errs
}

impl NameRule {
    pub fn errors(self, name: &str) -> Vec<&'static str> {
        let mut errs = match self {
            NameRule::Subdomain => dns_subdomain_errors(name),
            NameRule::Label => dns_label_errors(name),
            NameRule::Dns1035 => dns1035_errors(name),
            NameRule::PathSegment => Vec::new(),
        };
        if errs.is_empty() {
            errs = path_segment_errors(name);
        }
        errs
    }
}

/// A qualified name (label or annotation key): optional DNS subdomain prefix, then a name part.
fn qualified_name_errors(key: &str) -> Vec<String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let mut errs = Vec::new();
    if let Some(prefix) = prefix {
        if prefix.is_empty() {
            errs.push("prefix part must be non-empty".to_owned());
        } else {
            errs.extend(
                dns_subdomain_errors(prefix)
                    .iter()
                    .map(|e| format!("prefix part {e}")),
            );
        }
    }
    if name.is_empty() {
        errs.push("name part must be non-empty".to_owned());
    } else {
        if name.len() > 63 {
            errs.push("name part must be no more than 63 characters".to_owned());
        }
        let ok = name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            && name.as_bytes()[0].is_ascii_alphanumeric()
            && name.as_bytes()[name.len() - 1].is_ascii_alphanumeric();
        if !ok {
            errs.push(NAME_PART_MSG.to_owned());
        }
    }
    errs
}

fn label_value_ok(value: &str) -> bool {
    value.is_empty()
        || (value.len() <= 63
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            && value.as_bytes()[0].is_ascii_alphanumeric()
            && value.as_bytes()[value.len() - 1].is_ascii_alphanumeric())
}

/// Validates a label map at `path`.
pub fn validate_labels(labels: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(map) = labels.as_object() else {
        return errs;
    };
    for (k, v) in map {
        for e in qualified_name_errors(k) {
            errs.push(FieldError::invalid(path, &Value::String(k.clone()), &e));
        }
        match v.as_str() {
            Some(s) if label_value_ok(s) => {}
            Some(s) => errs.push(FieldError::invalid(
                path,
                &Value::String(s.into()),
                LABEL_VALUE_MSG,
            )),
            None => errs.push(FieldError::invalid(path, v, "label values must be strings")),
        }
    }
    errs
}

/// Validates ObjectMeta: name (by rule), namespace presence, labels, annotations.
pub fn validate_object_meta(obj: &Value, rule: NameRule, namespaced: bool) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let meta = &obj["metadata"];
    match meta["name"].as_str() {
        Some(name) if !name.is_empty() => {
            for e in rule.errors(name) {
                errs.push(FieldError::invalid(
                    "metadata.name",
                    &Value::String(name.into()),
                    e,
                ));
            }
        }
        _ => errs.push(FieldError::required(
            "metadata.name",
            "name or generateName is required",
        )),
    }
    let ns = meta["namespace"].as_str().unwrap_or("");
    if namespaced && ns.is_empty() {
        errs.push(FieldError::required("metadata.namespace", ""));
    }
    if !namespaced && !ns.is_empty() {
        errs.push(FieldError::forbidden(
            "metadata.namespace",
            "not allowed on this type",
        ));
    }
    errs.extend(validate_labels(&meta["labels"], "metadata.labels"));
    if let Some(annotations) = meta["annotations"].as_object() {
        let mut total = 0;
        for (k, v) in annotations {
            for e in qualified_name_errors(&k.to_lowercase()) {
                errs.push(FieldError::invalid(
                    "metadata.annotations",
                    &Value::String(k.clone()),
                    &e,
                ));
            }
            total += k.len() + v.as_str().map(str::len).unwrap_or(0);
        }
        if total > 262_144 {
            errs.push(FieldError {
                reason: "FieldValueTooLong",
                field: "metadata.annotations".into(),
                detail: "Too long: may not be more than 262144 bytes".into(),
            });
        }
    }
    errs
}

/// Errors when a field changed between `old` and `new`.
pub fn immutable(new: &Value, old: &Value, pointer: &str, field: &str) -> Option<FieldError> {
    let a = new.pointer(pointer).unwrap_or(&Value::Null);
    let b = old.pointer(pointer).unwrap_or(&Value::Null);
    (a != b).then(|| FieldError::invalid(field, a, "field is immutable"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_follow_the_kind_rule() {
        assert!(NameRule::Subdomain.errors("my.app-1").is_empty());
        assert!(!NameRule::Subdomain.errors("My").is_empty());
        assert!(!NameRule::Label.errors("a.b").is_empty());
        assert!(!NameRule::Dns1035.errors("1svc").is_empty());
        assert!(NameRule::Dns1035.errors("svc1").is_empty());
        assert_eq!(NameRule::PathSegment.errors("a/b"), ["may not contain '/'"]);
    }

    #[test]
    fn meta_reports_missing_name_and_bad_labels() {
        let errs = validate_object_meta(
            &json!({"metadata": {"namespace": "d", "labels": {"ok": "yes", "bad key!": "v", "k": "-x"}}}),
            NameRule::Subdomain,
            true,
        );
        let fields: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            ["metadata.name", "metadata.labels", "metadata.labels"]
        );
        assert_eq!(
            errs[0].detail,
            "Required value: name or generateName is required"
        );
    }
}

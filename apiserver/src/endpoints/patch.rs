//! The four patch types: JSON patch (RFC 6902) and merge patch (RFC 7386) through the
//! `json-patch` crate, and strategic merge patch driven by the catalog's merge keys and
//! strategies (`$patch`, `$retainKeys`, `$setElementOrder`, `$deleteFromPrimitiveList`).
//! Server-side apply (`application/apply-patch+yaml`) is only decoded here; the
//! `managed_fields` module applies it.

use serde_json::{Map, Value};

use super::negotiation::decode_yaml;
use super::status_error::ApiError;
use super::strict_json;
use crate::catalog::{self, CatalogMessage};

/// A patch body's content type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    Strategic,
    Apply,
}

impl PatchType {
    pub fn from_content_type(ct: Option<&str>) -> Result<PatchType, ApiError> {
        let mime = ct.map(|c| {
            c.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
        match mime.as_deref() {
            Some("application/json-patch+json") => Ok(PatchType::Json),
            Some("application/merge-patch+json") => Ok(PatchType::Merge),
            Some("application/strategic-merge-patch+json") => Ok(PatchType::Strategic),
            Some("application/apply-patch+yaml") => Ok(PatchType::Apply),
            _ => Err(ApiError::unsupported_media_type(ct.unwrap_or(""))),
        }
    }
}

/// A JSON, merge or strategic patch body, decoded once for every attempt of an update.
#[derive(Debug, Clone)]
pub enum DecodedPatch {
    Json(json_patch::Patch),
    Merge(Value),
    Strategic(Value),
}

/// Decodes a non-apply patch body, with the paths of keys a merge or strategic patch repeats
/// (for `fieldValidation`).
pub fn decode_patch(
    patch_type: PatchType,
    body: &[u8],
) -> Result<(DecodedPatch, Vec<String>), ApiError> {
    let object = |what: &str| {
        let decoded = strict_json::decode(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
        if !decoded.value.is_object() {
            return Err(ApiError::bad_request(format!(
                "{what} must be a JSON object"
            )));
        }
        Ok((decoded.value, decoded.duplicates))
    };
    match patch_type {
        PatchType::Json => {
            let ops: json_patch::Patch = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding JSON patch: {e}")))?;
            Ok((DecodedPatch::Json(ops), Vec::new()))
        }
        PatchType::Merge => {
            let (patch, duplicates) = object("merge patch")?;
            Ok((DecodedPatch::Merge(patch), duplicates))
        }
        PatchType::Strategic => {
            let (patch, duplicates) = object("strategic merge patch")?;
            Ok((DecodedPatch::Strategic(patch), duplicates))
        }
        // Apply is field-ownership aware; it never comes through here.
        PatchType::Apply => Err(ApiError::bad_request(
            "an apply patch must go through server-side apply",
        )),
    }
}

impl DecodedPatch {
    /// The patch applied to `original` (an object of `schema_name`).
    pub fn apply(&self, original: &Value, schema_name: &str) -> Result<Value, ApiError> {
        match self {
            DecodedPatch::Json(ops) => {
                let mut doc = original.clone();
                json_patch::patch(&mut doc, ops).map_err(|e| {
                    ApiError::new(
                        422,
                        "Invalid",
                        format!(
                            "the server rejected our request due to an error in our request: {e}"
                        ),
                    )
                })?;
                Ok(doc)
            }
            DecodedPatch::Merge(patch) => {
                let mut doc = original.clone();
                json_patch::merge(&mut doc, patch);
                Ok(doc)
            }
            DecodedPatch::Strategic(patch) => {
                Ok(
                    strategic_merge(original, patch, catalog::message(schema_name))
                        .unwrap_or(Value::Object(Map::new())),
                )
            }
        }
    }
}

/// Reads an apply configuration: JSON, or YAML (400 when it is neither, or not an object),
/// with the paths of keys a JSON configuration repeats.
pub fn decode_apply(body: &[u8]) -> Result<(Value, Vec<String>), ApiError> {
    let (config, duplicates) = match strict_json::decode(body) {
        Ok(decoded) => (decoded.value, decoded.duplicates),
        Err(_) => (
            decode_yaml(body).map_err(|e| {
                ApiError::bad_request(format!("error decoding YAML: {}", e.message))
            })?,
            Vec::new(),
        ),
    };
    if !config.is_object() {
        return Err(ApiError::bad_request(
            "error decoding YAML: an apply configuration must be an object",
        ));
    }
    Ok((config, duplicates))
}

fn message_of(field_message: &str) -> Option<&'static CatalogMessage> {
    if field_message.is_empty() {
        None
    } else {
        catalog::message(field_message)
    }
}

/// Strategic merge of `patch` into `original` for a value of type `ty` (unknown types merge
/// as maps and replace lists). `None` means the value was deleted with `$patch: delete`.
pub fn strategic_merge(
    original: &Value,
    patch: &Value,
    ty: Option<&CatalogMessage>,
) -> Option<Value> {
    let Value::Object(p) = patch else {
        return Some(patch.clone());
    };
    match p.get("$patch").and_then(Value::as_str) {
        Some("delete") => return None,
        Some("replace") => {
            let mut out = p.clone();
            out.remove("$patch");
            return Some(Value::Object(out));
        }
        _ => {}
    }
    let mut out = match original {
        Value::Object(o) => o.clone(),
        _ => Map::new(),
    };
    if let Some(Value::Array(keep)) = p.get("$retainKeys") {
        let keep: Vec<&str> = keep.iter().filter_map(Value::as_str).collect();
        out.retain(|k, _| keep.contains(&k.as_str()));
    }
    for (key, value) in p {
        if key.starts_with('$') {
            if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/")
                && let (Some(Value::Array(existing)), Value::Array(remove)) =
                    (out.get_mut(field), value)
            {
                existing.retain(|v| !remove.contains(v));
            }
            continue;
        }
        if value.is_null() {
            out.remove(key);
            continue;
        }
        let field = ty.and_then(|t| t.field(key));
        let child_ty = field.and_then(|f| message_of(f.message));
        let merged = match (out.get(key), value) {
            (Some(old @ Value::Object(_)), Value::Object(_)) => {
                let is_map = field.is_some_and(|f| f.kind.starts_with("map:"));
                if is_map {
                    // Map values merge key by key; message values recurse with their type.
                    strategic_merge_map(old, value, child_ty)
                } else if field.is_some_and(|f| f.struct_type == "atomic" || f.map_type == "atomic")
                {
                    Some(value.clone())
                } else {
                    strategic_merge(old, value, child_ty)
                }
            }
            (Some(Value::Array(old)), Value::Array(new)) => {
                let strategy = field.map(|f| f.patch_strategy).unwrap_or("");
                let merge_key = field.map(|f| f.patch_merge_key).unwrap_or("");
                if strategy.contains("merge") {
                    let order = p
                        .get(&format!("$setElementOrder/{key}"))
                        .and_then(Value::as_array);
                    Some(Value::Array(merge_list(
                        old, new, merge_key, child_ty, order,
                    )))
                } else {
                    Some(Value::Array(strip_directives(new)))
                }
            }
            (_, Value::Object(_)) => strategic_merge(&Value::Null, value, child_ty),
            (_, Value::Array(new)) => Some(Value::Array(strip_directives(new))),
            _ => Some(value.clone()),
        };
        match merged {
            Some(v) => {
                out.insert(key.clone(), v);
            }
            None => {
                out.remove(key);
            }
        }
    }
    Some(Value::Object(out))
}

fn strategic_merge_map(
    original: &Value,
    patch: &Value,
    value_ty: Option<&CatalogMessage>,
) -> Option<Value> {
    let (Value::Object(o), Value::Object(p)) = (original, patch) else {
        return Some(patch.clone());
    };
    if p.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut out = p.clone();
        out.remove("$patch");
        return Some(Value::Object(out));
    }
    let mut out = o.clone();
    for (k, v) in p {
        if k.starts_with('$') {
            continue;
        }
        if v.is_null() {
            out.remove(k);
        } else if value_ty.is_some() {
            if let Some(m) = strategic_merge(out.get(k).unwrap_or(&Value::Null), v, value_ty) {
                out.insert(k.clone(), m);
            } else {
                out.remove(k);
            }
        } else {
            out.insert(k.clone(), v.clone());
        }
    }
    Some(Value::Object(out))
}

fn strip_directives(items: &[Value]) -> Vec<Value> {
    items
        .iter()
        .filter(|v| {
            !v.get("$patch")
                .is_some_and(|p| p == "replace" || p == "delete")
        })
        .cloned()
        .collect()
}

/// Merges a list by `merge_key` (maps) or as a set (primitives).
fn merge_list(
    old: &[Value],
    patch: &[Value],
    merge_key: &str,
    item_ty: Option<&CatalogMessage>,
    order: Option<&Vec<Value>>,
) -> Vec<Value> {
    if patch
        .iter()
        .any(|v| v.get("$patch").is_some_and(|p| p == "replace"))
    {
        return strip_directives(patch);
    }
    let mut out: Vec<Value> = old.to_vec();
    if merge_key.is_empty() {
        for v in patch {
            if !out.contains(v) {
                out.push(v.clone());
            }
        }
    } else {
        for item in patch {
            let key = item.get(merge_key);
            let pos = key.and_then(|k| out.iter().position(|o| o.get(merge_key) == Some(k)));
            let delete = item.get("$patch").is_some_and(|p| p == "delete");
            match (pos, delete) {
                (Some(i), true) => {
                    out.remove(i);
                }
                (None, true) => {}
                (Some(i), false) => match strategic_merge(&out[i], item, item_ty) {
                    Some(m) => out[i] = m,
                    None => {
                        out.remove(i);
                    }
                },
                (None, false) => {
                    if let Some(m) = strategic_merge(&Value::Null, item, item_ty) {
                        out.push(m);
                    }
                }
            }
        }
    }
    if let Some(order) = order {
        let rank = |v: &Value| {
            let probe = if merge_key.is_empty() {
                Some(v)
            } else {
                v.get(merge_key)
            };
            order
                .iter()
                .position(|o| {
                    if merge_key.is_empty() {
                        Some(o) == probe
                    } else {
                        o.get(merge_key) == probe
                    }
                })
                .unwrap_or(usize::MAX)
        };
        out.sort_by_key(rank);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn apply_patch(
        patch_type: PatchType,
        original: &Value,
        body: &[u8],
        schema_name: &str,
    ) -> Result<Value, ApiError> {
        decode_patch(patch_type, body)?
            .0
            .apply(original, schema_name)
    }

    fn smp(original: Value, patch: Value) -> Value {
        apply_patch(
            PatchType::Strategic,
            &original,
            patch.to_string().as_bytes(),
            "io.k8s.api.apps.v1.Deployment",
        )
        .unwrap()
    }

    #[test]
    fn containers_merge_by_name_and_follow_set_element_order() {
        let original = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "a", "image": "a:1", "ports": [{"containerPort": 80}]},
            {"name": "b", "image": "b:1"}]}}}});
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
            "containers": [{"name": "a", "image": "a:2"}]}}}});
        let out = smp(original, patch);
        let cs = &out["spec"]["template"]["spec"]["containers"];
        assert_eq!(cs[0]["name"], "b");
        assert_eq!(cs[1]["image"], "a:2");
        assert_eq!(
            cs[1]["ports"][0]["containerPort"], 80,
            "unpatched fields are kept"
        );
    }

    #[test]
    fn patch_delete_and_replace_directives() {
        let original = json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]}}},
                              "metadata": {"labels": {"k": "v", "drop": "me"}}});
        let patch = json!({"metadata": {"labels": {"drop": null}},
                           "spec": {"template": {"spec": {"containers": [{"name": "b", "$patch": "delete"}]}}}});
        let out = smp(original.clone(), patch);
        assert_eq!(out["metadata"]["labels"], json!({"k": "v"}));
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"$patch": "replace"}, {"name": "z", "image": "z"}]}}}});
        let out = smp(original, patch);
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"],
            json!([{"name": "z", "image": "z"}])
        );
    }

    #[test]
    fn retain_keys_and_primitive_list_deletes() {
        let original = json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}},
                                       "template": {"metadata": {"finalizers": ["a", "b"]}}}});
        let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"},
                                    "template": {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}}});
        let out = smp(original, patch);
        assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
        assert_eq!(
            out["spec"]["template"]["metadata"]["finalizers"],
            json!(["b"])
        );
    }

    #[test]
    fn json_and_merge_patches() {
        let original = json!({"spec": {"replicas": 1}, "metadata": {"labels": {"a": "1"}}});
        let out = apply_patch(
            PatchType::Json,
            &original,
            br#"[{"op":"replace","path":"/spec/replicas","value":2}]"#,
            "",
        )
        .unwrap();
        assert_eq!(out["spec"]["replicas"], 2);
        let err = apply_patch(
            PatchType::Json,
            &original,
            br#"[{"op":"replace","path":"/spec/nope/x","value":2}]"#,
            "",
        )
        .unwrap_err();
        assert_eq!(err.code, 422);
        let out = apply_patch(
            PatchType::Merge,
            &original,
            br#"{"metadata":{"labels":{"a":null,"b":"2"}}}"#,
            "",
        )
        .unwrap();
        assert_eq!(out["metadata"]["labels"], json!({"b": "2"}));
    }
}

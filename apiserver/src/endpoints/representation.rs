//! Turns objects and lists into what the client negotiated: the object itself, a `List`, a
//! `meta.k8s.io` Table, PartialObjectMetadata(List), or YAML.

use jiff::Timestamp;
use serde_json::{Value, json};

use super::negotiation::Output;
use super::protobuf_response;
use super::status_error::ApiError;
use crate::registry::resource_table::ResourceDef;

/// `includeObject` of a Table request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    Metadata,
    Object,
}

impl IncludeObject {
    pub fn parse(v: Option<&str>) -> Result<Self, ApiError> {
        match v.unwrap_or("") {
            "" | "Metadata" => Ok(IncludeObject::Metadata),
            "None" => Ok(IncludeObject::None),
            "Object" => Ok(IncludeObject::Object),
            other => Err(ApiError::bad_request(format!(
                "includeObject must be one of None, Metadata, Object; got {other:?}"
            ))),
        }
    }
}

pub fn partial_metadata(obj: &Value, version: &str) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": format!("meta.k8s.io/{version}"),
           "metadata": obj["metadata"]})
}

fn list_meta(resource_version: &str, continue_token: Option<&str>) -> Value {
    let mut meta = json!({"resourceVersion": resource_version});
    if let Some(token) = continue_token {
        meta["continue"] = json!(token);
    }
    meta
}

/// A Table of `objects`; `headers` false leaves `columnDefinitions` null (watch events after
/// the first).
pub fn table(
    r: &ResourceDef,
    objects: &[Value],
    version: &str,
    include: IncludeObject,
    headers: bool,
    resource_version: Option<&str>,
    continue_token: Option<&str>,
) -> Value {
    let now = Timestamp::now();
    let rows: Vec<Value> = objects
        .iter()
        .map(|obj| {
            let object = match include {
                IncludeObject::None => Value::Null,
                IncludeObject::Metadata => partial_metadata(obj, version),
                IncludeObject::Object => obj.clone(),
            };
            json!({"cells": (r.printer.cells)(obj, now), "object": object})
        })
        .collect();
    let columns = if headers {
        Value::Array(r.printer.columns.iter().map(|c| c.to_json()).collect())
    } else {
        Value::Null
    };
    let mut metadata = json!({});
    if let Some(rv) = resource_version {
        metadata = list_meta(rv, continue_token);
    }
    json!({"kind": "Table", "apiVersion": format!("meta.k8s.io/{version}"), "metadata": metadata,
           "columnDefinitions": columns, "rows": rows})
}

/// One object in the negotiated representation.
pub fn object(r: &ResourceDef, obj: Value, output: Output, include: IncludeObject) -> Value {
    match output {
        Output::Json | Output::Yaml | Output::Protobuf => obj,
        Output::Table(v) => table(r, &[obj], v, include, true, None, None),
        Output::Metadata(v) => partial_metadata(&obj, v),
    }
}

/// A list in the negotiated representation.
pub fn list(
    r: &ResourceDef,
    items: Vec<Value>,
    resource_version: &str,
    continue_token: Option<&str>,
    output: Output,
    include: IncludeObject,
) -> Value {
    match output {
        Output::Json | Output::Yaml | Output::Protobuf => json!({
            "kind": format!("{}List", r.kind),
            "apiVersion": r.api_version(),
            "metadata": list_meta(resource_version, continue_token),
            "items": items,
        }),
        Output::Table(v) => table(
            r,
            &items,
            v,
            include,
            true,
            Some(resource_version),
            continue_token,
        ),
        Output::Metadata(v) => json!({
            "kind": "PartialObjectMetadataList",
            "apiVersion": format!("meta.k8s.io/{v}"),
            "metadata": list_meta(resource_version, continue_token),
            "items": items.iter().map(|o| partial_metadata(o, v)).collect::<Vec<_>>(),
        }),
    }
}

/// Serializes a body in the negotiated format.
/// The body of an answer and its Content-Type. Protobuf falls back to JSON for what it cannot
/// encode exactly.
pub fn encode(value: &Value, output: Output) -> (String, Vec<u8>) {
    let json = || serde_json::to_vec(value).expect("JSON serializes");
    match output {
        Output::Yaml => (
            output.content_type(),
            serde_saphyr::to_string(value)
                .map(String::into_bytes)
                .unwrap_or_else(|_| json()),
        ),
        Output::Protobuf => match protobuf_response::encode(value) {
            Ok(bytes) => (protobuf_response::CONTENT_TYPE.to_owned(), bytes),
            Err(why) => {
                tracing::debug!(%why, "answering JSON instead of protobuf");
                (Output::Json.content_type(), json())
            }
        },
        _ => (output.content_type(), json()),
    }
}

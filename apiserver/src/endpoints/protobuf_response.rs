//! Kubernetes protobuf responses, for clients that ask for
//! `application/vnd.kubernetes.protobuf` first (client-go's typed clients): the JSON object is
//! written field by field through the catalog's tags, inside the `k8s\0` + `runtime.Unknown`
//! envelope. Anything the encoder cannot place exactly makes it give up, and the caller
//! answers JSON instead, which such clients also accept.

use base64::Engine;
use prost::encoding::{WireType, encode_key, encode_varint};
use serde_json::Value;

use super::openapi;
use super::protobuf::{MAGIC, schema_for};
use crate::catalog::{self, CatalogField, CatalogMessage};

/// The Content-Type of protobuf answers.
pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";

const MAX_DEPTH: usize = 64;

/// Encodes an object or list (by its `apiVersion` and `kind`), or says why it cannot.
pub fn encode(value: &Value) -> Result<Vec<u8>, String> {
    let api_version = value["apiVersion"].as_str().unwrap_or("");
    let kind = value["kind"].as_str().unwrap_or("");
    let message = catalog::message(&schema_for(api_version, kind))
        .ok_or_else(|| format!("no protobuf message for {api_version} {kind}"))?;
    let mut raw = Vec::new();
    encode_message(message, value, &mut raw, 0)?;
    let mut type_meta = Vec::new();
    put_bytes(1, api_version.as_bytes(), &mut type_meta);
    put_bytes(2, kind.as_bytes(), &mut type_meta);
    let mut out = Vec::with_capacity(raw.len() + type_meta.len() + 16);
    out.extend_from_slice(MAGIC);
    put_bytes(1, &type_meta, &mut out);
    put_bytes(2, &raw, &mut out);
    put_bytes(3, b"", &mut out);
    put_bytes(4, b"", &mut out);
    Ok(out)
}

fn put_bytes(tag: u32, bytes: &[u8], out: &mut Vec<u8>) {
    encode_key(tag, WireType::LengthDelimited, out);
    encode_varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

fn put_varint(tag: u32, value: u64, out: &mut Vec<u8>) {
    encode_key(tag, WireType::Varint, out);
    encode_varint(value, out);
}

fn encode_message(
    message: &CatalogMessage,
    value: &Value,
    out: &mut Vec<u8>,
    depth: usize,
) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err("object nesting is too deep".into());
    }
    if encode_special(message, value, out)? {
        return Ok(());
    }
    let object = value
        .as_object()
        .ok_or_else(|| format!("{} must be an object, found {value}", message.name))?;
    let names = openapi::json_names(message.name)
        .ok_or_else(|| format!("no JSON names for {}", message.name))?;
    let mut placed: Vec<&str> = Vec::with_capacity(object.len());
    for field in message.fields {
        let Some(json_name) = names.get(field.name) else {
            continue;
        };
        let Some(v) = object.get(json_name) else {
            continue;
        };
        placed.push(json_name);
        if !v.is_null() {
            encode_field(field, v, out, depth)?;
        }
    }
    // Type metadata travels in the envelope, not in the message.
    if let Some(unplaced) = object
        .keys()
        .find(|k| !placed.contains(&k.as_str()) && !matches!(k.as_str(), "apiVersion" | "kind"))
    {
        return Err(format!("{}.{unplaced} has no protobuf tag", message.name));
    }
    Ok(())
}

fn encode_field(
    field: &CatalogField,
    value: &Value,
    out: &mut Vec<u8>,
    depth: usize,
) -> Result<(), String> {
    if let Some(map_kind) = field.kind.strip_prefix("map:") {
        let entries = value
            .as_object()
            .ok_or_else(|| format!("map field {} must be an object", field.name))?;
        let value_kind = map_kind.split(',').nth(1).unwrap_or("string");
        for (key, v) in entries {
            let mut entry = Vec::new();
            put_bytes(1, key.as_bytes(), &mut entry);
            encode_single(field, value_kind, 2, v, &mut entry, depth)?;
            put_bytes(field.tag, &entry, out);
        }
        return Ok(());
    }
    if field.repeated {
        let items = value
            .as_array()
            .ok_or_else(|| format!("repeated field {} must be a list", field.name))?;
        for item in items {
            encode_single(field, field.kind, field.tag, item, out, depth)?;
        }
        return Ok(());
    }
    encode_single(field, field.kind, field.tag, value, out, depth)
}

fn encode_single(
    field: &CatalogField,
    kind: &str,
    tag: u32,
    value: &Value,
    out: &mut Vec<u8>,
    depth: usize,
) -> Result<(), String> {
    let wrong = || format!("field {} cannot hold {value}", field.name);
    match kind {
        "string" => put_bytes(tag, value.as_str().ok_or_else(wrong)?.as_bytes(), out),
        "bytes" => {
            let text = value.as_str().ok_or_else(wrong)?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|_| wrong())?;
            put_bytes(tag, &bytes, out);
        }
        "bool" => put_varint(tag, u64::from(value.as_bool().ok_or_else(wrong)?), out),
        "int32" | "int64" | "uint32" | "uint64" => {
            let n = value.as_i64().ok_or_else(wrong)?;
            put_varint(tag, n as u64, out);
        }
        "double" => {
            encode_key(tag, WireType::SixtyFourBit, out);
            out.extend_from_slice(&value.as_f64().ok_or_else(wrong)?.to_le_bytes());
        }
        "float" => {
            encode_key(tag, WireType::ThirtyTwoBit, out);
            out.extend_from_slice(&(value.as_f64().ok_or_else(wrong)? as f32).to_le_bytes());
        }
        "message" => {
            let message = catalog::message(field.message)
                .ok_or_else(|| format!("unknown message {}", field.message))?;
            let mut nested = Vec::new();
            encode_message(message, value, &mut nested, depth + 1)?;
            put_bytes(tag, &nested, out);
        }
        other => return Err(format!("field kind {other} is not encoded")),
    }
    Ok(())
}

/// Messages whose JSON form is not an object of their fields; `Ok(false)` for the others.
fn encode_special(
    message: &CatalogMessage,
    value: &Value,
    out: &mut Vec<u8>,
) -> Result<bool, String> {
    let short = message.name.rsplit('.').next().unwrap_or("");
    let pkg = &message.name[..message.name.len() - short.len()];
    let wrong = || format!("{} cannot hold {value}", message.name);
    match (pkg, short) {
        ("io.k8s.apimachinery.pkg.util.intstr.", "intorstring") => match value {
            Value::String(s) => {
                put_varint(1, 1, out);
                put_varint(2, 0, out);
                put_bytes(3, s.as_bytes(), out);
            }
            Value::Number(n) => {
                put_varint(1, 0, out);
                put_varint(2, n.as_i64().ok_or_else(wrong)? as u64, out);
                put_bytes(3, b"", out);
            }
            _ => return Err(wrong()),
        },
        ("io.k8s.apimachinery.pkg.api.resource.", "quantity") => {
            put_bytes(1, value.as_str().ok_or_else(wrong)?.as_bytes(), out);
        }
        ("io.k8s.apimachinery.pkg.apis.meta.v1.", "time" | "microtime") => {
            let ts: jiff::Timestamp = value
                .as_str()
                .ok_or_else(wrong)?
                .parse()
                .map_err(|_| wrong())?;
            put_varint(1, ts.as_second() as u64, out);
            put_varint(2, u64::from(ts.subsec_nanosecond().max(0) as u32), out);
        }
        ("io.k8s.apimachinery.pkg.apis.meta.v1.", "duration") => {
            let nanos = go_duration_nanos(value.as_str().ok_or_else(wrong)?).ok_or_else(wrong)?;
            put_varint(1, nanos as u64, out);
        }
        ("io.k8s.apimachinery.pkg.runtime.", "rawextension")
        | ("io.k8s.apimachinery.pkg.apis.meta.v1.", "fieldsv1") => {
            put_bytes(1, value.to_string().as_bytes(), out);
        }
        (_, "extravalue") => {
            for item in value.as_array().ok_or_else(wrong)? {
                put_bytes(1, item.as_str().ok_or_else(wrong)?.as_bytes(), out);
            }
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// Nanoseconds of a Go duration string such as `1h30m`, `2.5s` or `300ms`.
fn go_duration_nanos(text: &str) -> Option<i64> {
    let (negative, mut rest) = match text.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    if rest == "0" {
        return Some(0);
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let number: f64 = rest[..number_end].parse().ok()?;
        rest = &rest[number_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_end..];
        total += number * scale;
    }
    let nanos = total.round() as i64;
    Some(if negative { -nanos } else { nanos })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn round_trip(value: Value) -> Value {
        let bytes = encode(&value).unwrap();
        super::super::protobuf::decode(&bytes).unwrap()
    }

    #[test]
    fn objects_round_trip_through_the_request_decoder() {
        let deployment = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "uid": "u",
                "creationTimestamp": "2026-01-02T03:04:05Z", "labels": {"app": "web"},
                "managedFields": [{"manager": "m", "operation": "Apply", "apiVersion": "apps/v1",
                    "time": "2026-01-02T03:04:05Z", "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:spec": {"f:replicas": {}}}}]},
            "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "web"}},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "nginx",
                        "resources": {"limits": {"cpu": "200m"}},
                        "ports": [{"containerPort": 80, "protocol": "TCP"}]}]}}},
            "status": {"observedGeneration": 3}
        });
        assert_eq!(round_trip(deployment.clone()), deployment);
        let list = json!({"apiVersion": "v1", "kind": "ConfigMapList",
            "metadata": {"resourceVersion": "7"},
            "items": [{"metadata": {"name": "a"}, "data": {"k": "v"}, "binaryData": {"b": "AAE="}}]});
        assert_eq!(round_trip(list.clone()), list);
    }

    #[test]
    fn what_cannot_be_placed_is_refused_not_dropped() {
        let odd =
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "extra": 1});
        assert!(encode(&odd).is_err());
        let unknown = json!({"apiVersion": "example.com/v1", "kind": "Widget"});
        assert!(encode(&unknown).is_err());
    }

    #[test]
    fn go_durations_parse() {
        assert_eq!(go_duration_nanos("1h30m"), Some(5_400_000_000_000));
        assert_eq!(go_duration_nanos("2.5s"), Some(2_500_000_000));
        assert_eq!(go_duration_nanos("300ms"), Some(300_000_000));
        assert_eq!(go_duration_nanos("-1s"), Some(-1_000_000_000));
        assert_eq!(go_duration_nanos("0"), Some(0));
        assert_eq!(go_duration_nanos("5 parsecs"), None);
    }
}

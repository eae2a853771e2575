//! Kubernetes protobuf request bodies: the `k8s\0` magic, the `runtime.Unknown` envelope, and
//! a decoder that walks the payload with the catalog's field tables (generated from `k8s-pb`)
//! and writes the JSON the rest of the server works on.

use base64::Engine;
use prost::encoding::{WireType, decode_key, decode_varint};
use serde_json::{Map, Value, json};

use super::openapi;
use super::status_error::ApiError;
use crate::catalog::{self, CatalogField, CatalogMessage};
use crate::registry::resource_table;

/// The four bytes every Kubernetes protobuf body starts with.
pub const MAGIC: &[u8] = b"k8s\0";
const MAX_DEPTH: usize = 64;

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::bad_request(format!("error decoding protobuf body: {}", message.into()))
}

/// One field read off the wire.
enum Raw<'a> {
    Varint(u64),
    Fixed64(u64),
    Fixed32(u32),
    Bytes(&'a [u8]),
}

/// Reads every top-level field of a message.
fn fields(mut buf: &[u8]) -> Result<Vec<(u32, Raw<'_>)>, ApiError> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let (tag, wire) = decode_key(&mut buf).map_err(|e| bad(e.to_string()))?;
        let raw = match wire {
            WireType::Varint => {
                Raw::Varint(decode_varint(&mut buf).map_err(|e| bad(e.to_string()))?)
            }
            WireType::SixtyFourBit => {
                let bytes: [u8; 8] = buf
                    .get(..8)
                    .ok_or_else(|| bad("truncated fixed64"))?
                    .try_into()
                    .expect("8 bytes");
                buf = &buf[8..];
                Raw::Fixed64(u64::from_le_bytes(bytes))
            }
            WireType::ThirtyTwoBit => {
                let bytes: [u8; 4] = buf
                    .get(..4)
                    .ok_or_else(|| bad("truncated fixed32"))?
                    .try_into()
                    .expect("4 bytes");
                buf = &buf[4..];
                Raw::Fixed32(u32::from_le_bytes(bytes))
            }
            WireType::LengthDelimited => {
                let len = decode_varint(&mut buf).map_err(|e| bad(e.to_string()))? as usize;
                let bytes = buf
                    .get(..len)
                    .ok_or_else(|| bad("truncated length-delimited field"))?;
                buf = &buf[len..];
                Raw::Bytes(bytes)
            }
            WireType::StartGroup | WireType::EndGroup => {
                return Err(bad("groups are not used by Kubernetes"));
            }
        };
        out.push((tag, raw));
    }
    Ok(out)
}

fn string_of(raw: &Raw) -> Result<String, ApiError> {
    match raw {
        Raw::Bytes(b) => {
            String::from_utf8(b.to_vec()).map_err(|_| bad("string field is not UTF-8"))
        }
        _ => Err(bad("expected a string field")),
    }
}

/// The schema (and message) name of a kind: a served resource's, its list's (`<Kind>List`),
/// or, for kinds that are only subresource bodies (TokenRequest, Eviction, Scale), the
/// built-in package named after the group's first label.
pub fn schema_for(api_version: &str, kind: &str) -> String {
    if let Some(resource) = resource_table::lookup_kind(api_version, kind) {
        return (resource.types.schema_name)();
    }
    if let Some(item_kind) = kind.strip_suffix("List")
        && let Some(resource) = resource_table::lookup_kind(api_version, item_kind)
    {
        return format!("{}List", (resource.types.schema_name)());
    }
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let package = group
        .split('.')
        .next()
        .filter(|p| !p.is_empty())
        .unwrap_or("core");
    format!("io.k8s.api.{package}.{version}.{kind}")
}

/// Decodes a protobuf body into a JSON object with `apiVersion` and `kind`.
pub fn decode(body: &[u8]) -> Result<Value, ApiError> {
    let envelope = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| bad("the body does not start with the Kubernetes protobuf magic"))?;
    let mut api_version = String::new();
    let mut kind = String::new();
    let mut raw: &[u8] = &[];
    for (tag, value) in fields(envelope)? {
        match (tag, value) {
            (1, Raw::Bytes(type_meta)) => {
                for (t, v) in fields(type_meta)? {
                    match t {
                        1 => api_version = string_of(&v)?,
                        2 => kind = string_of(&v)?,
                        _ => {}
                    }
                }
            }
            (2, Raw::Bytes(b)) => raw = b,
            (3, v) if !string_of(&v)?.is_empty() => {
                return Err(bad("content encodings are not supported"));
            }
            _ => {}
        }
    }
    let unknown_kind = || {
        ApiError::bad_request(format!(
            "no kind {kind:?} is registered for version {api_version:?}"
        ))
    };
    let message = catalog::message(&schema_for(&api_version, &kind)).ok_or_else(unknown_kind)?;
    let mut obj = decode_message(message, raw, 0)?;
    obj["apiVersion"] = json!(api_version);
    obj["kind"] = json!(kind);
    Ok(obj)
}

fn rfc3339(seconds: i64, nanos: i64, micro: bool) -> Value {
    let ts = jiff::Timestamp::new(seconds, if micro { nanos as i32 } else { 0 })
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let text = if micro {
        ts.strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string()
    } else {
        ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
    };
    json!(text)
}

fn varint_of(raw: &Raw) -> i64 {
    match raw {
        Raw::Varint(v) => *v as i64,
        _ => 0,
    }
}

/// Messages whose JSON form is not an object of their fields.
fn decode_special(message: &CatalogMessage, buf: &[u8]) -> Result<Option<Value>, ApiError> {
    let short = message.name.rsplit('.').next().unwrap_or("");
    let pkg = &message.name[..message.name.len() - short.len()];
    let get = |fs: &[(u32, Raw)], tag: u32| {
        fs.iter()
            .find(|(t, _)| *t == tag)
            .map(|(_, v)| v)
            .map(varint_of)
            .unwrap_or(0)
    };
    let value = match (pkg, short) {
        ("io.k8s.apimachinery.pkg.util.intstr.", "intorstring") => {
            let fs = fields(buf)?;
            if get(&fs, 1) == 1 {
                let s = fs
                    .iter()
                    .find(|(t, _)| *t == 3)
                    .map(|(_, v)| string_of(v))
                    .transpose()?;
                json!(s.unwrap_or_default())
            } else {
                json!(get(&fs, 2) as i32)
            }
        }
        ("io.k8s.apimachinery.pkg.api.resource.", "quantity" | "quantityvalue") => {
            let fs = fields(buf)?;
            let s = fs
                .iter()
                .find(|(t, _)| *t == 1)
                .map(|(_, v)| string_of(v))
                .transpose()?;
            json!(s.unwrap_or_default())
        }
        // Go encodes the zero time as an empty message, and it reads back as JSON null.
        ("io.k8s.apimachinery.pkg.apis.meta.v1.", "time" | "microtime") if buf.is_empty() => {
            Value::Null
        }
        ("io.k8s.apimachinery.pkg.apis.meta.v1.", "time" | "microtime") => {
            let fs = fields(buf)?;
            rfc3339(get(&fs, 1), get(&fs, 2), short == "microtime")
        }
        ("io.k8s.apimachinery.pkg.apis.meta.v1.", "duration") => {
            let fs = fields(buf)?;
            json!(format!("{}s", get(&fs, 1) / 1_000_000_000))
        }
        ("io.k8s.apimachinery.pkg.runtime.", "rawextension")
        | ("io.k8s.apimachinery.pkg.apis.meta.v1.", "fieldsv1") => {
            let fs = fields(buf)?;
            match fs.iter().find(|(t, _)| *t == 1) {
                Some((_, Raw::Bytes(b))) => {
                    serde_json::from_slice(b).map_err(|_| bad("embedded raw JSON is invalid"))?
                }
                _ => Value::Null,
            }
        }
        _ => return Ok(None),
    };
    Ok(Some(value))
}

fn decode_message(message: &CatalogMessage, buf: &[u8], depth: usize) -> Result<Value, ApiError> {
    if depth > MAX_DEPTH {
        return Err(bad("message nesting is too deep"));
    }
    if let Some(v) = decode_special(message, buf)? {
        return Ok(v);
    }
    let names = openapi::json_names(message.name);
    let mut out = Map::new();
    for (tag, raw) in fields(buf)? {
        let Some(field) = message.field_by_tag(tag) else {
            continue;
        };
        let Some(json_name) = names.as_ref().and_then(|n| n.get(field.name)) else {
            continue;
        };
        if let Some(map_kind) = field.kind.strip_prefix("map:") {
            let Raw::Bytes(entry) = raw else {
                return Err(bad("map entry must be length-delimited"));
            };
            let (key, value) = decode_map_entry(field, map_kind, entry, depth)?;
            let slot = out
                .entry(json_name.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            slot[key] = value;
            continue;
        }
        let mut values = decode_scalar_or_message(field, raw, depth)?;
        // Go writes its non-pointer strings and bools even when empty or false, where its JSON
        // would omit them. (Numeric zeros stay: `replicas: 0` is a pointer that matters.)
        if !field.repeated {
            values.retain(|v| v.as_str() != Some("") && v.as_bool() != Some(false));
        }
        if field.repeated {
            let slot = out
                .entry(json_name.clone())
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(items) = slot {
                items.extend(values);
            }
        } else if let Some(v) = values.into_iter().last() {
            out.insert(json_name.clone(), v);
        }
    }
    Ok(Value::Object(out))
}

fn decode_map_entry(
    field: &CatalogField,
    map_kind: &str,
    entry: &[u8],
    depth: usize,
) -> Result<(String, Value), ApiError> {
    let value_kind = map_kind.split(',').nth(1).unwrap_or("string");
    let mut key = String::new();
    let mut value = Value::Null;
    for (tag, raw) in fields(entry)? {
        match tag {
            1 => key = string_of(&raw)?,
            2 => {
                value = match (value_kind, raw) {
                    ("string", raw) => json!(string_of(&raw)?),
                    ("bytes", Raw::Bytes(b)) => {
                        json!(base64::engine::general_purpose::STANDARD.encode(b))
                    }
                    ("message", Raw::Bytes(b)) => {
                        let m = catalog::message(field.message)
                            .ok_or_else(|| bad(format!("unknown message {}", field.message)))?;
                        decode_message(m, b, depth + 1)?
                    }
                    (_, Raw::Varint(v)) => json!(v as i64),
                    _ => return Err(bad("unsupported map value")),
                }
            }
            _ => {}
        }
    }
    if value.is_null() {
        value = match value_kind {
            "string" | "bytes" => json!(""),
            _ => Value::Null,
        };
    }
    Ok((key, value))
}

fn decode_scalar_or_message(
    field: &CatalogField,
    raw: Raw,
    depth: usize,
) -> Result<Vec<Value>, ApiError> {
    let one = |v: Value| Ok(vec![v]);
    match (field.kind, raw) {
        ("string", raw) => one(json!(string_of(&raw)?)),
        ("bytes", Raw::Bytes(b)) => one(json!(base64::engine::general_purpose::STANDARD.encode(b))),
        ("bool", Raw::Varint(v)) => one(json!(v != 0)),
        ("int32", Raw::Varint(v)) => one(json!(v as i64 as i32)),
        ("int64", Raw::Varint(v)) => one(json!(v as i64)),
        ("int32" | "int64", Raw::Bytes(mut packed)) => {
            let mut out = Vec::new();
            while !packed.is_empty() {
                let v = decode_varint(&mut packed).map_err(|e| bad(e.to_string()))?;
                out.push(if field.kind == "int32" {
                    json!(v as i64 as i32)
                } else {
                    json!(v as i64)
                });
            }
            Ok(out)
        }
        ("double", Raw::Fixed64(v)) => one(json!(f64::from_bits(v))),
        ("float", Raw::Fixed32(v)) => one(json!(f32::from_bits(v))),
        ("message", Raw::Bytes(b)) => {
            let m = catalog::message(field.message)
                .ok_or_else(|| bad(format!("unknown message {}", field.message)))?;
            one(decode_message(m, b, depth + 1)?)
        }
        (kind, _) => Err(bad(format!(
            "field {} has an unexpected wire type for {kind}",
            field.name
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_pb::api::core::v1 as pb;
    use prost::Message;

    fn envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
        // runtime.Unknown{typeMeta: {apiVersion, kind}, raw}
        let mut type_meta = Vec::new();
        prost::encoding::string::encode(1, &api_version.to_owned(), &mut type_meta);
        prost::encoding::string::encode(2, &kind.to_owned(), &mut type_meta);
        let mut unknown = Vec::new();
        prost::encoding::bytes::encode(1, &type_meta, &mut unknown);
        prost::encoding::bytes::encode(2, &raw, &mut unknown);
        let mut body = MAGIC.to_vec();
        body.extend(unknown);
        body
    }

    #[test]
    fn a_namespace_as_kubectl_create_sends_it() {
        // The capture's bytes for `kubectl create namespace capns`.
        let ns = pb::Namespace {
            metadata: Some(k8s_pb::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some("capns".into()),
                ..Default::default()
            }),
            spec: Some(Default::default()),
            status: Some(Default::default()),
        };
        let v = decode(&envelope("v1", "Namespace", ns.encode_to_vec())).unwrap();
        assert_eq!(v["kind"], "Namespace");
        assert_eq!(v["metadata"]["name"], "capns");
        let secret = pb::Secret {
            metadata: Some(k8s_pb::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some("s".into()),
                generate_name: Some(String::new()),
                ..Default::default()
            }),
            r#type: Some(String::new()),
            ..Default::default()
        };
        let v = decode(&envelope("v1", "Secret", secret.encode_to_vec())).unwrap();
        assert!(
            v.get("type").is_none(),
            "empty strings are unset, as Go reads them: {v}"
        );
        assert!(v["metadata"].get("generateName").is_none());
        let pod = pb::Pod {
            spec: Some(pb::PodSpec {
                containers: vec![pb::Container {
                    name: Some("c".into()),
                    stdin: Some(false),
                    tty: Some(false),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        let v = decode(&envelope("v1", "Pod", pod.encode_to_vec())).unwrap();
        assert_eq!(
            v["spec"]["containers"][0],
            json!({"name": "c"}),
            "false bools are unset"
        );
    }

    #[test]
    fn configmaps_secrets_and_nested_types_decode() {
        let cm = pb::ConfigMap {
            metadata: Some(k8s_pb::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some("cfg".into()),
                labels: [("app".to_owned(), "web".to_owned())].into(),
                ..Default::default()
            }),
            data: [("k".to_owned(), "v".to_owned())].into(),
            binary_data: [("b".to_owned(), vec![0u8, 1, 2])].into(),
            immutable: Some(true),
        };
        let v = decode(&envelope("v1", "ConfigMap", cm.encode_to_vec())).unwrap();
        assert_eq!(v["data"], json!({"k": "v"}));
        assert_eq!(v["binaryData"], json!({"b": "AAEC"}));
        assert_eq!(v["immutable"], true);
        assert_eq!(v["metadata"]["labels"]["app"], "web");

        let svc = pb::Service {
            spec: Some(pb::ServiceSpec {
                ports: vec![pb::ServicePort {
                    port: Some(80),
                    target_port: Some(k8s_pb::apimachinery::pkg::util::intstr::IntOrString {
                        r#type: Some(1),
                        int_val: None,
                        str_val: Some("http".into()),
                    }),
                    ..Default::default()
                }],
                cluster_ips: vec!["10.0.0.1".into()],
                ..Default::default()
            }),
            ..Default::default()
        };
        let v = decode(&envelope("v1", "Service", svc.encode_to_vec())).unwrap();
        assert_eq!(
            v["spec"]["ports"][0],
            json!({"port": 80, "targetPort": "http"})
        );
        assert_eq!(v["spec"]["clusterIPs"], json!(["10.0.0.1"]));
    }

    #[test]
    fn garbage_is_a_bad_request() {
        assert_eq!(decode(b"not protobuf").unwrap_err().code, 400);
        let mut body = MAGIC.to_vec();
        body.extend([0x0a, 0xff, 0xff]);
        assert_eq!(decode(&body).unwrap_err().code, 400);
        assert_eq!(
            decode(&envelope("v1", "Nope", vec![])).unwrap_err().code,
            400
        );
    }

    #[test]
    fn subresource_bodies_decode_too() {
        // `kubectl create token builder --duration=5m`, as captured.
        let hex = "6b3873000a280a1861757468656e7469636174696f6e2e6b38732e696f2f7631120c546f6b656e\
                   52657175657374121d0a100a0012001a0022002a0032003800420012032 0ac021a040a0012001a002200";
        let hex: String = hex.chars().filter(|c| c.is_ascii_hexdigit()).collect();
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let request = decode(&bytes).unwrap();
        assert_eq!(request["kind"], "TokenRequest");
        assert_eq!(request["spec"]["expirationSeconds"], 300);
    }
}

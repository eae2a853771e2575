//! OpenAPI v2 (`/openapi/v2`) for older clients: kubectl 1.27 and 1.28 validate, build
//! strategic merge patches and explain from it, and they read it only as protobuf.
//!
//! The Swagger 2.0 document is derived from the same schemas and paths as the v3 documents.
//! It is served as JSON, or as the protobuf of gnostic's OpenAPIv2 model, whose messages are
//! declared below with prost (only the fields this server fills in; field numbers follow the
//! model's wire format).

use std::sync::LazyLock;

use prost::Message;
use serde_json::{Map, Value, json};

use super::openapi;
use crate::registry::resource_table::RESOURCES;

/// The protobuf media type kubectl asks for.
pub const PROTOBUF_MEDIA_TYPE: &str = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";

/// The document as JSON and as protobuf.
pub struct OpenApiV2 {
    pub json: Vec<u8>,
    pub protobuf: Vec<u8>,
}

pub static DOCUMENT: LazyLock<OpenApiV2> = LazyLock::new(|| {
    let doc = swagger();
    OpenApiV2 {
        json: serde_json::to_vec(&doc).expect("JSON serializes"),
        protobuf: to_proto(&doc).encode_to_vec(),
    }
});

/// v3 references and `allOf` wrappers in v2 form.
fn to_v2_schema(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut out = Map::new();
            for (k, v) in map {
                out.insert(k.clone(), to_v2_schema(v));
            }
            if let Some(Value::String(r)) = out.get("$ref") {
                let r = r.replace("#/components/schemas/", "#/definitions/");
                out.insert("$ref".into(), json!(r));
            }
            // `{"allOf": [{"$ref": x}], ...}` is `{"$ref": x, ...}` in v2.
            let single_ref = match out.get("allOf") {
                Some(Value::Array(items)) if items.len() == 1 => items[0].get("$ref").cloned(),
                _ => None,
            };
            if let Some(r) = single_ref {
                out.remove("allOf");
                out.insert("$ref".into(), r);
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(to_v2_schema).collect()),
        other => other.clone(),
    }
}

fn v2_operation(op: &Value) -> Value {
    let mut params: Vec<Value> = op["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let mut q =
                json!({"name": p["name"], "in": p["in"], "type": "string", "uniqueItems": true});
            if let Some(d) = p.get("description") {
                q["description"] = d.clone();
            }
            if p["required"] == json!(true) {
                q["required"] = json!(true);
            }
            q
        })
        .collect();
    let mut consumes = Vec::new();
    if let Some(content) = op["requestBody"]["content"].as_object() {
        consumes = content.keys().cloned().collect();
        if let Some(schema) = content.values().next().map(|c| to_v2_schema(&c["schema"])) {
            params.push(json!({"name": "body", "in": "body", "required": true, "schema": schema}));
        }
    }
    let response = to_v2_schema(&op["responses"]["200"]["content"]["application/json"]["schema"]);
    let mut out = json!({
        "operationId": op["operationId"],
        "tags": op["tags"],
        "produces": ["application/json", "application/yaml"],
        "parameters": params,
        "responses": {"200": {"description": "OK", "schema": response}, "401": {"description": "Unauthorized"}},
        "x-kubernetes-action": op["x-kubernetes-action"],
        "x-kubernetes-group-version-kind": op["x-kubernetes-group-version-kind"],
    });
    if !consumes.is_empty() {
        out["consumes"] = json!(consumes);
    }
    out
}

/// The Swagger 2.0 document of every served resource.
fn swagger() -> Value {
    let definitions: Map<String, Value> = openapi::definitions()
        .iter()
        .map(|(name, schema)| (name.clone(), to_v2_schema(schema)))
        .collect();
    let mut paths = Map::new();
    for r in RESOURCES
        .iter()
        .filter(|r| r.review.is_none() && r.metrics.is_none())
    {
        for (path, item) in openapi::paths_for(r) {
            let mut v2 = Map::new();
            for (method, op) in item.as_object().into_iter().flatten() {
                if method == "parameters" {
                    let params: Vec<Value> = op
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|p| json!({"name": p["name"], "in": p["in"], "required": true, "type": "string", "uniqueItems": true}))
                        .collect();
                    v2.insert("parameters".into(), json!(params));
                } else {
                    v2.insert(method.clone(), v2_operation(op));
                }
            }
            paths.insert(path, Value::Object(v2));
        }
    }
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": crate::version::GIT_VERSION},
        "paths": paths,
        "definitions": definitions,
    })
}

// --- The protobuf model (gnostic OpenAPIv2), only the fields filled in here. ---

#[derive(Clone, PartialEq, Message)]
pub struct Document {
    #[prost(string, tag = "1")]
    pub swagger: String,
    #[prost(message, optional, tag = "2")]
    pub info: Option<Info>,
    #[prost(message, optional, tag = "8")]
    pub paths: Option<Paths>,
    #[prost(message, optional, tag = "9")]
    pub definitions: Option<Definitions>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Info {
    #[prost(string, tag = "1")]
    pub title: String,
    #[prost(string, tag = "2")]
    pub version: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct Paths {
    #[prost(message, repeated, tag = "2")]
    pub path: Vec<NamedPathItem>,
}

#[derive(Clone, PartialEq, Message)]
pub struct NamedPathItem {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<PathItem>,
}

#[derive(Clone, PartialEq, Message)]
pub struct PathItem {
    #[prost(message, optional, tag = "2")]
    pub get: Option<Operation>,
    #[prost(message, optional, tag = "3")]
    pub put: Option<Operation>,
    #[prost(message, optional, tag = "4")]
    pub post: Option<Operation>,
    #[prost(message, optional, tag = "5")]
    pub delete: Option<Operation>,
    #[prost(message, optional, tag = "8")]
    pub patch: Option<Operation>,
    #[prost(message, repeated, tag = "9")]
    pub parameters: Vec<ParametersItem>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Operation {
    #[prost(string, repeated, tag = "1")]
    pub tags: Vec<String>,
    #[prost(string, tag = "5")]
    pub operation_id: String,
    #[prost(string, repeated, tag = "6")]
    pub produces: Vec<String>,
    #[prost(string, repeated, tag = "7")]
    pub consumes: Vec<String>,
    #[prost(message, repeated, tag = "8")]
    pub parameters: Vec<ParametersItem>,
    #[prost(message, optional, tag = "9")]
    pub responses: Option<Responses>,
    #[prost(message, repeated, tag = "13")]
    pub vendor_extension: Vec<NamedAny>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ParametersItem {
    #[prost(message, optional, tag = "1")]
    pub parameter: Option<Parameter>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Parameter {
    #[prost(message, optional, tag = "1")]
    pub body_parameter: Option<BodyParameter>,
    #[prost(message, optional, tag = "2")]
    pub non_body_parameter: Option<NonBodyParameter>,
}

#[derive(Clone, PartialEq, Message)]
pub struct BodyParameter {
    #[prost(string, tag = "1")]
    pub description: String,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(string, tag = "3")]
    pub r#in: String,
    #[prost(bool, tag = "4")]
    pub required: bool,
    #[prost(message, optional, tag = "5")]
    pub schema: Option<Schema>,
}

#[derive(Clone, PartialEq, Message)]
pub struct NonBodyParameter {
    #[prost(message, optional, tag = "3")]
    pub query_parameter_sub_schema: Option<QueryParameterSubSchema>,
    #[prost(message, optional, tag = "4")]
    pub path_parameter_sub_schema: Option<PathParameterSubSchema>,
}

#[derive(Clone, PartialEq, Message)]
pub struct QueryParameterSubSchema {
    #[prost(bool, tag = "1")]
    pub required: bool,
    #[prost(string, tag = "2")]
    pub r#in: String,
    #[prost(string, tag = "3")]
    pub description: String,
    #[prost(string, tag = "4")]
    pub name: String,
    #[prost(string, tag = "6")]
    pub r#type: String,
    #[prost(bool, tag = "20")]
    pub unique_items: bool,
}

#[derive(Clone, PartialEq, Message)]
pub struct PathParameterSubSchema {
    #[prost(bool, tag = "1")]
    pub required: bool,
    #[prost(string, tag = "2")]
    pub r#in: String,
    #[prost(string, tag = "3")]
    pub description: String,
    #[prost(string, tag = "4")]
    pub name: String,
    #[prost(string, tag = "5")]
    pub r#type: String,
    #[prost(bool, tag = "19")]
    pub unique_items: bool,
}

#[derive(Clone, PartialEq, Message)]
pub struct Responses {
    #[prost(message, repeated, tag = "1")]
    pub response_code: Vec<NamedResponseValue>,
}

#[derive(Clone, PartialEq, Message)]
pub struct NamedResponseValue {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<ResponseValue>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ResponseValue {
    #[prost(message, optional, tag = "1")]
    pub response: Option<Response>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Response {
    #[prost(string, tag = "1")]
    pub description: String,
    #[prost(message, optional, tag = "2")]
    pub schema: Option<SchemaItem>,
}

#[derive(Clone, PartialEq, Message)]
pub struct SchemaItem {
    #[prost(message, optional, tag = "1")]
    pub schema: Option<Schema>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Definitions {
    #[prost(message, repeated, tag = "1")]
    pub additional_properties: Vec<NamedSchema>,
}

#[derive(Clone, PartialEq, Message)]
pub struct NamedSchema {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<Schema>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Schema {
    #[prost(string, tag = "1")]
    pub r#ref: String,
    #[prost(string, tag = "2")]
    pub format: String,
    #[prost(string, tag = "3")]
    pub title: String,
    #[prost(string, tag = "4")]
    pub description: String,
    #[prost(message, optional, tag = "5")]
    pub default: Option<Any>,
    #[prost(bool, tag = "16")]
    pub unique_items: bool,
    #[prost(string, repeated, tag = "19")]
    pub required: Vec<String>,
    #[prost(message, repeated, tag = "20")]
    pub r#enum: Vec<Any>,
    #[prost(message, optional, boxed, tag = "21")]
    pub additional_properties: Option<Box<AdditionalPropertiesItem>>,
    #[prost(message, optional, tag = "22")]
    pub r#type: Option<TypeItem>,
    #[prost(message, optional, tag = "23")]
    pub items: Option<ItemsItem>,
    #[prost(message, repeated, tag = "24")]
    pub all_of: Vec<Schema>,
    #[prost(message, optional, tag = "25")]
    pub properties: Option<Properties>,
    #[prost(bool, tag = "27")]
    pub read_only: bool,
    #[prost(message, optional, tag = "30")]
    pub example: Option<Any>,
    #[prost(message, repeated, tag = "31")]
    pub vendor_extension: Vec<NamedAny>,
}

#[derive(Clone, PartialEq, Message)]
pub struct AdditionalPropertiesItem {
    #[prost(message, optional, tag = "1")]
    pub schema: Option<Schema>,
    #[prost(bool, optional, tag = "2")]
    pub boolean: Option<bool>,
}

#[derive(Clone, PartialEq, Message)]
pub struct TypeItem {
    #[prost(string, repeated, tag = "1")]
    pub value: Vec<String>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ItemsItem {
    #[prost(message, repeated, tag = "1")]
    pub schema: Vec<Schema>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Properties {
    #[prost(message, repeated, tag = "1")]
    pub additional_properties: Vec<NamedSchema>,
}

#[derive(Clone, PartialEq, Message)]
pub struct NamedAny {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<Any>,
}

/// A value as YAML text (JSON is YAML).
#[derive(Clone, PartialEq, Message)]
pub struct Any {
    #[prost(string, tag = "2")]
    pub yaml: String,
}

fn any(value: &Value) -> Any {
    Any {
        yaml: value.to_string(),
    }
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or("").to_owned()
}

fn extensions(map: &Map<String, Value>) -> Vec<NamedAny> {
    map.iter()
        .filter(|(k, v)| k.starts_with("x-") && !v.is_null())
        .map(|(k, v)| NamedAny {
            name: k.clone(),
            value: Some(any(v)),
        })
        .collect()
}

fn schema_proto(value: &Value) -> Schema {
    let empty = Map::new();
    let map = value.as_object().unwrap_or(&empty);
    let types: Vec<String> = match map.get("type") {
        Some(Value::String(t)) => vec![t.clone()],
        Some(Value::Array(ts)) => ts.iter().map(text).collect(),
        _ => Vec::new(),
    };
    let items = match map.get("items") {
        Some(Value::Array(list)) => Some(ItemsItem {
            schema: list.iter().map(schema_proto).collect(),
        }),
        Some(item @ Value::Object(_)) => Some(ItemsItem {
            schema: vec![schema_proto(item)],
        }),
        _ => None,
    };
    let additional_properties = match map.get("additionalProperties") {
        Some(Value::Bool(b)) => Some(Box::new(AdditionalPropertiesItem {
            schema: None,
            boolean: Some(*b),
        })),
        Some(s @ Value::Object(_)) => Some(Box::new(AdditionalPropertiesItem {
            schema: Some(schema_proto(s)),
            boolean: None,
        })),
        _ => None,
    };
    let properties = map
        .get("properties")
        .and_then(Value::as_object)
        .map(|props| Properties {
            additional_properties: props
                .iter()
                .map(|(k, v)| NamedSchema {
                    name: k.clone(),
                    value: Some(schema_proto(v)),
                })
                .collect(),
        });
    Schema {
        r#ref: text(map.get("$ref").unwrap_or(&Value::Null)),
        format: text(map.get("format").unwrap_or(&Value::Null)),
        title: text(map.get("title").unwrap_or(&Value::Null)),
        description: text(map.get("description").unwrap_or(&Value::Null)),
        default: map.get("default").map(any),
        unique_items: map.get("uniqueItems") == Some(&json!(true)),
        required: map
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(text)
            .collect(),
        r#enum: map
            .get("enum")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(any)
            .collect(),
        additional_properties,
        r#type: (!types.is_empty()).then_some(TypeItem { value: types }),
        items,
        all_of: map
            .get("allOf")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(schema_proto)
            .collect(),
        properties,
        read_only: map.get("readOnly") == Some(&json!(true)),
        example: map.get("example").map(any),
        vendor_extension: extensions(map),
    }
}

fn parameter_proto(p: &Value) -> ParametersItem {
    let parameter = if p["in"] == "body" {
        Parameter {
            body_parameter: Some(BodyParameter {
                description: text(&p["description"]),
                name: text(&p["name"]),
                r#in: "body".into(),
                required: p["required"] == json!(true),
                schema: Some(schema_proto(&p["schema"])),
            }),
            non_body_parameter: None,
        }
    } else if p["in"] == "path" {
        let path = PathParameterSubSchema {
            required: true,
            r#in: "path".into(),
            description: text(&p["description"]),
            name: text(&p["name"]),
            r#type: "string".into(),
            unique_items: true,
        };
        Parameter {
            body_parameter: None,
            non_body_parameter: Some(NonBodyParameter {
                query_parameter_sub_schema: None,
                path_parameter_sub_schema: Some(path),
            }),
        }
    } else {
        let query = QueryParameterSubSchema {
            required: p["required"] == json!(true),
            r#in: "query".into(),
            description: text(&p["description"]),
            name: text(&p["name"]),
            r#type: "string".into(),
            unique_items: true,
        };
        Parameter {
            body_parameter: None,
            non_body_parameter: Some(NonBodyParameter {
                query_parameter_sub_schema: Some(query),
                path_parameter_sub_schema: None,
            }),
        }
    };
    ParametersItem {
        parameter: Some(parameter),
    }
}

fn operation_proto(op: &Value) -> Operation {
    let empty = Map::new();
    let map = op.as_object().unwrap_or(&empty);
    let strings = |v: &Value| {
        v.as_array()
            .into_iter()
            .flatten()
            .map(text)
            .collect::<Vec<_>>()
    };
    let responses = op["responses"].as_object().map(|codes| Responses {
        response_code: codes
            .iter()
            .map(|(code, r)| NamedResponseValue {
                name: code.clone(),
                value: Some(ResponseValue {
                    response: Some(Response {
                        description: text(&r["description"]),
                        schema: r.get("schema").map(|s| SchemaItem {
                            schema: Some(schema_proto(s)),
                        }),
                    }),
                }),
            })
            .collect(),
    });
    Operation {
        tags: strings(&op["tags"]),
        operation_id: text(&op["operationId"]),
        produces: strings(&op["produces"]),
        consumes: strings(&op["consumes"]),
        parameters: op["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .map(parameter_proto)
            .collect(),
        responses,
        vendor_extension: extensions(map),
    }
}

fn to_proto(doc: &Value) -> Document {
    let paths = doc["paths"].as_object().map(|paths| Paths {
        path: paths
            .iter()
            .map(|(name, item)| {
                let op = |m: &str| item.get(m).map(operation_proto);
                NamedPathItem {
                    name: name.clone(),
                    value: Some(PathItem {
                        get: op("get"),
                        put: op("put"),
                        post: op("post"),
                        delete: op("delete"),
                        patch: op("patch"),
                        parameters: item["parameters"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(parameter_proto)
                            .collect(),
                    }),
                }
            })
            .collect(),
    });
    let definitions = doc["definitions"].as_object().map(|defs| Definitions {
        additional_properties: defs
            .iter()
            .map(|(k, v)| NamedSchema {
                name: k.clone(),
                value: Some(schema_proto(v)),
            })
            .collect(),
    });
    Document {
        swagger: "2.0".into(),
        info: Some(Info {
            title: text(&doc["info"]["title"]),
            version: text(&doc["info"]["version"]),
        }),
        paths,
        definitions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_document_uses_v2_references_and_keeps_the_markers() {
        let doc: Value = serde_json::from_slice(&DOCUMENT.json).unwrap();
        assert_eq!(doc["swagger"], "2.0");
        let template =
            &doc["definitions"]["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]["template"];
        assert_eq!(
            template["$ref"],
            "#/definitions/io.k8s.api.core.v1.PodTemplateSpec"
        );
        let containers =
            &doc["definitions"]["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        let patch =
            &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert!(
            patch["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "fieldValidation" && p["in"] == "query")
        );
        assert_eq!(
            patch["x-kubernetes-group-version-kind"]["kind"],
            "Deployment"
        );
    }

    #[test]
    fn the_protobuf_document_round_trips_its_key_parts() {
        let doc = Document::decode(DOCUMENT.protobuf.as_slice()).unwrap();
        assert_eq!(doc.swagger, "2.0");
        let defs = doc.definitions.unwrap().additional_properties;
        let pod = defs
            .iter()
            .find(|d| d.name == "io.k8s.api.core.v1.Pod")
            .unwrap()
            .value
            .as_ref()
            .unwrap();
        let gvk = pod
            .vendor_extension
            .iter()
            .find(|e| e.name == "x-kubernetes-group-version-kind")
            .unwrap();
        let gvk: Value = serde_json::from_str(&gvk.value.as_ref().unwrap().yaml).unwrap();
        assert_eq!(gvk[0]["kind"], "Pod");
        let paths = doc.paths.unwrap().path;
        let deploy = paths
            .iter()
            .find(|p| p.name == "/apis/apps/v1/namespaces/{namespace}/deployments/{name}")
            .unwrap();
        let patch = deploy.value.as_ref().unwrap().patch.as_ref().unwrap();
        let names: Vec<String> = patch
            .parameters
            .iter()
            .filter_map(|p| {
                p.parameter
                    .as_ref()?
                    .non_body_parameter
                    .as_ref()?
                    .query_parameter_sub_schema
                    .as_ref()
                    .map(|q| q.name.clone())
            })
            .collect();
        assert!(names.contains(&"fieldValidation".to_owned()));
    }
}

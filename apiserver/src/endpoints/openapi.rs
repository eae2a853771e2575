//! OpenAPI v3: per group-version documents generated from k8s-openapi's schemas (schemars),
//! extended with the upstream `x-kubernetes-*` list/map markers from the catalog and
//! `x-kubernetes-group-version-kind`, with PATCH operations that carry `fieldValidation`, so
//! `kubectl create -f`, `apply` and `explain` work with validation on.

use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;

use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha512};

use crate::catalog;
use crate::registry::resource_table::{RESOURCES, ResourceDef, group_versions};

/// Every schema the served resources reach, by name, with extensions applied.
static DEFINITIONS: LazyLock<Map<String, Value>> = LazyLock::new(build_definitions);

/// Per schema (lowercase name): normalized field name → JSON property name.
static JSON_NAMES: LazyLock<HashMap<String, HashMap<String, String>>> = LazyLock::new(|| {
    DEFINITIONS
        .iter()
        .map(|(name, schema)| {
            let props = schema["properties"]
                .as_object()
                .map(|p| {
                    p.keys()
                        .map(|k| (catalog::normalize(k), k.clone()))
                        .collect()
                })
                .unwrap_or_default();
            (name.to_lowercase(), props)
        })
        .collect()
});

/// Every schema, by name (`io.k8s.api.core.v1.Pod`), in OpenAPI 3 form.
pub fn definitions() -> &'static Map<String, Value> {
    &DEFINITIONS
}

/// The JSON names of a schema's properties, keyed by normalized name.
pub fn json_names(schema_lowercase: &str) -> Option<&'static HashMap<String, String>> {
    JSON_NAMES.get(schema_lowercase)
}

fn build_definitions() -> Map<String, Value> {
    let mut generator = SchemaSettings::openapi3().into_generator();
    for r in RESOURCES.iter().filter(|r| r.metrics.is_none()) {
        (r.types.schema)(&mut generator);
    }
    generator.subschema_for::<k8s_openapi::apimachinery::pkg::apis::meta::v1::Status>();
    generator.subschema_for::<k8s_openapi::apimachinery::pkg::apis::meta::v1::DeleteOptions>();
    generator.subschema_for::<k8s_openapi::apimachinery::pkg::apis::meta::v1::Patch>();
    generator.subschema_for::<k8s_openapi::api::autoscaling::v1::Scale>();
    // Bodies of the create-only subresources.
    generator.subschema_for::<k8s_openapi::api::authentication::v1::TokenRequest>();
    generator.subschema_for::<k8s_openapi::api::policy::v1::Eviction>();
    generator.subschema_for::<k8s_openapi::api::core::v1::Binding>();
    let mut defs: Map<String, Value> = generator.take_definitions(true).into_iter().collect();
    for (name, schema) in defs.iter_mut() {
        add_markers(name, schema);
        wrap_refs(schema);
    }
    for r in RESOURCES.iter().filter(|r| r.metrics.is_none()) {
        let name = (r.types.schema_name)();
        if let Some(schema) = defs.get_mut(&name) {
            schema["x-kubernetes-group-version-kind"] =
                json!([{"group": r.group, "kind": r.kind, "version": r.version}]);
        }
        defs.insert(list_schema_name(r), list_schema(r, &name));
    }
    defs
}

fn list_schema_name(r: &ResourceDef) -> String {
    let name = (r.types.schema_name)();
    format!("{name}List")
}

fn list_schema(r: &ResourceDef, item: &str) -> Value {
    json!({
        "description": format!("{}List is a list of {}.", r.kind, r.kind),
        "type": "object",
        "required": ["items"],
        "properties": {
            "apiVersion": {"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."},
            "kind": {"type": "string", "description": "Kind is a string value representing the REST resource this object represents."},
            "items": {"type": "array", "items": {"allOf": [{"$ref": format!("#/components/schemas/{item}")}], "default": {}}},
            "metadata": {"allOf": [{"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta"}], "default": {}},
        },
        "x-kubernetes-group-version-kind": [{"group": r.group, "kind": format!("{}List", r.kind), "version": r.version}],
    })
}

/// Adds the list/map markers of each field to its property schema.
fn add_markers(name: &str, schema: &mut Value) {
    let Some(message) = catalog::message(name) else {
        return;
    };
    let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) else {
        return;
    };
    for (prop, value) in props.iter_mut() {
        let Some(field) = message.field(prop) else {
            continue;
        };
        let Some(obj) = value.as_object_mut() else {
            continue;
        };
        if !field.patch_merge_key.is_empty() {
            obj.insert(
                "x-kubernetes-patch-merge-key".into(),
                json!(field.patch_merge_key),
            );
        }
        if !field.patch_strategy.is_empty() {
            obj.insert(
                "x-kubernetes-patch-strategy".into(),
                json!(field.patch_strategy),
            );
        }
        if !field.list_type.is_empty() {
            obj.insert("x-kubernetes-list-type".into(), json!(field.list_type));
        }
        if !field.list_map_keys.is_empty() {
            obj.insert(
                "x-kubernetes-list-map-keys".into(),
                json!(field.list_map_keys),
            );
        }
        if !field.map_type.is_empty() {
            obj.insert("x-kubernetes-map-type".into(), json!(field.map_type));
        }
    }
}

/// `{"$ref": x, "description": d}` → `{"allOf": [{"$ref": x}], "description": d}`, the form
/// upstream documents use (siblings of `$ref` are ignored by OpenAPI 3.0 readers).
fn wrap_refs(value: &mut Value) {
    match value {
        Value::Object(map) => {
            // Only a string `$ref` is a reference: JSONSchemaProps has a *property* named `$ref`.
            if map.len() > 1 && map.get("$ref").is_some_and(Value::is_string) {
                let r = map.remove("$ref").expect("checked");
                map.insert("allOf".into(), json!([{"$ref": r}]));
            }
            for v in map.values_mut() {
                wrap_refs(v);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(wrap_refs),
        _ => {}
    }
}

fn query_param(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "description": description, "schema": {"type": "string", "uniqueItems": true}})
}

fn operation(
    r: &ResourceDef,
    action: &str,
    op_id: &str,
    response_schema: &str,
    params: Vec<Value>,
    body: Option<Value>,
) -> Value {
    let mut op = json!({
        "operationId": op_id,
        "tags": [r.api_version().replace('/', "_")],
        "parameters": params,
        "responses": {"200": {"description": "OK", "content": {
            "application/json": {"schema": {"$ref": format!("#/components/schemas/{response_schema}")}},
            "application/yaml": {"schema": {"$ref": format!("#/components/schemas/{response_schema}")}},
        }}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": r.group, "kind": r.kind, "version": r.version},
    });
    if let Some(body) = body {
        op["requestBody"] = body;
    }
    op
}

fn write_params() -> Vec<Value> {
    vec![
        query_param(
            "dryRun",
            "When present, indicates that modifications should not be persisted.",
        ),
        query_param(
            "fieldManager",
            "fieldManager is a name associated with the actor or entity that is making these changes.",
        ),
        query_param(
            "fieldValidation",
            "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore - Warn - Strict",
        ),
    ]
}

/// The collection and item paths of a resource with their operations (OpenAPI 3 form).
pub(crate) fn paths_for(r: &ResourceDef) -> Vec<(String, Value)> {
    let base = if r.group.is_empty() {
        format!("/api/{}", r.version)
    } else {
        format!("/apis/{}/{}", r.group, r.version)
    };
    let scope = if r.namespaced {
        "/namespaces/{namespace}"
    } else {
        ""
    };
    let schema = (r.types.schema_name)();
    let list = list_schema_name(r);
    let ns_param = json!({"name": "namespace", "in": "path", "required": true, "schema": {"type": "string", "uniqueItems": true}});
    let name_param = json!({"name": "name", "in": "path", "required": true, "schema": {"type": "string", "uniqueItems": true}});
    let body = json!({"content": {"*/*": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}, "required": true});
    let patch_body = json!({"content": {
        "application/apply-patch+yaml": {"schema": {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"}},
        "application/json-patch+json": {"schema": {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"}},
        "application/merge-patch+json": {"schema": {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"}},
        "application/strategic-merge-patch+json": {"schema": {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"}},
    }, "required": true});
    let kind = r.kind;
    let mut collection = json!({
        "get": operation(r, "list", &format!("list{kind}"), &list, vec![], None),
        "post": operation(r, "post", &format!("create{kind}"), &schema, write_params(), Some(body.clone())),
        "delete": operation(r, "deletecollection", &format!("deletecollection{kind}"), "io.k8s.apimachinery.pkg.apis.meta.v1.Status", vec![], None),
    });
    let mut patch_params = write_params();
    patch_params.push(query_param(
        "force",
        "Force is going to \"force\" Apply requests.",
    ));
    let mut item = json!({
        "get": operation(r, "get", &format!("read{kind}"), &schema, vec![], None),
        "put": operation(r, "put", &format!("replace{kind}"), &schema, write_params(), Some(body)),
        "patch": operation(r, "patch", &format!("patch{kind}"), &schema, patch_params, Some(patch_body)),
        "delete": operation(r, "delete", &format!("delete{kind}"), "io.k8s.apimachinery.pkg.apis.meta.v1.Status", vec![], None),
    });
    let mut params = vec![];
    if r.namespaced {
        params.push(ns_param);
    }
    collection["parameters"] = json!(params.clone());
    params.push(name_param);
    item["parameters"] = json!(params);
    let plural = r.plural;
    vec![
        (format!("{base}{scope}/{plural}"), collection),
        (format!("{base}{scope}/{plural}/{{name}}"), item),
    ]
}

/// One group-version document.
fn document(group: &str, version: &str) -> Value {
    let mut paths = BTreeMap::new();
    for r in RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version && r.metrics.is_none())
    {
        paths.extend(paths_for(r));
    }
    let title = "Kubernetes";
    json!({
        "openapi": "3.0.0",
        "info": {"title": title, "version": crate::version::GIT_VERSION},
        "paths": paths,
        "components": {"schemas": *DEFINITIONS},
    })
}

/// The served documents: path (`api/v1`, `apis/apps/v1`) → (hash, JSON bytes).
pub struct OpenApiDocs {
    docs: BTreeMap<String, (String, Vec<u8>)>,
}

impl OpenApiDocs {
    pub fn build() -> OpenApiDocs {
        let mut docs = BTreeMap::new();
        // The metrics API has no document here (metrics-server publishes its own).
        let documented = group_versions().into_iter().filter(|(g, v)| {
            RESOURCES
                .iter()
                .any(|r| r.group == *g && r.version == *v && r.metrics.is_none())
        });
        for (group, version) in documented {
            let path = if group.is_empty() {
                format!("api/{version}")
            } else {
                format!("apis/{group}/{version}")
            };
            let bytes = serde_json::to_vec(&document(group, version)).expect("JSON serializes");
            let hash = hex_upper(&Sha512::digest(&bytes));
            docs.insert(path, (hash, bytes));
        }
        OpenApiDocs { docs }
    }

    /// The `/openapi/v3` index.
    pub fn index(&self) -> Value {
        let paths: Map<String, Value> = self
            .docs
            .iter()
            .map(|(path, (hash, _))| {
                (
                    path.clone(),
                    json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={hash}")}),
                )
            })
            .collect();
        json!({"paths": paths})
    }

    /// A document and its hash.
    pub fn get(&self, path: &str) -> Option<(&str, &[u8])> {
        self.docs.get(path).map(|(h, b)| (h.as_str(), b.as_slice()))
    }
}

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apps() -> Value {
        let docs = OpenApiDocs::build();
        serde_json::from_slice(docs.get("apis/apps/v1").unwrap().1).unwrap()
    }

    #[test]
    fn patch_operations_declare_gvk_and_field_validation() {
        let doc = apps();
        let patch =
            &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(
            patch["x-kubernetes-group-version-kind"],
            json!({"group": "apps", "kind": "Deployment", "version": "v1"})
        );
        let params: Vec<&str> = patch["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert!(params.contains(&"fieldValidation"));
        assert!(
            patch["requestBody"]["content"]["application/strategic-merge-patch+json"].is_object()
        );
    }

    #[test]
    fn schemas_carry_gvk_and_merge_markers() {
        let doc = apps();
        let schemas = &doc["components"]["schemas"];
        assert_eq!(
            schemas["io.k8s.api.apps.v1.Deployment"]["x-kubernetes-group-version-kind"][0]["kind"],
            "Deployment"
        );
        let containers = &schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
        assert_eq!(containers["x-kubernetes-list-map-keys"], json!(["name"]));
        assert!(
            containers["items"]["$ref"]
                .as_str()
                .unwrap()
                .starts_with("#/components/schemas/")
        );
        let template = &schemas["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]["template"];
        assert!(template["allOf"][0]["$ref"].is_string(), "{template}");
    }

    #[test]
    fn a_property_named_ref_is_not_a_reference() {
        let doc = apps();
        let props = &doc["components"]["schemas"]["io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps"]
            ["properties"];
        assert_eq!(props["$ref"]["type"], "string", "{}", props["$ref"]);
        assert_eq!(props["allOf"]["type"], "array", "{}", props["allOf"]);
    }

    #[test]
    fn index_points_at_hashed_documents() {
        let docs = OpenApiDocs::build();
        let index = docs.index();
        let url = index["paths"]["api/v1"]["serverRelativeURL"]
            .as_str()
            .unwrap();
        let (hash, _) = docs.get("api/v1").unwrap();
        assert_eq!(url, format!("/openapi/v3/api/v1?hash={hash}"));
    }
}

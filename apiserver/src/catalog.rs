//! The API catalog: every Kubernetes protobuf message with its fields and the upstream list/map
//! markers, generated at build time from the `k8s-pb` sources (see `build.rs`).
//!
//! Lookups take OpenAPI schema names (`io.k8s.api.core.v1.PodSpec`) and JSON field names
//! (`podIPs`); both are normalized (lowercase, `_` removed) to meet prost's renamed identifiers.

/// One protobuf message.
#[derive(Debug)]
pub struct CatalogMessage {
    /// Normalized qualified name, e.g. `io.k8s.api.core.v1.podspec`.
    pub name: &'static str,
    /// The Go type is `+structType=atomic` (or `+mapType=atomic`): replaced as a whole by
    /// server-side apply, never merged field by field.
    pub atomic: bool,
    pub fields: &'static [CatalogField],
}

/// One field of a message, with the markers of its Go field.
#[derive(Debug)]
pub struct CatalogField {
    /// Normalized field name, e.g. `podips`.
    pub name: &'static str,
    pub tag: u32,
    /// `string`, `bool`, `int32`, `int64`, `double`, `bytes`, `message`, or `map:<key>,<value>`.
    pub kind: &'static str,
    pub repeated: bool,
    /// Normalized qualified name of the message type (also of a map's message values).
    pub message: &'static str,
    pub patch_merge_key: &'static str,
    pub patch_strategy: &'static str,
    pub list_type: &'static str,
    pub list_map_keys: &'static [&'static str],
    pub map_type: &'static str,
    pub struct_type: &'static str,
}

include!(concat!(env!("OUT_DIR"), "/catalog.rs"));

/// Lowercase without underscores: the form both sides of a lookup are compared in.
pub fn normalize(name: &str) -> String {
    name.chars()
        .filter(|c| *c != '_')
        .flat_map(char::to_lowercase)
        .collect()
}

/// The message for an OpenAPI schema name such as `io.k8s.api.core.v1.Pod`.
pub fn message(schema_name: &str) -> Option<&'static CatalogMessage> {
    let wanted = schema_name.to_lowercase();
    MESSAGES
        .binary_search_by(|m| m.name.cmp(wanted.as_str()))
        .ok()
        .map(|i| &MESSAGES[i])
}

impl CatalogMessage {
    /// The field for a JSON property name.
    pub fn field(&self, json_name: &str) -> Option<&'static CatalogField> {
        let wanted = normalize(json_name);
        self.fields.iter().find(|f| f.name == wanted)
    }

    /// The field with a protobuf tag.
    pub fn field_by_tag(&self, tag: u32) -> Option<&'static CatalogField> {
        self.fields.iter().find(|f| f.tag == tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containers_merge_by_name_and_carry_list_map_keys() {
        let spec = message("io.k8s.api.core.v1.PodSpec").expect("PodSpec is in the catalog");
        let containers = spec.field("containers").unwrap();
        assert_eq!(containers.patch_merge_key, "name");
        assert_eq!(containers.patch_strategy, "merge");
        assert_eq!(containers.list_type, "map");
        assert_eq!(containers.list_map_keys, ["name"]);
        assert!(containers.repeated);
        assert_eq!(containers.message, "io.k8s.api.core.v1.container");
    }

    #[test]
    fn renamed_fields_and_messages_are_found() {
        let status = message("io.k8s.api.core.v1.PodStatus").unwrap();
        let ips = status.field("podIPs").unwrap();
        assert_eq!(ips.message, "io.k8s.api.core.v1.podip");
        assert!(message("io.k8s.api.core.v1.PodIP").is_some());
        let meta = message("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta").unwrap();
        assert_eq!(
            meta.field("ownerReferences").unwrap().patch_merge_key,
            "uid"
        );
        assert_eq!(meta.field_by_tag(1).unwrap().name, "name");
        let ports = message("io.k8s.api.core.v1.Container")
            .unwrap()
            .field("ports")
            .unwrap();
        assert_eq!(ports.patch_merge_key, "containerPort");
        assert_eq!(ports.list_map_keys, ["containerPort", "protocol"]);
    }

    #[test]
    fn type_level_atomic_markers_are_kept() {
        let selector = message("io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector").unwrap();
        assert!(selector.atomic);
        assert!(message("io.k8s.api.core.v1.NodeSelector").unwrap().atomic);
        assert!(!message("io.k8s.api.core.v1.PodSpec").unwrap().atomic);
        assert!(!message("io.k8s.api.apps.v1.DeploymentSpec").unwrap().atomic);
    }

    #[test]
    fn map_fields_know_their_value_type() {
        let cm = message("io.k8s.api.core.v1.ConfigMap").unwrap();
        assert_eq!(cm.field("data").unwrap().kind, "map:string,string");
        assert_eq!(cm.field("binaryData").unwrap().kind, "map:string,bytes");
        let status = message("io.k8s.api.core.v1.NodeStatus").unwrap();
        let capacity = status.field("capacity").unwrap();
        assert_eq!(capacity.kind, "map:string,message");
        assert_eq!(
            capacity.message,
            "io.k8s.apimachinery.pkg.api.resource.quantity"
        );
    }
}

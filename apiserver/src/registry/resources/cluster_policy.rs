//! Strategies of RBAC, storage, scheduling, policy, networking, certificates and extension
//! kinds: their defaults and the validation rules users meet most; and the system
//! PriorityClasses every cluster starts with.

use serde_json::{Value, json};

use crate::endpoints::status_error::FieldError;
use crate::registry::strategy::Strategy;
use crate::registry::validation::{NameRule, immutable};

use super::set_default;

/// Roles and ClusterRoles: every rule names verbs.
pub struct RoleStrategy;

impl Strategy for RoleStrategy {
    fn name_rule(&self) -> NameRule {
        NameRule::PathSegment
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        for (i, rule) in obj["rules"].as_array().into_iter().flatten().enumerate() {
            if rule["verbs"].as_array().is_none_or(Vec::is_empty) {
                errs.push(FieldError::required(
                    format!("rules[{i}].verbs"),
                    "verbs must contain at least one value",
                ));
            }
            let has_resources = rule["resources"].as_array().is_some_and(|r| !r.is_empty());
            let has_urls = rule["nonResourceURLs"]
                .as_array()
                .is_some_and(|r| !r.is_empty());
            if obj["kind"] == "Role" && has_urls {
                errs.push(FieldError::invalid(
                    format!("rules[{i}].nonResourceURLs"),
                    &rule["nonResourceURLs"],
                    "namespaced rules cannot apply to non-resource URLs",
                ));
            }
            if !has_resources && !has_urls {
                errs.push(FieldError::required(format!("rules[{i}].resources"), "resource rules must supply at least one resource, non-resource rules must supply at least one nonResourceURL"));
            }
        }
        errs
    }
}

/// RoleBindings and ClusterRoleBindings: a role reference that never changes.
pub struct BindingStrategy;

impl Strategy for BindingStrategy {
    fn name_rule(&self) -> NameRule {
        NameRule::PathSegment
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let role = &obj["roleRef"];
        let kinds: &[&str] = if obj["kind"] == "RoleBinding" {
            &["Role", "ClusterRole"]
        } else {
            &["ClusterRole"]
        };
        match role["kind"].as_str() {
            Some(k) if kinds.contains(&k) => {}
            Some(k) => errs.push(FieldError::not_supported("roleRef.kind", &json!(k), kinds)),
            None => errs.push(FieldError::required("roleRef.kind", "")),
        }
        if role["name"].as_str().is_none_or(str::is_empty) {
            errs.push(FieldError::required("roleRef.name", ""));
        }
        if role["apiGroup"] != "rbac.authorization.k8s.io" {
            errs.push(FieldError::not_supported(
                "roleRef.apiGroup",
                &role["apiGroup"],
                &["rbac.authorization.k8s.io"],
            ));
        }
        for (i, subject) in obj["subjects"].as_array().into_iter().flatten().enumerate() {
            if subject["name"].as_str().is_none_or(str::is_empty) {
                errs.push(FieldError::required(format!("subjects[{i}].name"), ""));
            }
            match subject["kind"].as_str() {
                Some("ServiceAccount")
                    if obj["kind"] == "ClusterRoleBinding"
                        && subject["namespace"].as_str().is_none_or(str::is_empty) =>
                {
                    errs.push(FieldError::required(format!("subjects[{i}].namespace"), ""));
                }
                Some("ServiceAccount" | "User" | "Group") => {}
                other => errs.push(FieldError::not_supported(
                    format!("subjects[{i}].kind"),
                    &json!(other),
                    &["ServiceAccount", "User", "Group"],
                )),
            }
        }
        errs
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        immutable(new, old, "/roleRef", "roleRef")
            .map(|mut e| {
                e.detail = format!(
                    "{}: cannot change roleRef",
                    e.detail.trim_end_matches(": field is immutable")
                );
                e
            })
            .into_iter()
            .collect()
    }
}

/// PersistentVolumes and claims: binding phase and volume mode defaults.
pub struct VolumeStrategy {
    pub claim: bool,
}

impl Strategy for VolumeStrategy {
    fn defaults(&self, obj: &mut Value) {
        if let Some(spec) = obj.get_mut("spec") {
            set_default(spec, "volumeMode", json!("Filesystem"));
            if !self.claim {
                set_default(spec, "persistentVolumeReclaimPolicy", json!("Retain"));
            }
        }
    }
    fn has_status(&self) -> bool {
        true
    }
    fn prepare_for_create(&self, obj: &mut Value) {
        obj["status"] = json!({"phase": if self.claim { "Pending" } else { "Available" }});
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let spec = &obj["spec"];
        if spec["accessModes"].as_array().is_none_or(Vec::is_empty) {
            errs.push(FieldError::required("spec.accessModes", ""));
        }
        let storage = if self.claim {
            &spec["resources"]["requests"]["storage"]
        } else {
            &spec["capacity"]["storage"]
        };
        if storage.is_null() {
            let field = if self.claim {
                "spec.resources[storage]"
            } else {
                "spec.capacity"
            };
            errs.push(FieldError::required(field, ""));
        }
        errs
    }
    fn field_value(&self, obj: &Value, field: &str) -> Option<String> {
        (field == "status.phase").then(|| obj["status"]["phase"].as_str().unwrap_or("").to_owned())
    }
}

pub struct StorageClassStrategy;

impl Strategy for StorageClassStrategy {
    fn defaults(&self, obj: &mut Value) {
        set_default(obj, "reclaimPolicy", json!("Delete"));
        set_default(obj, "volumeBindingMode", json!("Immediate"));
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        if obj["provisioner"].as_str().is_none_or(str::is_empty) {
            return vec![FieldError::required("provisioner", "")];
        }
        Vec::new()
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        [
            "/provisioner",
            "/parameters",
            "/reclaimPolicy",
            "/volumeBindingMode",
        ]
        .iter()
        .filter_map(|p| immutable(new, old, p, p.trim_start_matches('/')))
        .collect()
    }
}

/// A PriorityClass every cluster has from the start.
pub struct SystemPriorityClass {
    pub name: &'static str,
    pub value: i64,
    pub description: &'static str,
}

impl SystemPriorityClass {
    /// The object the server creates at startup.
    pub fn object(&self) -> Value {
        json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
               "metadata": {"name": self.name}, "value": self.value,
               "description": self.description})
    }
}

/// The classes kube-apiserver bootstraps (`scheduling/bootstrap-system-priority-classes`);
/// the `system-` name prefix is reserved for exactly these.
pub const SYSTEM_PRIORITY_CLASSES: [SystemPriorityClass; 2] = [
    SystemPriorityClass {
        name: "system-node-critical",
        value: 2_000_001_000,
        description: "Used for system critical pods that must not be moved from their current node.",
    },
    SystemPriorityClass {
        name: "system-cluster-critical",
        value: 2_000_000_000,
        description: "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary.",
    },
];

/// The highest value a class outside [`SYSTEM_PRIORITY_CLASSES`] may have.
const HIGHEST_USER_DEFINABLE_PRIORITY: i64 = 1_000_000_000;

/// Why a `system-` class is not one of the system classes (`IsKnownSystemPriorityClass`).
fn unknown_system_class(name: &str, value: Option<i64>, global_default: bool) -> Option<String> {
    let Some(known) = SYSTEM_PRIORITY_CLASSES.iter().find(|c| c.name == name) else {
        return Some(format!("{name} is not a known system priority class"));
    };
    if value != Some(known.value) {
        return Some(format!(
            "value of {name} PriorityClass must be {}",
            known.value
        ));
    }
    // No system class is the global default.
    global_default.then(|| format!("globalDefault of {name} PriorityClass must be false"))
}

pub struct PriorityClassStrategy;

impl Strategy for PriorityClassStrategy {
    fn defaults(&self, obj: &mut Value) {
        set_default(obj, "preemptionPolicy", json!("PreemptLowerPriority"));
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let name = obj["metadata"]["name"].as_str().unwrap_or("");
        let value = obj["value"].as_i64();
        if name.starts_with("system-") {
            let global_default = obj["globalDefault"].as_bool().unwrap_or(false);
            if let Some(why) = unknown_system_class(name, value, global_default) {
                errs.push(FieldError::forbidden(
                    "metadata.name",
                    &format!(
                        "priority class names with 'system-' prefix are reserved for system use only. error: {why}"
                    ),
                ));
            }
        } else if value.is_some_and(|v| v > HIGHEST_USER_DEFINABLE_PRIORITY) {
            errs.push(FieldError::forbidden(
                "value",
                &format!(
                    "maximum allowed value of a user defined priority is {HIGHEST_USER_DEFINABLE_PRIORITY}"
                ),
            ));
        }
        if value.is_none() {
            errs.push(FieldError::required("value", ""));
        }
        errs
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        ["/value", "/preemptionPolicy"]
            .iter()
            .filter_map(|p| immutable(new, old, p, p.trim_start_matches('/')))
            .collect()
    }
}

pub struct DisruptionBudgetStrategy;

impl Strategy for DisruptionBudgetStrategy {
    fn has_status(&self) -> bool {
        true
    }
    fn tracks_generation(&self) -> bool {
        true
    }
    fn prepare_for_create(&self, obj: &mut Value) {
        obj["status"] = json!({"disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 0, "expectedPods": 0});
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let spec = &obj["spec"];
        if !spec["minAvailable"].is_null() && !spec["maxUnavailable"].is_null() {
            return vec![FieldError::invalid(
                "spec",
                spec,
                "minAvailable and maxUnavailable cannot be both set",
            )];
        }
        Vec::new()
    }
}

pub struct IngressStrategy;

impl Strategy for IngressStrategy {
    fn has_status(&self) -> bool {
        true
    }
    fn tracks_generation(&self) -> bool {
        true
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let spec = &obj["spec"];
        let rules = spec["rules"].as_array();
        if spec["defaultBackend"].is_null() && rules.is_none_or(Vec::is_empty) {
            errs.push(FieldError::invalid(
                "spec.rules",
                &Value::Null,
                "either `defaultBackend` or `rules` must be specified",
            ));
        }
        for (i, rule) in rules.into_iter().flatten().enumerate() {
            for (j, path) in rule["http"]["paths"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
            {
                let field = format!("spec.rules[{i}].http.paths[{j}].pathType");
                match path["pathType"].as_str() {
                    Some("Exact" | "Prefix" | "ImplementationSpecific") => {}
                    Some(other) => errs.push(FieldError::not_supported(
                        field,
                        &json!(other),
                        &["Exact", "ImplementationSpecific", "Prefix"],
                    )),
                    None => errs.push(FieldError::required(field, "pathType must be specified")),
                }
            }
        }
        errs
    }
}

/// HorizontalPodAutoscalers (stored as autoscaling/v2).
pub struct HpaStrategy;

impl Strategy for HpaStrategy {
    fn prepare_for_create(&self, obj: &mut Value) {
        obj["status"] = json!({"desiredReplicas": 0});
    }
    fn defaults(&self, obj: &mut Value) {
        let Some(spec) = obj.get_mut("spec") else {
            return;
        };
        set_default(spec, "minReplicas", json!(1));
        let no_target = spec["metrics"].as_array().is_none_or(Vec::is_empty)
            && spec.get("targetCPUUtilizationPercentage").is_none();
        if no_target {
            spec["metrics"] = json!([{"type": "Resource", "resource": {"name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 80}}}]);
        }
    }
    fn has_status(&self) -> bool {
        true
    }
    fn tracks_generation(&self) -> bool {
        true
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let spec = &obj["spec"];
        let max = spec["maxReplicas"].as_i64();
        match max {
            None => errs.push(FieldError::required("spec.maxReplicas", "")),
            Some(m) if m < 1 => errs.push(FieldError::invalid(
                "spec.maxReplicas",
                &json!(m),
                "must be greater than or equal to 1",
            )),
            _ => {}
        }
        if let (Some(min), Some(max)) = (spec["minReplicas"].as_i64(), max)
            && min > max
        {
            errs.push(FieldError::invalid(
                "spec.maxReplicas",
                &json!(max),
                "must be greater than or equal to `minReplicas`",
            ));
        }
        for field in ["kind", "name"] {
            if spec["scaleTargetRef"][field]
                .as_str()
                .is_none_or(str::is_empty)
            {
                errs.push(FieldError::required(
                    format!("spec.scaleTargetRef.{field}"),
                    "",
                ));
            }
        }
        errs
    }
}

/// CertificateSigningRequests: the request and signer are fixed once submitted.
pub struct CsrStrategy;

impl Strategy for CsrStrategy {
    fn has_status(&self) -> bool {
        true
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        if obj["spec"]["request"].as_str().is_none_or(str::is_empty) {
            errs.push(FieldError::required("spec.request", ""));
        }
        if obj["spec"]["signerName"].as_str().is_none_or(str::is_empty) {
            errs.push(FieldError::required("spec.signerName", ""));
        }
        errs
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        immutable(new, old, "/spec", "spec").into_iter().collect()
    }
    fn field_value(&self, obj: &Value, field: &str) -> Option<String> {
        (field == "spec.signerName")
            .then(|| obj["spec"]["signerName"].as_str().unwrap_or("").to_owned())
    }
}

/// CustomResourceDefinitions: named `<plural>.<group>`. Their custom resources are not served yet.
pub struct CrdStrategy;

impl Strategy for CrdStrategy {
    fn has_status(&self) -> bool {
        true
    }
    fn tracks_generation(&self) -> bool {
        true
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let spec = &obj["spec"];
        let expected = format!(
            "{}.{}",
            spec["names"]["plural"].as_str().unwrap_or(""),
            spec["group"].as_str().unwrap_or("")
        );
        let name = obj["metadata"]["name"].as_str().unwrap_or("");
        if name != expected {
            return vec![FieldError::invalid(
                "metadata.name",
                &json!(name),
                &format!("must be spec.names.plural+\".\"+spec.group ({expected:?})"),
            )];
        }
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bindings_need_a_valid_role_ref_that_never_changes() {
        let binding = json!({"kind": "RoleBinding", "metadata": {"name": "b"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"},
            "subjects": [{"kind": "User", "name": "alice"}]});
        assert!(BindingStrategy.validate(&binding).is_empty());
        let mut changed = binding.clone();
        changed["roleRef"]["name"] = json!("other");
        assert_eq!(
            BindingStrategy.validate_update(&changed, &binding)[0].field,
            "roleRef"
        );
        let bad = json!({"kind": "ClusterRoleBinding", "roleRef": {"kind": "Role", "name": "x", "apiGroup": "rbac.authorization.k8s.io"},
            "subjects": [{"kind": "ServiceAccount", "name": "sa"}]});
        let fields: Vec<String> = BindingStrategy
            .validate(&bad)
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(fields, ["roleRef.kind", "subjects[0].namespace"]);
    }

    #[test]
    fn priority_classes_default_and_guard_system_names() {
        let mut pc = json!({"metadata": {"name": "high"}, "value": 1000});
        PriorityClassStrategy.defaults(&mut pc);
        assert_eq!(pc["preemptionPolicy"], "PreemptLowerPriority");
        assert!(PriorityClassStrategy.validate(&pc).is_empty());
        let reserved = json!({"metadata": {"name": "system-mine"}, "value": 1});
        let errs = PriorityClassStrategy.validate(&reserved);
        assert_eq!(errs[0].field, "metadata.name");
        assert_eq!(
            errs[0].detail,
            "Forbidden: priority class names with 'system-' prefix are reserved for system use only. error: system-mine is not a known system priority class"
        );
        let too_high = json!({"metadata": {"name": "mine"}, "value": 1_000_000_001});
        assert_eq!(PriorityClassStrategy.validate(&too_high)[0].field, "value");
    }

    #[test]
    fn system_priority_classes_are_exactly_the_bootstrapped_ones() {
        for class in &SYSTEM_PRIORITY_CLASSES {
            let mut obj = class.object();
            PriorityClassStrategy.defaults(&mut obj);
            assert!(PriorityClassStrategy.validate(&obj).is_empty(), "{obj}");
        }
        let wrong_value = json!({"metadata": {"name": "system-node-critical"}, "value": 5});
        assert!(
            PriorityClassStrategy.validate(&wrong_value)[0]
                .detail
                .ends_with("error: value of system-node-critical PriorityClass must be 2000001000")
        );
        let default = json!({"metadata": {"name": "system-cluster-critical"},
            "value": 2_000_000_000, "globalDefault": true});
        assert!(
            PriorityClassStrategy.validate(&default)[0]
                .detail
                .ends_with(
                    "error: globalDefault of system-cluster-critical PriorityClass must be false"
                )
        );
    }
}

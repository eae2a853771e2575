//! The strategies of the built-in resources. Each supplies only hooks (defaults, validation,
//! status and generation rules, field selectors); the generic store does everything else.

pub mod cluster_policy;
pub mod pod_spec;

use serde_json::{Value, json};

use crate::endpoints::status_error::FieldError;
use crate::registry::strategy::Strategy;
use crate::registry::validation::{NameRule, immutable, validate_labels};

pub(crate) fn set_default(obj: &mut Value, key: &str, value: Value) {
    if let Some(map) = obj.as_object_mut()
        && map
            .get(key)
            .is_none_or(|v| v.is_null() || v.as_str() == Some(""))
    {
        map.insert(key.to_owned(), value);
    }
}

fn str_at<'a>(obj: &'a Value, pointer: &str) -> Option<&'a str> {
    obj.pointer(pointer).and_then(Value::as_str)
}

pub struct PodStrategy;

impl Strategy for PodStrategy {
    fn defaults(&self, obj: &mut Value) {
        if let Some(spec) = obj.get_mut("spec") {
            pod_spec::defaults(spec, true);
        }
    }
    fn has_status(&self) -> bool {
        true
    }
    fn tracks_generation(&self) -> bool {
        true
    }
    fn prepare_for_create(&self, obj: &mut Value) {
        let qos = qos_class(&obj["spec"]);
        obj["status"] = json!({"phase": "Pending", "qosClass": qos});
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        pod_spec::validate(&obj["spec"], "spec")
    }
    fn graceful_delete(
        &self,
        obj: &Value,
        options: &Value,
    ) -> Option<crate::registry::strategy::GracefulDelete> {
        // Upstream's pod rules: the grace period asked for, else the pod's own (30 s by
        // default); pods not yet on a node and pods that already ended go at once.
        let seconds = options["gracePeriodSeconds"]
            .as_i64()
            .or_else(|| obj["spec"]["terminationGracePeriodSeconds"].as_i64())
            .unwrap_or(30);
        let node = obj["spec"]["nodeName"].as_str().unwrap_or("");
        let phase = obj["status"]["phase"].as_str().unwrap_or("");
        if seconds <= 0 || node.is_empty() || phase == "Succeeded" || phase == "Failed" {
            return None;
        }
        Some(crate::registry::strategy::GracefulDelete {
            seconds,
            node: node.to_owned(),
        })
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        // Only images, activeDeadlineSeconds, tolerations (additions) and a few more may change;
        // compare the spec without the mutable parts.
        let strip = |spec: &Value| {
            let mut s = spec.clone();
            if let Some(cs) = s.get_mut("containers").and_then(Value::as_array_mut) {
                for c in cs {
                    c.as_object_mut().map(|m| m.remove("image"));
                }
            }
            if let Some(cs) = s.get_mut("initContainers").and_then(Value::as_array_mut) {
                for c in cs {
                    c.as_object_mut().map(|m| m.remove("image"));
                }
            }
            for field in [
                "activeDeadlineSeconds",
                "tolerations",
                "terminationGracePeriodSeconds",
                "schedulingGates",
            ] {
                s.as_object_mut().map(|m| m.remove(field));
            }
            s
        };
        if strip(&new["spec"]) != strip(&old["spec"]) {
            return vec![FieldError::forbidden(
                "spec",
                "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
            )];
        }
        Vec::new()
    }
    fn field_value(&self, obj: &Value, field: &str) -> Option<String> {
        let pointer = match field {
            "spec.nodeName" => "/spec/nodeName",
            "spec.restartPolicy" => "/spec/restartPolicy",
            "spec.schedulerName" => "/spec/schedulerName",
            "spec.serviceAccountName" => "/spec/serviceAccountName",
            "spec.hostNetwork" => {
                return Some(
                    obj["spec"]["hostNetwork"]
                        .as_bool()
                        .unwrap_or(false)
                        .to_string(),
                );
            }
            "status.phase" => "/status/phase",
            "status.podIP" => "/status/podIP",
            "status.nominatedNodeName" => "/status/nominatedNodeName",
            _ => return None,
        };
        Some(str_at(obj, pointer).unwrap_or("").to_owned())
    }
}

/// The QoS class from cpu/memory requests and limits of every container.
fn qos_class(spec: &Value) -> &'static str {
    let mut any = false;
    let mut guaranteed = true;
    let containers = spec["containers"].as_array().into_iter().flatten();
    let inits = spec["initContainers"].as_array().into_iter().flatten();
    for c in containers.chain(inits) {
        let requests = &c["resources"]["requests"];
        let limits = &c["resources"]["limits"];
        for r in ["cpu", "memory"] {
            let req = requests.get(r).or(limits.get(r));
            let lim = limits.get(r);
            if req.is_some() || lim.is_some() {
                any = true;
            }
            if lim.is_none() || req != lim {
                guaranteed = false;
            }
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

/// Workloads with a pod template and a label selector.
pub struct WorkloadStrategy {
    /// Where the pod template sits (`/spec/template` or `/spec/jobTemplate/spec/template`).
    pub template: &'static str,
    /// Whether `spec.selector` is a LabelSelector (apps) or a plain map (ReplicationController).
    pub map_selector: bool,
    pub kind: WorkloadKind,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum WorkloadKind {
    Deployment,
    ReplicaSet,
    ReplicationController,
    DaemonSet,
    StatefulSet,
    Job,
    CronJob,
}

impl Strategy for WorkloadStrategy {
    fn defaults(&self, obj: &mut Value) {
        let kind = self.kind;
        if let Some(spec) = obj.get_mut("spec") {
            match kind {
                WorkloadKind::Deployment => {
                    set_default(spec, "replicas", json!(1));
                    set_default(spec, "revisionHistoryLimit", json!(10));
                    set_default(spec, "progressDeadlineSeconds", json!(600));
                    set_default(spec, "strategy", json!({}));
                    set_default(&mut spec["strategy"], "type", json!("RollingUpdate"));
                    if spec["strategy"]["type"] == "RollingUpdate" {
                        set_default(&mut spec["strategy"], "rollingUpdate", json!({}));
                        let ru = &mut spec["strategy"]["rollingUpdate"];
                        set_default(ru, "maxUnavailable", json!("25%"));
                        set_default(ru, "maxSurge", json!("25%"));
                    }
                }
                WorkloadKind::ReplicaSet | WorkloadKind::ReplicationController => {
                    set_default(spec, "replicas", json!(1));
                }
                WorkloadKind::DaemonSet => {
                    set_default(spec, "revisionHistoryLimit", json!(10));
                    set_default(spec, "updateStrategy", json!({}));
                    set_default(&mut spec["updateStrategy"], "type", json!("RollingUpdate"));
                    if spec["updateStrategy"]["type"] == "RollingUpdate" {
                        set_default(&mut spec["updateStrategy"], "rollingUpdate", json!({}));
                        let ru = &mut spec["updateStrategy"]["rollingUpdate"];
                        set_default(ru, "maxUnavailable", json!(1));
                        set_default(ru, "maxSurge", json!(0));
                    }
                }
                WorkloadKind::StatefulSet => {
                    set_default(spec, "replicas", json!(1));
                    set_default(spec, "podManagementPolicy", json!("OrderedReady"));
                    set_default(spec, "revisionHistoryLimit", json!(10));
                    set_default(
                        spec,
                        "persistentVolumeClaimRetentionPolicy",
                        json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
                    );
                    set_default(spec, "updateStrategy", json!({"type": "RollingUpdate"}));
                    if spec["updateStrategy"]["type"] == "RollingUpdate" {
                        set_default(
                            &mut spec["updateStrategy"],
                            "rollingUpdate",
                            json!({"partition": 0}),
                        );
                    }
                }
                WorkloadKind::Job => {
                    set_default(spec, "completions", json!(1));
                    set_default(spec, "parallelism", json!(1));
                    set_default(spec, "backoffLimit", json!(6));
                    set_default(spec, "completionMode", json!("NonIndexed"));
                    set_default(spec, "suspend", json!(false));
                    set_default(spec, "manualSelector", Value::Null);
                    set_default(spec, "podReplacementPolicy", json!("TerminatingOrFailed"));
                }
                WorkloadKind::CronJob => {
                    set_default(spec, "concurrencyPolicy", json!("Allow"));
                    set_default(spec, "suspend", json!(false));
                    set_default(spec, "successfulJobsHistoryLimit", json!(3));
                    set_default(spec, "failedJobsHistoryLimit", json!(1));
                }
            }
            if spec.get("manualSelector").is_some_and(Value::is_null) {
                spec.as_object_mut().map(|m| m.remove("manualSelector"));
            }
        }
        // A ReplicationController without a selector selects its template's labels.
        if kind == WorkloadKind::ReplicationController
            && obj["spec"]["selector"]
                .as_object()
                .is_none_or(|m| m.is_empty())
            && let Some(labels) = obj.pointer("/spec/template/metadata/labels").cloned()
        {
            obj["spec"]["selector"] = labels;
        }
        let template = self.template.to_owned() + "/spec";
        if let Some(spec) = obj.pointer_mut(&template) {
            pod_spec::defaults(spec, false);
        }
    }
    fn name_rule(&self) -> NameRule {
        if self.kind == WorkloadKind::StatefulSet {
            NameRule::Label
        } else {
            NameRule::Subdomain
        }
    }
    fn has_status(&self) -> bool {
        true
    }
    fn tracks_generation(&self) -> bool {
        true
    }
    fn orphans_by_default(&self) -> bool {
        self.kind == WorkloadKind::Job
    }
    fn prepare_for_create(&self, obj: &mut Value) {
        if let Some(map) = obj.as_object_mut() {
            map.remove("status");
        }
        if self.kind == WorkloadKind::Job && obj["spec"]["manualSelector"] != json!(true) {
            generate_job_selector(obj);
        }
        if self.kind == WorkloadKind::DaemonSet {
            // A generation the client sets is kept if at least 1; one that is no integer is
            // left for validation to refuse.
            match template_generation(obj) {
                Some(Ok(g)) if g >= 1 => set_template_generation(obj, g),
                Some(Err(_)) => {}
                _ => set_template_generation(obj, 1),
            }
        }
    }
    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        if self.kind == WorkloadKind::DaemonSet {
            // Clients cannot set the generation; a template change bumps it (wrapping as Go's
            // int64 does). The new object is compared as it will be stored, with defaults.
            let old_generation = template_generation(old).and_then(Result::ok).unwrap_or(0);
            let mut defaulted = new.clone();
            self.defaults(&mut defaulted);
            let generation = if defaulted.pointer(self.template) != old.pointer(self.template) {
                old_generation.wrapping_add(1)
            } else {
                old_generation
            };
            set_template_generation(new, generation);
        }
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let template_path = self.template.trim_start_matches('/').replace('/', ".");
        let template = obj.pointer(self.template).unwrap_or(&Value::Null);
        if template.is_null() {
            errs.push(FieldError::required(template_path, ""));
            return errs;
        }
        let labels = &template["metadata"]["labels"];
        errs.extend(validate_labels(
            labels,
            &format!("{template_path}.metadata.labels"),
        ));
        if self.kind != WorkloadKind::CronJob && self.kind != WorkloadKind::Job {
            let selector = &obj["spec"]["selector"];
            if selector.is_null() || selector.as_object().is_some_and(|m| m.is_empty()) {
                errs.push(FieldError::required("spec.selector", ""));
            } else if !selector_matches(selector, labels, self.map_selector) {
                errs.push(FieldError::invalid(
                    format!("{template_path}.metadata.labels"),
                    labels,
                    "`selector` does not match template `labels`",
                ));
            }
        }
        if let Some(r) = obj["spec"]["replicas"].as_i64()
            && r < 0
        {
            errs.push(FieldError::invalid(
                "spec.replicas",
                &json!(r),
                "must be greater than or equal to 0",
            ));
        }
        if self.kind == WorkloadKind::CronJob
            && obj["spec"]["schedule"].as_str().is_none_or(str::is_empty)
        {
            errs.push(FieldError::required("spec.schedule", ""));
        }
        if matches!(self.kind, WorkloadKind::Job | WorkloadKind::CronJob) {
            let policy = template["spec"]["restartPolicy"].as_str().unwrap_or("");
            if !["OnFailure", "Never"].contains(&policy) {
                errs.push(FieldError::not_supported(
                    format!("{template_path}.spec.restartPolicy"),
                    &json!(policy),
                    &["OnFailure", "Never"],
                ));
            }
        }
        errs.extend(pod_spec::validate(
            &template["spec"],
            &format!("{template_path}.spec"),
        ));
        if self.kind == WorkloadKind::DaemonSet
            && let Some(Err(value)) = template_generation(obj)
        {
            errs.push(FieldError::invalid(
                format!("metadata.annotations[{TEMPLATE_GENERATION_ANNOTATION}]"),
                &json!(value),
                "must be an integer",
            ));
        }
        errs
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        if matches!(
            self.kind,
            WorkloadKind::Deployment
                | WorkloadKind::ReplicaSet
                | WorkloadKind::DaemonSet
                | WorkloadKind::StatefulSet
                | WorkloadKind::Job
        ) {
            errs.extend(immutable(new, old, "/spec/selector", "spec.selector"));
        }
        errs
    }
}

/// Where apps/v1 keeps a DaemonSet's template generation (the internal
/// `spec.templateGeneration`): 1 on create, bumped by every change of the pod template.
pub const TEMPLATE_GENERATION_ANNOTATION: &str = "deprecated.daemonset.template.generation";

/// A DaemonSet's template generation, if annotated: the number, or the text that is none.
fn template_generation(obj: &Value) -> Option<Result<i64, &str>> {
    let text = obj["metadata"]["annotations"][TEMPLATE_GENERATION_ANNOTATION].as_str()?;
    Some(text.parse().map_err(|_| text))
}

fn set_template_generation(obj: &mut Value, generation: i64) {
    let Some(map) = obj.as_object_mut() else {
        return;
    };
    let meta = map.entry("metadata").or_insert_with(|| json!({}));
    if !meta.is_object() {
        *meta = json!({});
    }
    let annotations = &mut meta["annotations"];
    if !annotations.is_object() {
        *annotations = json!({});
    }
    annotations[TEMPLATE_GENERATION_ANNOTATION] = json!(generation.to_string());
}

/// A Job without `manualSelector` selects its pods by its own uid, and its template carries
/// the matching labels (the real server generates both on create).
fn generate_job_selector(obj: &mut Value) {
    let uid = obj["metadata"]["uid"].as_str().unwrap_or("").to_owned();
    let name = obj["metadata"]["name"].as_str().unwrap_or("").to_owned();
    obj["spec"]["selector"] = json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}});
    let template = &mut obj["spec"]["template"];
    if !template["metadata"].is_object() {
        template["metadata"] = json!({});
    }
    set_default(&mut template["metadata"], "labels", json!({}));
    let labels = &mut template["metadata"]["labels"];
    for (k, v) in [
        ("batch.kubernetes.io/controller-uid", &uid),
        ("batch.kubernetes.io/job-name", &name),
        ("controller-uid", &uid),
        ("job-name", &name),
    ] {
        labels[k] = json!(v);
    }
}

/// Whether a selector selects a label map.
fn selector_matches(selector: &Value, labels: &Value, map_selector: bool) -> bool {
    let label = |k: &str| labels.get(k).and_then(Value::as_str);
    let match_labels = if map_selector {
        selector
    } else {
        &selector["matchLabels"]
    };
    let labels_ok = match_labels
        .as_object()
        .map(|m| m.iter().all(|(k, v)| label(k) == v.as_str()))
        .unwrap_or(true);
    let exprs_ok = selector["matchExpressions"]
        .as_array()
        .filter(|_| !map_selector)
        .map(|exprs| {
            exprs.iter().all(|e| {
                let key = e["key"].as_str().unwrap_or("");
                let values: Vec<&str> = e["values"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                match e["operator"].as_str().unwrap_or("") {
                    "In" => label(key).is_some_and(|v| values.contains(&v)),
                    "NotIn" => label(key).is_none_or(|v| !values.contains(&v)),
                    "Exists" => label(key).is_some(),
                    "DoesNotExist" => label(key).is_none(),
                    _ => false,
                }
            })
        })
        .unwrap_or(true);
    labels_ok && exprs_ok
}

pub struct NamespaceStrategy;

impl Strategy for NamespaceStrategy {
    fn defaults(&self, obj: &mut Value) {
        if let Some(name) = obj["metadata"]["name"].as_str().map(str::to_owned) {
            let meta = &mut obj["metadata"];
            set_default(meta, "labels", json!({}));
            meta["labels"]["kubernetes.io/metadata.name"] = json!(name);
        }
    }
    fn name_rule(&self) -> NameRule {
        NameRule::Label
    }
    fn has_status(&self) -> bool {
        true
    }
    fn prepare_for_create(&self, obj: &mut Value) {
        obj["status"] = json!({"phase": "Active"});
        let mut finalizers: Vec<Value> = obj["spec"]["finalizers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if !finalizers.iter().any(|f| f == "kubernetes") {
            finalizers.push(json!("kubernetes"));
        }
        obj["spec"] = json!({ "finalizers": finalizers });
    }
    fn field_value(&self, obj: &Value, field: &str) -> Option<String> {
        (field == "status.phase").then(|| str_at(obj, "/status/phase").unwrap_or("").to_owned())
    }
    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        // spec.finalizers changes only through namespaces/{name}/finalize.
        if !new["spec"].is_object() {
            new["spec"] = json!({});
        }
        match old["spec"]["finalizers"].clone() {
            Value::Null => {
                new["spec"].as_object_mut().map(|m| m.remove("finalizers"));
            }
            finalizers => new["spec"]["finalizers"] = finalizers,
        }
    }
    fn pending_finalizers(&self, obj: &Value) -> bool {
        obj["spec"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty())
    }
    fn prepare_for_delete(&self, obj: &mut Value) {
        obj["status"]["phase"] = json!("Terminating");
    }
}

pub struct ServiceStrategy;

impl Strategy for ServiceStrategy {
    fn defaults(&self, obj: &mut Value) {
        let Some(spec) = obj.get_mut("spec") else {
            return;
        };
        set_default(spec, "type", json!("ClusterIP"));
        set_default(spec, "sessionAffinity", json!("None"));
        let ty = spec["type"].as_str().unwrap_or("").to_owned();
        if ty != "ExternalName" {
            set_default(spec, "internalTrafficPolicy", json!("Cluster"));
        }
        if ty == "NodePort" || ty == "LoadBalancer" {
            set_default(spec, "externalTrafficPolicy", json!("Cluster"));
        }
        if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
            for p in ports {
                set_default(p, "protocol", json!("TCP"));
                if p.get("targetPort").is_none_or(Value::is_null)
                    && let Some(port) = p.get("port").cloned()
                {
                    p["targetPort"] = port;
                }
            }
        }
    }
    fn name_rule(&self) -> NameRule {
        NameRule::Dns1035
    }
    fn has_status(&self) -> bool {
        true
    }
    fn prepare_for_create(&self, obj: &mut Value) {
        obj["status"] = json!({"loadBalancer": {}});
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let spec = &obj["spec"];
        let ty = spec["type"].as_str().unwrap_or("");
        if !["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"].contains(&ty) {
            errs.push(FieldError::not_supported(
                "spec.type",
                &json!(ty),
                &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
            ));
        }
        let ports = spec["ports"].as_array();
        if ty != "ExternalName" && ports.is_none_or(Vec::is_empty) && spec["clusterIP"] != "None" {
            errs.push(FieldError::required("spec.ports", ""));
        }
        for (i, p) in ports.into_iter().flatten().enumerate() {
            match p["port"].as_i64() {
                Some(n) if (1..=65535).contains(&n) => {}
                Some(n) => errs.push(FieldError::invalid(
                    format!("spec.ports[{i}].port"),
                    &json!(n),
                    "must be between 1 and 65535, inclusive",
                )),
                None => errs.push(FieldError::required(format!("spec.ports[{i}].port"), "")),
            }
            if ports.is_some_and(|ps| ps.len() > 1) && p["name"].as_str().is_none_or(str::is_empty)
            {
                errs.push(FieldError::required(format!("spec.ports[{i}].name"), ""));
            }
        }
        errs
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let old_ip = &old["spec"]["clusterIP"];
        let new_ip = &new["spec"]["clusterIP"];
        if !old_ip.is_null() && !new_ip.is_null() && old_ip != new_ip {
            return vec![FieldError::invalid(
                "spec.clusterIPs[0]",
                new_ip,
                "may not change once set",
            )];
        }
        Vec::new()
    }
}

/// ConfigMaps and Secrets: key rules and `immutable`.
pub struct DataStrategy {
    pub secret: bool,
}

fn config_key_ok(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 253
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && key != "."
        && key != ".."
}

impl Strategy for DataStrategy {
    fn defaults(&self, obj: &mut Value) {
        if self.secret {
            set_default(obj, "type", json!("Opaque"));
            // stringData is write-only: merge it into data as base64.
            if let Some(Value::Object(string_data)) =
                obj.as_object_mut().and_then(|m| m.remove("stringData"))
            {
                use base64::Engine;
                set_default(obj, "data", json!({}));
                for (k, v) in string_data {
                    let text = v.as_str().unwrap_or_default();
                    obj["data"][k] = json!(base64::engine::general_purpose::STANDARD.encode(text));
                }
            }
        }
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        for field in ["data", "binaryData"] {
            for (k, v) in obj[field].as_object().into_iter().flatten() {
                if !config_key_ok(k) {
                    errs.push(FieldError::invalid(
                        format!("{field}[{k}]"),
                        &json!(k),
                        "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
                    ));
                }
                if (self.secret || field == "binaryData")
                    && v.as_str().is_some_and(|s| {
                        use base64::Engine;
                        base64::engine::general_purpose::STANDARD.decode(s).is_err()
                    })
                {
                    errs.push(FieldError::invalid(
                        format!("{field}[{k}]"),
                        &json!("<value omitted>"),
                        "illegal base64 data",
                    ));
                }
            }
        }
        errs
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        if old["immutable"] == json!(true) {
            for field in ["data", "binaryData", "immutable"] {
                if new[field] != old[field] {
                    errs.push(FieldError::forbidden(
                        field,
                        "field is immutable when `immutable` is set",
                    ));
                }
            }
        }
        if self.secret {
            errs.extend(immutable(new, old, "/type", "type"));
        }
        errs
    }
    fn field_value(&self, obj: &Value, field: &str) -> Option<String> {
        (self.secret && field == "type").then(|| obj["type"].as_str().unwrap_or("").to_owned())
    }
}

pub struct EventStrategy;

impl Strategy for EventStrategy {
    fn name_rule(&self) -> NameRule {
        NameRule::PathSegment
    }
    fn field_value(&self, obj: &Value, field: &str) -> Option<String> {
        let v = match field {
            "involvedObject.kind"
            | "involvedObject.namespace"
            | "involvedObject.name"
            | "involvedObject.uid"
            | "involvedObject.apiVersion"
            | "involvedObject.resourceVersion"
            | "involvedObject.fieldPath" => {
                obj["involvedObject"][field.trim_start_matches("involvedObject.")].as_str()
            }
            "reason" | "reportingComponent" | "type" => obj[field].as_str(),
            "source" => obj["source"]["component"].as_str(),
            _ => return None,
        };
        Some(v.unwrap_or("").to_owned())
    }
}

pub struct NodeStrategy;

impl Strategy for NodeStrategy {
    fn has_status(&self) -> bool {
        true
    }
    fn field_value(&self, obj: &Value, field: &str) -> Option<String> {
        (field == "spec.unschedulable").then(|| {
            obj["spec"]["unschedulable"]
                .as_bool()
                .unwrap_or(false)
                .to_string()
        })
    }
}

pub struct EndpointSliceStrategy;

impl Strategy for EndpointSliceStrategy {
    fn tracks_generation(&self) -> bool {
        true
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let ty = obj["addressType"].as_str().unwrap_or("");
        if ty.is_empty() {
            return vec![FieldError::required("addressType", "")];
        }
        if !["IPv4", "IPv6", "FQDN"].contains(&ty) {
            return vec![FieldError::not_supported(
                "addressType",
                &json!(ty),
                &["FQDN", "IPv4", "IPv6"],
            )];
        }
        Vec::new()
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        immutable(new, old, "/addressType", "addressType")
            .into_iter()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(spec: Value) -> Value {
        let strategy = WorkloadStrategy {
            template: "/spec/template",
            map_selector: false,
            kind: WorkloadKind::Deployment,
        };
        let mut obj = json!({"spec": spec});
        strategy.defaults(&mut obj);
        obj
    }

    #[test]
    fn deployment_defaults_fill_an_empty_strategy() {
        // `kubectl create deployment` sends `strategy: {}` (protobuf), which still defaults.
        for spec in [
            json!({"template": {"spec": {}}}),
            json!({"strategy": {}, "template": {"spec": {}}}),
        ] {
            let d = deployment(spec);
            assert_eq!(
                d["spec"]["strategy"],
                json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
            );
            assert_eq!(d["spec"]["replicas"], 1);
            assert_eq!(d["spec"]["revisionHistoryLimit"], 10);
            assert_eq!(d["spec"]["progressDeadlineSeconds"], 600);
            assert_eq!(d["spec"]["template"]["spec"]["restartPolicy"], "Always");
        }
        let recreate =
            deployment(json!({"strategy": {"type": "Recreate"}, "template": {"spec": {}}}));
        assert_eq!(recreate["spec"]["strategy"], json!({"type": "Recreate"}));
    }

    fn daemonset_strategy() -> WorkloadStrategy {
        WorkloadStrategy {
            template: "/spec/template",
            map_selector: false,
            kind: WorkloadKind::DaemonSet,
        }
    }

    /// A DaemonSet as the store keeps it: defaulted and prepared.
    fn created_daemonset(annotations: Value) -> Value {
        let strategy = daemonset_strategy();
        let mut ds = json!({"metadata": {"name": "ds", "annotations": annotations},
            "spec": {"selector": {"matchLabels": {"app": "ds"}},
                "template": {"metadata": {"labels": {"app": "ds"}},
                    "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}}}});
        strategy.defaults(&mut ds);
        strategy.prepare_for_create(&mut ds);
        ds
    }

    fn generation_of(ds: &Value) -> &str {
        ds["metadata"]["annotations"][TEMPLATE_GENERATION_ANNOTATION]
            .as_str()
            .unwrap_or("")
    }

    #[test]
    fn daemonsets_start_at_template_generation_one() {
        assert_eq!(generation_of(&created_daemonset(Value::Null)), "1");
        assert_eq!(
            generation_of(&created_daemonset(
                json!({TEMPLATE_GENERATION_ANNOTATION: "0"})
            )),
            "1"
        );
        assert_eq!(
            generation_of(&created_daemonset(
                json!({TEMPLATE_GENERATION_ANNOTATION: "+5"})
            )),
            "5"
        );
        let bad = created_daemonset(json!({TEMPLATE_GENERATION_ANNOTATION: "five"}));
        let errs = daemonset_strategy().validate(&bad);
        assert_eq!(
            errs[0].field,
            "metadata.annotations[deprecated.daemonset.template.generation]"
        );
        assert!(
            daemonset_strategy()
                .validate(&created_daemonset(Value::Null))
                .is_empty()
        );
    }

    #[test]
    fn template_changes_bump_the_template_generation() {
        let strategy = daemonset_strategy();
        let old = created_daemonset(Value::Null);
        let update = |change: &dyn Fn(&mut Value)| {
            let mut new = old.clone();
            change(&mut new);
            strategy.prepare_for_update(&mut new, &old);
            generation_of(&new).to_owned()
        };
        assert_eq!(
            update(
                &|ds| ds["spec"]["template"]["spec"]["containers"][0]["image"] =
                    json!("busybox:1.37")
            ),
            "2"
        );
        assert_eq!(
            update(&|ds| ds["metadata"]["labels"] = json!({"x": "y"})),
            "1"
        );
        assert_eq!(update(&|ds| ds["spec"]["minReadySeconds"] = json!(5)), "1");
        // Clients cannot set it, nor drop it.
        assert_eq!(
            update(
                &|ds| ds["metadata"]["annotations"][TEMPLATE_GENERATION_ANNOTATION] = json!("9")
            ),
            "1"
        );
        assert_eq!(
            update(&|ds| {
                ds["metadata"]
                    .as_object_mut()
                    .unwrap()
                    .remove("annotations");
            }),
            "1"
        );
        // A replaced object without the server's defaults has the same template.
        assert_eq!(
            update(&|ds| ds["spec"]["template"]["spec"] =
                json!({"containers": [{"name": "c", "image": "busybox:1.36"}]})),
            "1"
        );
    }

    #[test]
    fn selector_must_match_the_template() {
        let strategy = WorkloadStrategy {
            template: "/spec/template",
            map_selector: false,
            kind: WorkloadKind::Deployment,
        };
        let obj = json!({"metadata": {"name": "d"}, "spec": {"selector": {"matchLabels": {"app": "a"}},
            "template": {"metadata": {"labels": {"app": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
        let errs = strategy.validate(&obj);
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].field, "spec.template.metadata.labels");
        assert!(
            errs[0]
                .detail
                .contains("`selector` does not match template `labels`")
        );
    }
}

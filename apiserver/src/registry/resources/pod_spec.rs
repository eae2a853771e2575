//! Defaults and validation of a PodSpec, shared by Pods and every pod template
//! (Deployment, ReplicaSet, ReplicationController, DaemonSet, StatefulSet, Job, CronJob).

use serde_json::{Value, json};

use super::set_default;
use crate::endpoints::status_error::FieldError;
use crate::registry::validation::dns_label_errors;

/// `Always` for `:latest` or untagged images, else `IfNotPresent`.
fn pull_policy_for(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

fn probe_defaults(probe: &mut Value) {
    if !probe.is_object() {
        return;
    }
    set_default(probe, "timeoutSeconds", json!(1));
    set_default(probe, "periodSeconds", json!(10));
    set_default(probe, "successThreshold", json!(1));
    set_default(probe, "failureThreshold", json!(3));
    if let Some(http) = probe.get_mut("httpGet") {
        set_default(http, "path", json!("/"));
        set_default(http, "scheme", json!("HTTP"));
    }
}

fn container_defaults(c: &mut Value) {
    let image = c["image"].as_str().unwrap_or("").to_owned();
    if !image.is_empty() {
        set_default(c, "imagePullPolicy", json!(pull_policy_for(&image)));
    }
    set_default(c, "terminationMessagePath", json!("/dev/termination-log"));
    set_default(c, "terminationMessagePolicy", json!("File"));
    if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports {
            set_default(p, "protocol", json!("TCP"));
        }
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = c.get_mut(probe) {
            probe_defaults(p);
        }
    }
}

/// `SetDefaults_PodSpec` plus the container, probe and volume defaults; `is_pod` adds the
/// Pod-only defaults.
pub fn defaults(spec: &mut Value, is_pod: bool) {
    if !spec.is_object() {
        return;
    }
    set_default(spec, "dnsPolicy", json!("ClusterFirst"));
    set_default(spec, "restartPolicy", json!("Always"));
    set_default(spec, "securityContext", json!({}));
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    set_default(spec, "schedulerName", json!("default-scheduler"));
    if is_pod {
        set_default(spec, "enableServiceLinks", json!(true));
    }
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        if let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) {
            for c in cs {
                container_defaults(c);
            }
        }
    }
    if let Some(volumes) = spec.get_mut("volumes").and_then(Value::as_array_mut) {
        for v in volumes {
            let Some(map) = v.as_object_mut() else {
                continue;
            };
            if map.keys().all(|k| k == "name") {
                map.insert("emptyDir".into(), json!({}));
            }
            for source in ["secret", "configMap", "downwardAPI", "projected"] {
                if let Some(s) = map.get_mut(source) {
                    set_default(s, "defaultMode", json!(420));
                }
            }
        }
    }
}

/// Validates a PodSpec at `path` (e.g. `spec` or `spec.template.spec`).
pub fn validate(spec: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut names = std::collections::HashSet::new();
    match spec["containers"].as_array() {
        Some(cs) if !cs.is_empty() => {
            for (i, c) in cs.iter().enumerate() {
                errs.extend(validate_container(
                    c,
                    &format!("{path}.containers[{i}]"),
                    &mut names,
                ));
            }
        }
        _ => errs.push(FieldError::required(format!("{path}.containers"), "")),
    }
    for list in ["initContainers", "ephemeralContainers"] {
        if let Some(cs) = spec[list].as_array() {
            for (i, c) in cs.iter().enumerate() {
                errs.extend(validate_container(
                    c,
                    &format!("{path}.{list}[{i}]"),
                    &mut names,
                ));
            }
        }
    }
    if let Some(policy) = spec["restartPolicy"].as_str()
        && !["Always", "OnFailure", "Never"].contains(&policy)
    {
        errs.push(FieldError::not_supported(
            format!("{path}.restartPolicy"),
            &json!(policy),
            &["Always", "OnFailure", "Never"],
        ));
    }
    if let Some(policy) = spec["dnsPolicy"].as_str()
        && !["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"].contains(&policy)
    {
        errs.push(FieldError::not_supported(
            format!("{path}.dnsPolicy"),
            &json!(policy),
            &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
        ));
    }
    if let Some(grace) = spec["terminationGracePeriodSeconds"].as_i64()
        && grace < 0
    {
        errs.push(FieldError::invalid(
            format!("{path}.terminationGracePeriodSeconds"),
            &json!(grace),
            "must be greater than or equal to 0",
        ));
    }
    errs
}

/// `pods/ephemeralcontainers` may only add: every existing ephemeral container stays as it was.
pub fn validate_ephemeral_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let empty = Vec::new();
    let before = old["spec"]["ephemeralContainers"]
        .as_array()
        .unwrap_or(&empty);
    let after = new["spec"]["ephemeralContainers"]
        .as_array()
        .unwrap_or(&empty);
    let mut errs = Vec::new();
    for existing in before {
        let name = existing["name"].as_str().unwrap_or("");
        match after.iter().position(|c| c["name"] == existing["name"]) {
            None => errs.push(FieldError::forbidden(
                "spec.ephemeralContainers",
                &format!("existing ephemeral containers \"{name}\" may not be removed"),
            )),
            Some(i) if after[i] != *existing => errs.push(FieldError::forbidden(
                format!("spec.ephemeralContainers[{i}]"),
                "existing ephemeral containers may not be changed",
            )),
            Some(_) => {}
        }
    }
    errs.extend(validate(&new["spec"], "spec"));
    errs
}

fn validate_container(
    c: &Value,
    path: &str,
    names: &mut std::collections::HashSet<String>,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    match c["name"].as_str() {
        Some(name) if !name.is_empty() => {
            for e in dns_label_errors(name) {
                errs.push(FieldError::invalid(format!("{path}.name"), &json!(name), e));
            }
            if !names.insert(name.to_owned()) {
                errs.push(FieldError::duplicate(format!("{path}.name"), &json!(name)));
            }
        }
        _ => errs.push(FieldError::required(format!("{path}.name"), "")),
    }
    match c["image"].as_str() {
        Some(image) if !image.is_empty() => {
            if image.trim() != image {
                errs.push(FieldError::invalid(
                    format!("{path}.image"),
                    &json!(image),
                    "must not have leading or trailing whitespace",
                ));
            }
        }
        _ => errs.push(FieldError::required(format!("{path}.image"), "")),
    }
    if let Some(ports) = c["ports"].as_array() {
        for (i, p) in ports.iter().enumerate() {
            let ppath = format!("{path}.ports[{i}]");
            match p["containerPort"].as_i64() {
                None | Some(0) => {
                    errs.push(FieldError::required(format!("{ppath}.containerPort"), ""))
                }
                Some(n) if !(1..=65535).contains(&n) => errs.push(FieldError::invalid(
                    format!("{ppath}.containerPort"),
                    &json!(n),
                    "must be between 1 and 65535, inclusive",
                )),
                _ => {}
            }
            if let Some(proto) = p["protocol"].as_str()
                && !["SCTP", "TCP", "UDP"].contains(&proto)
            {
                errs.push(FieldError::not_supported(
                    format!("{ppath}.protocol"),
                    &json!(proto),
                    &["SCTP", "TCP", "UDP"],
                ));
            }
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_defaults_match_the_real_server() {
        let mut spec = json!({"containers": [{"name": "a", "image": "nginx", "ports": [{"containerPort": 80}]},
                                             {"name": "b", "image": "nginx:1.27"}]});
        defaults(&mut spec, true);
        assert_eq!(spec["restartPolicy"], "Always");
        assert_eq!(spec["dnsPolicy"], "ClusterFirst");
        assert_eq!(spec["terminationGracePeriodSeconds"], 30);
        assert_eq!(spec["schedulerName"], "default-scheduler");
        assert_eq!(spec["enableServiceLinks"], true);
        assert_eq!(spec["containers"][0]["imagePullPolicy"], "Always");
        assert_eq!(spec["containers"][1]["imagePullPolicy"], "IfNotPresent");
        assert_eq!(spec["containers"][0]["ports"][0]["protocol"], "TCP");
        assert_eq!(
            spec["containers"][0]["terminationMessagePath"],
            "/dev/termination-log"
        );
    }

    #[test]
    fn validation_reports_field_paths() {
        let spec = json!({"containers": [{"name": "a"}, {"name": "a", "image": "x", "ports": [{"containerPort": 70000}]}],
                          "restartPolicy": "Sometimes"});
        let errs: Vec<String> = validate(&spec, "spec")
            .iter()
            .map(|e| format!("{}: {}", e.field, e.detail))
            .collect();
        assert_eq!(
            errs,
            [
                "spec.containers[0].image: Required value",
                "spec.containers[1].name: Duplicate value: \"a\"",
                "spec.containers[1].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
                "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"",
            ]
        );
    }
}

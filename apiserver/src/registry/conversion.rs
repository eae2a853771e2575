//! Versions served over another stored form: `autoscaling/v1` HorizontalPodAutoscalers over
//! `autoscaling/v2`, and `events.k8s.io/v1` Events over core `v1` Events. Each pair converts
//! both ways; the generic store stores one form and converts at its boundary.

use serde_json::{Map, Value, json};

/// How a served version maps onto its stored resource.
pub struct Conversion {
    /// Group and plural of the stored resource, and its version.
    pub storage: (&'static str, &'static str, &'static str),
    pub to_storage: fn(Value) -> Value,
    pub from_storage: fn(Value) -> Value,
}

/// Annotation holding the autoscaling/v2 metrics that autoscaling/v1 cannot express.
const HPA_METRICS_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/metrics";
const HPA_CURRENT_METRICS_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/current-metrics";
const HPA_CONDITIONS_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/conditions";

fn is_cpu_utilization(metric: &Value) -> bool {
    metric["type"] == "Resource"
        && metric["resource"]["name"] == "cpu"
        && metric["resource"]["target"]["type"] == "Utilization"
}

fn take_annotation(obj: &mut Value, key: &str) -> Option<Value> {
    // `pointer_mut`, not indexing: indexing would insert a null `annotations`.
    let annotations = obj.pointer_mut("/metadata/annotations")?.as_object_mut()?;
    let raw = annotations.remove(key)?;
    if annotations.is_empty() {
        obj["metadata"]
            .as_object_mut()
            .map(|m| m.remove("annotations"));
    }
    raw.as_str().and_then(|s| serde_json::from_str(s).ok())
}

fn put_annotation(obj: &mut Value, key: &str, value: &Value) {
    if !obj["metadata"]["annotations"].is_object() {
        obj["metadata"]["annotations"] = json!({});
    }
    obj["metadata"]["annotations"][key] = json!(value.to_string());
}

/// The status fields both autoscaling versions carry as they are.
fn shared_status(status: &Value) -> Map<String, Value> {
    [
        "observedGeneration",
        "lastScaleTime",
        "currentReplicas",
        "desiredReplicas",
    ]
    .into_iter()
    .filter(|key| !status[*key].is_null())
    .map(|key| (key.to_owned(), status[key].clone()))
    .collect()
}

/// autoscaling/v1 → autoscaling/v2.
pub fn hpa_v1_to_v2(mut v1: Value) -> Value {
    let mut metrics: Vec<Value> = take_annotation(&mut v1, HPA_METRICS_ANNOTATION)
        .and_then(|m| m.as_array().cloned())
        .unwrap_or_default();
    if let Some(cpu) = v1["spec"]["targetCPUUtilizationPercentage"].as_i64() {
        metrics.insert(0, json!({"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": cpu}}}));
    }
    let current = take_annotation(&mut v1, HPA_CURRENT_METRICS_ANNOTATION);
    let conditions = take_annotation(&mut v1, HPA_CONDITIONS_ANNOTATION);
    let spec = &v1["spec"];
    let mut spec2 =
        json!({"scaleTargetRef": spec["scaleTargetRef"], "maxReplicas": spec["maxReplicas"]});
    if !spec["minReplicas"].is_null() {
        spec2["minReplicas"] = spec["minReplicas"].clone();
    }
    if !metrics.is_empty() {
        spec2["metrics"] = json!(metrics);
    }
    let status = &v1["status"];
    let mut status2 = shared_status(status);
    let mut current_metrics: Vec<Value> = current
        .and_then(|c| c.as_array().cloned())
        .unwrap_or_default();
    if let Some(cpu) = status["currentCPUUtilizationPercentage"].as_i64() {
        current_metrics.insert(0, json!({"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": cpu}}}));
    }
    if !current_metrics.is_empty() {
        status2.insert("currentMetrics".into(), json!(current_metrics));
    }
    if let Some(c) = conditions {
        status2.insert("conditions".into(), c);
    }
    let mut v2 = json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": v1["metadata"], "spec": spec2});
    if !status2.is_empty() || v1.get("status").is_some() {
        v2["status"] = Value::Object(status2);
    }
    v2
}

/// autoscaling/v2 → autoscaling/v1.
pub fn hpa_v2_to_v1(v2: Value) -> Value {
    let spec = &v2["spec"];
    let metrics: Vec<Value> = spec["metrics"].as_array().cloned().unwrap_or_default();
    let mut v1 = json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler", "metadata": v2["metadata"],
                        "spec": {"scaleTargetRef": spec["scaleTargetRef"], "maxReplicas": spec["maxReplicas"]}});
    if !spec["minReplicas"].is_null() {
        v1["spec"]["minReplicas"] = spec["minReplicas"].clone();
    }
    let (cpu, others): (Vec<&Value>, Vec<&Value>) =
        metrics.iter().partition(|m| is_cpu_utilization(m));
    if let Some(cpu) = cpu.first() {
        v1["spec"]["targetCPUUtilizationPercentage"] =
            cpu["resource"]["target"]["averageUtilization"].clone();
    }
    if !others.is_empty() {
        put_annotation(&mut v1, HPA_METRICS_ANNOTATION, &json!(others));
    }
    let status = &v2["status"];
    if status.is_object() {
        let mut s1 = shared_status(status);
        let current: Vec<Value> = status["currentMetrics"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let (cpu, others): (Vec<&Value>, Vec<&Value>) = current
            .iter()
            .partition(|m| m["type"] == "Resource" && m["resource"]["name"] == "cpu");
        if let Some(u) = cpu
            .first()
            .and_then(|c| c["resource"]["current"]["averageUtilization"].as_i64())
        {
            s1.insert("currentCPUUtilizationPercentage".into(), json!(u));
        }
        if !others.is_empty() {
            put_annotation(&mut v1, HPA_CURRENT_METRICS_ANNOTATION, &json!(others));
        }
        if let Some(conditions) = status["conditions"].as_array().filter(|c| !c.is_empty()) {
            put_annotation(&mut v1, HPA_CONDITIONS_ANNOTATION, &json!(conditions));
        }
        s1.entry("currentReplicas").or_insert(json!(0));
        v1["status"] = Value::Object(s1);
    }
    v1
}

/// Field renames between events.k8s.io/v1 (left) and core v1 (right).
const EVENT_RENAMES: [(&str, &str); 6] = [
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

fn rename(
    mut obj: Value,
    api_version: &str,
    pairs: impl Iterator<Item = (&'static str, &'static str)>,
) -> Value {
    if let Some(map) = obj.as_object_mut() {
        for (from, to) in pairs {
            if let Some(v) = map.remove(from) {
                map.insert(to.into(), v);
            }
        }
        map.insert("apiVersion".into(), json!(api_version));
    }
    obj
}

/// events.k8s.io/v1 → core v1.
pub fn event_to_core(event: Value) -> Value {
    let mut core = rename(event, "v1", EVENT_RENAMES.iter().copied());
    if let Some(controller) = core
        .as_object_mut()
        .and_then(|m| m.remove("reportingController"))
    {
        core["reportingComponent"] = controller;
    }
    core
}

/// core v1 → events.k8s.io/v1.
pub fn event_from_core(core: Value) -> Value {
    let mut event = rename(
        core,
        "events.k8s.io/v1",
        EVENT_RENAMES.iter().map(|(a, b)| (*b, *a)),
    );
    if let Some(component) = event
        .as_object_mut()
        .and_then(|m| m.remove("reportingComponent"))
    {
        event["reportingController"] = component;
    }
    event
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hpa_round_trips_through_v2_keeping_cpu_and_other_metrics() {
        let v1 = json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "h"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                     "minReplicas": 2, "maxReplicas": 5, "targetCPUUtilizationPercentage": 70}});
        let v2 = hpa_v1_to_v2(v1.clone());
        assert_eq!(
            v2["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
            70
        );
        assert_eq!(hpa_v2_to_v1(v2.clone())["spec"], v1["spec"]);
        let mut with_memory = v2.clone();
        with_memory["spec"]["metrics"].as_array_mut().unwrap().push(json!({"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "100Mi"}}}));
        let back = hpa_v1_to_v2(hpa_v2_to_v1(with_memory.clone()));
        assert_eq!(back["spec"]["metrics"], with_memory["spec"]["metrics"]);
        assert!(back["metadata"].get("annotations").is_none());
    }

    #[test]
    fn events_rename_their_fields_both_ways() {
        let core = json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e"}, "involvedObject": {"kind": "Pod", "name": "p"},
                          "message": "hello", "count": 3, "reportingComponent": "kubelet", "reason": "Started"});
        let event = event_from_core(core.clone());
        assert_eq!(event["regarding"]["name"], "p");
        assert_eq!(event["note"], "hello");
        assert_eq!(event["deprecatedCount"], 3);
        assert_eq!(event["reportingController"], "kubelet");
        assert_eq!(event["apiVersion"], "events.k8s.io/v1");
        assert_eq!(event_to_core(event), core);
    }
}

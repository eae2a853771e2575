//! Whether a pod may go to a node, as far as the node's taints and the pod's nodeSelector and
//! required node affinity decide it: the predicates the scheduler filters with and the
//! DaemonSet controller picks its nodes by (upstream shares them through
//! k8s.io/component-helpers).
//!
//! Pure functions over k8s-openapi types.

use k8s_openapi::api::core::v1::{
    Node, NodeSelectorRequirement, NodeSelectorTerm, Pod, PodSpec, Taint, Toleration,
};
use kube::ResourceExt;

/// The field a `matchFields` requirement may select nodes by.
pub const NODE_NAME_FIELD: &str = "metadata.name";

/// Whether one of `tolerations` tolerates `taint`.
pub fn tolerated(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| tolerates(t, taint))
}

/// Whether one toleration tolerates `taint`.
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    let effect_ok = t
        .effect
        .as_deref()
        .is_none_or(|e| e.is_empty() || e == taint.effect);
    let key_ok = t.key.as_deref().is_none_or(|k| k.is_empty())
        && t.operator.as_deref() == Some("Exists")
        || t.key.as_deref() == Some(taint.key.as_str());
    let value_ok = match t.operator.as_deref() {
        Some("Exists") => true,
        _ => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
    };
    effect_ok && key_ok && value_ok
}

/// The first of `taints` passing `applies` that no toleration tolerates.
pub fn untolerated_taint<'a>(
    taints: &'a [Taint],
    tolerations: &[Toleration],
    applies: impl Fn(&Taint) -> bool,
) -> Option<&'a Taint> {
    taints
        .iter()
        .find(|t| applies(t) && !tolerated(tolerations, t))
}

/// Whether a node selector requirement holds for `value` (the label's value, or the node's
/// name for `matchFields`; `None` when the label is absent).
pub fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(bound)) = (
                value.and_then(|v| v.parse::<i64>().ok()),
                values.first().and_then(|b| b.parse::<i64>().ok()),
            ) else {
                return false;
            };
            if r.operator == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

/// Whether a node selector term selects `node`: every expression over its labels and every
/// field requirement over its name holds. A term with neither selects nothing.
pub fn term_matches(term: &NodeSelectorTerm, node: &Node) -> bool {
    let labels = node.labels();
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    let name = node.name_any();
    exprs
        .iter()
        .all(|r| requirement_matches(r, labels.get(&r.key).map(String::as_str)))
        && fields
            .iter()
            .all(|r| r.key == NODE_NAME_FIELD && requirement_matches(r, Some(name.as_str())))
}

/// Whether a pod spec's nodeSelector and requiredDuringSchedulingIgnoredDuringExecution node
/// affinity both select `node`.
pub fn spec_affinity_matches(spec: &PodSpec, node: &Node) -> bool {
    let labels = node.labels();
    let selector_ok = spec
        .node_selector
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    if !selector_ok {
        return false;
    }
    let Some(required) = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
    else {
        return true;
    };
    required
        .node_selector_terms
        .iter()
        .any(|term| term_matches(term, node))
}

/// nodeSelector and requiredDuringSchedulingIgnoredDuringExecution node affinity of a pod.
pub fn affinity_matches(pod: &Pod, node: &Node) -> bool {
    pod.spec
        .as_ref()
        .is_none_or(|spec| spec_affinity_matches(spec, node))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Affinity, NodeAffinity, NodeSelector};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use std::collections::BTreeMap;

    fn node(name: &str, labels: &[(&str, &str)]) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| ((*k).into(), (*v).into()))
                        .collect(),
                ),
                ..ObjectMeta::default()
            },
            ..Node::default()
        }
    }

    fn requirement(key: &str, op: &str, values: &[&str]) -> NodeSelectorRequirement {
        NodeSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(values.iter().map(|v| (*v).into()).collect()),
        }
    }

    fn with_terms(terms: Vec<NodeSelectorTerm>) -> PodSpec {
        PodSpec {
            affinity: Some(Affinity {
                node_affinity: Some(NodeAffinity {
                    required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                        node_selector_terms: terms,
                    }),
                    ..NodeAffinity::default()
                }),
                ..Affinity::default()
            }),
            ..PodSpec::default()
        }
    }

    fn taint(key: &str, value: Option<&str>, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            value: value.map(Into::into),
            effect: effect.into(),
            ..Taint::default()
        }
    }

    fn toleration(key: &str, op: &str, value: Option<&str>, effect: &str) -> Toleration {
        Toleration {
            key: Some(key.into()).filter(|k: &String| !k.is_empty()),
            operator: Some(op.into()),
            value: value.map(Into::into),
            effect: Some(effect.into()).filter(|e: &String| !e.is_empty()),
            ..Toleration::default()
        }
    }

    #[test]
    fn tolerations_match_by_key_value_and_effect() {
        let gpu = taint("dedicated", Some("gpu"), "NoSchedule");
        assert!(tolerated(
            &[toleration("dedicated", "Equal", Some("gpu"), "NoSchedule")],
            &gpu
        ));
        assert!(!tolerated(
            &[toleration("dedicated", "Equal", Some("cpu"), "NoSchedule")],
            &gpu
        ));
        assert!(!tolerated(
            &[toleration("dedicated", "Equal", Some("gpu"), "NoExecute")],
            &gpu
        ));
        // Exists ignores the value; an empty effect covers every effect.
        assert!(tolerated(
            &[toleration("dedicated", "Exists", None, "")],
            &gpu
        ));
        // An empty key with Exists tolerates everything; with Equal it tolerates nothing.
        assert!(tolerated(&[toleration("", "Exists", None, "")], &gpu));
        assert!(!tolerated(
            &[toleration("", "Equal", Some("gpu"), "")],
            &gpu
        ));
    }

    #[test]
    fn untolerated_taint_only_looks_at_the_effects_asked_for() {
        let taints = [
            taint("a", None, "PreferNoSchedule"),
            taint("b", None, "NoExecute"),
        ];
        let hard = |t: &Taint| t.effect == "NoSchedule" || t.effect == "NoExecute";
        assert_eq!(
            untolerated_taint(&taints, &[], hard).map(|t| t.key.as_str()),
            Some("b")
        );
        let tolerations = [toleration("b", "Exists", None, "NoExecute")];
        assert!(untolerated_taint(&taints, &tolerations, hard).is_none());
    }

    #[test]
    fn requirement_operators() {
        let r = requirement("zone", "In", &["a", "b"]);
        assert!(requirement_matches(&r, Some("a")));
        assert!(!requirement_matches(&r, Some("c")));
        assert!(!requirement_matches(&r, None));
        let r = requirement("zone", "NotIn", &["a"]);
        assert!(requirement_matches(&r, None));
        assert!(!requirement_matches(&r, Some("a")));
        assert!(requirement_matches(
            &requirement("k", "Exists", &[]),
            Some("")
        ));
        assert!(requirement_matches(
            &requirement("k", "DoesNotExist", &[]),
            None
        ));
        assert!(requirement_matches(
            &requirement("n", "Gt", &["3"]),
            Some("4")
        ));
        assert!(!requirement_matches(
            &requirement("n", "Gt", &["3"]),
            Some("3")
        ));
        assert!(requirement_matches(
            &requirement("n", "Lt", &["3"]),
            Some("2")
        ));
        assert!(!requirement_matches(
            &requirement("n", "Lt", &["x"]),
            Some("2")
        ));
    }

    #[test]
    fn node_selector_must_match_every_label() {
        let n = node("n1", &[("disk", "ssd"), ("zone", "a")]);
        let mut spec = PodSpec {
            node_selector: Some(BTreeMap::from([("disk".to_owned(), "ssd".to_owned())])),
            ..PodSpec::default()
        };
        assert!(spec_affinity_matches(&spec, &n));
        spec.node_selector
            .get_or_insert_default()
            .insert("zone".into(), "b".into());
        assert!(!spec_affinity_matches(&spec, &n));
    }

    #[test]
    fn required_affinity_terms_are_ored_and_requirements_anded() {
        let n = node("n1", &[("zone", "a")]);
        let term = |reqs: Vec<NodeSelectorRequirement>, fields: Vec<NodeSelectorRequirement>| {
            NodeSelectorTerm {
                match_expressions: Some(reqs),
                match_fields: Some(fields),
            }
        };
        let zone_b = term(vec![requirement("zone", "In", &["b"])], vec![]);
        let named = term(vec![], vec![requirement(NODE_NAME_FIELD, "In", &["n1"])]);
        assert!(!spec_affinity_matches(
            &with_terms(vec![zone_b.clone()]),
            &n
        ));
        assert!(spec_affinity_matches(&with_terms(vec![zone_b, named]), &n));
        let both = term(
            vec![requirement("zone", "In", &["a"])],
            vec![requirement(NODE_NAME_FIELD, "In", &["n2"])],
        );
        assert!(!spec_affinity_matches(&with_terms(vec![both]), &n));
        // An empty term selects nothing; other field keys select nothing.
        assert!(!spec_affinity_matches(
            &with_terms(vec![term(vec![], vec![])]),
            &n
        ));
        let other_field = term(vec![], vec![requirement("spec.podCIDR", "In", &["n1"])]);
        assert!(!spec_affinity_matches(&with_terms(vec![other_field]), &n));
    }

    #[test]
    fn a_pod_without_spec_or_affinity_goes_anywhere() {
        let n = node("n1", &[]);
        assert!(affinity_matches(&Pod::default(), &n));
        assert!(spec_affinity_matches(&PodSpec::default(), &n));
    }
}

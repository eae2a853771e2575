//! Scores for feasible nodes (0–10,000 each, weighted and summed; finer than upstream's
//! 0–100 so small differences still break ties): LeastAllocated favours nodes with the most
//! room left, BalancedAllocation nodes whose CPU and memory stay evenly used (pods without
//! requests count as upstream's non-zero defaults, 100m CPU and 200Mi memory, here);
//! TaintToleration nodes with fewer untolerated PreferNoSchedule taints; NodeAffinity nodes
//! matching more of the pod's preferred node affinity weight. The weights are upstream's
//! default profile's.

use controllers::node_fit::term_matches;
use k8s_openapi::api::core::v1::{Node, Pod};

use crate::filters::NodeUsage;
use crate::resources::{milli, pod_requests};

const DEFAULT_CPU: i64 = 100;
const DEFAULT_MEMORY: i64 = 200 * 1024 * 1024 * 1000;
/// The requests a pod that asks for nothing counts as when scoring, in milli-units.
pub const DEFAULTS: [(&str, i64); 2] = [("cpu", DEFAULT_CPU), ("memory", DEFAULT_MEMORY)];

/// The fraction of `name` in use on the node once `pod` is added (0.0–1.0).
fn fraction(pod: &Pod, node: &Node, used: &NodeUsage, name: &str, default: i64) -> f64 {
    let has = node
        .status
        .as_ref()
        .and_then(|s| s.allocatable.as_ref().or(s.capacity.as_ref()))
        .and_then(|a| a.get(name))
        .map(milli)
        .unwrap_or(0);
    if has <= 0 {
        return 1.0;
    }
    let want = pod_requests(pod)
        .get(name)
        .copied()
        .filter(|v| *v > 0)
        .unwrap_or(default);
    let taken = used.non_zero.get(name).copied().unwrap_or(0);
    ((taken + want) as f64 / has as f64).min(1.0)
}

pub fn least_allocated(pod: &Pod, node: &Node, used: &NodeUsage) -> i64 {
    let cpu = fraction(pod, node, used, "cpu", DEFAULT_CPU);
    let memory = fraction(pod, node, used, "memory", DEFAULT_MEMORY);
    (((1.0 - cpu) + (1.0 - memory)) / 2.0 * 10_000.0) as i64
}

pub fn balanced_allocation(pod: &Pod, node: &Node, used: &NodeUsage) -> i64 {
    let cpu = fraction(pod, node, used, "cpu", DEFAULT_CPU);
    let memory = fraction(pod, node, used, "memory", DEFAULT_MEMORY);
    ((1.0 - (cpu - memory).abs()) * 10_000.0) as i64
}

/// Upstream's default-profile weights.
pub const TAINT_TOLERATION_WEIGHT: i64 = 3;
pub const NODE_AFFINITY_WEIGHT: i64 = 2;
const MAX_SCORE: i64 = 10_000;

/// The per-node scores that need no view of the other nodes (LeastAllocated and
/// BalancedAllocation, weight 1 each).
pub fn score(pod: &Pod, node: &Node, used: &NodeUsage) -> i64 {
    least_allocated(pod, node, used) + balanced_allocation(pod, node, used)
}

/// TaintToleration: fewer untolerated PreferNoSchedule taints score higher, the node with
/// the most scoring 0 (upstream's reversed normalization).
pub fn taint_toleration(pod: &Pod, nodes: &[&Node]) -> Vec<i64> {
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.clone())
        .unwrap_or_default();
    let counts: Vec<i64> = nodes
        .iter()
        .map(|n| {
            n.spec
                .as_ref()
                .and_then(|s| s.taints.as_ref())
                .into_iter()
                .flatten()
                .filter(|t| t.effect == "PreferNoSchedule")
                .filter(|t| {
                    !tolerations.iter().any(|tol| {
                        tol.effect
                            .as_deref()
                            .is_none_or(|e| e.is_empty() || e == "PreferNoSchedule")
                            && controllers::node_fit::tolerates(tol, t)
                    })
                })
                .count() as i64
        })
        .collect();
    let max = counts.iter().copied().max().unwrap_or(0);
    counts
        .into_iter()
        .map(|c| {
            if max == 0 {
                MAX_SCORE
            } else {
                MAX_SCORE - c * MAX_SCORE / max
            }
        })
        .collect()
}

/// NodeAffinity: the summed weights of the preferred terms a node matches, scaled so the best
/// node scores the maximum.
pub fn node_affinity(pod: &Pod, nodes: &[&Node]) -> Vec<i64> {
    let preferred = pod
        .spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.preferred_during_scheduling_ignored_during_execution
                .clone()
        })
        .unwrap_or_default();
    let sums: Vec<i64> = nodes
        .iter()
        .map(|n| {
            preferred
                .iter()
                .filter(|p| term_matches(&p.preference, n))
                .map(|p| i64::from(p.weight))
                .sum()
        })
        .collect();
    let max = sums.iter().copied().max().unwrap_or(0);
    sums.into_iter()
        .map(|s| if max == 0 { 0 } else { s * MAX_SCORE / max })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filters::tests::{node, pod};

    #[test]
    fn emptier_nodes_score_higher() {
        let n = node("n", "4", "8Gi", "110");
        let mut busy = NodeUsage::default();
        busy.add(&pod("3"));
        assert!(
            least_allocated(&pod("500m"), &n, &NodeUsage::default())
                > least_allocated(&pod("500m"), &n, &busy)
        );
    }

    #[test]
    fn fewer_untolerated_prefer_no_schedule_taints_score_higher() {
        let clean = node("a", "4", "8Gi", "110");
        let mut tainted = node("b", "4", "8Gi", "110");
        tainted.spec.get_or_insert_default().taints =
            Some(vec![k8s_openapi::api::core::v1::Taint {
                key: "spot".into(),
                effect: "PreferNoSchedule".into(),
                ..Default::default()
            }]);
        assert_eq!(
            taint_toleration(&pod("1"), &[&clean, &tainted]),
            [10_000, 0]
        );
        let mut tolerant = pod("1");
        tolerant.spec.get_or_insert_default().tolerations =
            Some(vec![k8s_openapi::api::core::v1::Toleration {
                key: Some("spot".into()),
                operator: Some("Exists".into()),
                ..Default::default()
            }]);
        assert_eq!(
            taint_toleration(&tolerant, &[&clean, &tainted]),
            [10_000, 10_000]
        );
    }

    #[test]
    fn preferred_node_affinity_weights_rank_nodes() {
        use k8s_openapi::api::core::v1::{
            Affinity, NodeAffinity, NodeSelectorRequirement, NodeSelectorTerm,
            PreferredSchedulingTerm,
        };
        let mut ssd = node("a", "4", "8Gi", "110");
        ssd.metadata.labels = Some([("disk".to_owned(), "ssd".to_owned())].into());
        let hdd = node("b", "4", "8Gi", "110");
        let mut p = pod("1");
        p.spec.get_or_insert_default().affinity = Some(Affinity {
            node_affinity: Some(NodeAffinity {
                preferred_during_scheduling_ignored_during_execution: Some(vec![
                    PreferredSchedulingTerm {
                        weight: 40,
                        preference: NodeSelectorTerm {
                            match_expressions: Some(vec![NodeSelectorRequirement {
                                key: "disk".into(),
                                operator: "In".into(),
                                values: Some(vec!["ssd".into()]),
                            }]),
                            match_fields: None,
                        },
                    },
                ]),
                ..NodeAffinity::default()
            }),
            ..Affinity::default()
        });
        assert_eq!(node_affinity(&p, &[&ssd, &hdd]), [10_000, 0]);
        assert_eq!(node_affinity(&pod("1"), &[&ssd, &hdd]), [0, 0]);
    }

    #[test]
    fn even_cpu_and_memory_use_scores_higher() {
        let n = node("n", "4", "4Gi", "110");
        let even = balanced_allocation(&pod("100m"), &n, &NodeUsage::default());
        let mut cpu_heavy = NodeUsage::default();
        cpu_heavy.add(&pod("3"));
        assert!(even > balanced_allocation(&pod("100m"), &n, &cpu_heavy));
    }
}

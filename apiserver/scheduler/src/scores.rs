//! Scores for feasible nodes (0–10,000 each, summed; finer than upstream's 0–100 so small
//! differences still break ties): LeastAllocated favours nodes with the most
//! room left, BalancedAllocation nodes whose CPU and memory stay evenly used. Pods without
//! requests count as upstream's non-zero defaults (100m CPU, 200Mi memory) here.

use k8s_openapi::api::core::v1::{Node, Pod};

use crate::filters::NodeUsage;
use crate::resources::{milli, pod_requests};

const DEFAULT_CPU: i64 = 100;
const DEFAULT_MEMORY: i64 = 200 * 1024 * 1024 * 1000;
/// The requests a pod that asks for nothing counts as when scoring, in milli-units.
pub const DEFAULTS: [(&str, i64); 2] = [("cpu", DEFAULT_CPU), ("memory", DEFAULT_MEMORY)];

/// The fraction of `name` in use on the node once `pod` is added (0.0–1.0).
fn fraction(pod: &Pod, node: &Node, used: &NodeUsage, name: &str, default: i64) -> f64 {
    let allocatable = node
        .status
        .as_ref()
        .and_then(|s| s.allocatable.clone().or(s.capacity.clone()))
        .unwrap_or_default();
    let has = allocatable.get(name).map(milli).unwrap_or(0);
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

pub fn score(pod: &Pod, node: &Node, used: &NodeUsage) -> i64 {
    least_allocated(pod, node, used) + balanced_allocation(pod, node, used)
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
    fn even_cpu_and_memory_use_scores_higher() {
        let n = node("n", "4", "4Gi", "110");
        let even = balanced_allocation(&pod("100m"), &n, &NodeUsage::default());
        let mut cpu_heavy = NodeUsage::default();
        cpu_heavy.add(&pod("3"));
        assert!(even > balanced_allocation(&pod("100m"), &n, &cpu_heavy));
    }
}

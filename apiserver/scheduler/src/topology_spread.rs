//! PodTopologySpread: the pod's `topologySpreadConstraints`. `DoNotSchedule` constraints
//! filter (a node's domain may not exceed the global minimum by more than `maxSkew` once the
//! pod is added); `ScheduleAnyway` constraints score (fewer matching pods in the node's domain
//! score higher).
//!
//! [`prepare`] counts matching pods per topology domain in one pass over every node's pods;
//! [`filter`] is then O(constraints) per node and [`scores`] O(constraints) per node (plus the
//! node's own pods for a hostname constraint, as upstream). Pods counted: in the incoming
//! pod's namespace, not being deleted, matched by `labelSelector` merged with the pod's values
//! for `matchLabelKeys`; on nodes carrying every topology key of the constraints and passing
//! the node inclusion policies (`nodeAffinityPolicy` Honor and `nodeTaintsPolicy` Ignore by
//! default). A nil or empty `labelSelector` counts no pod, as upstream.
//!
//! Upstream's cluster-level default constraints (applied to pods without constraints of their
//! own, selecting by the pod's Services and controllers) are not implemented: a pod without
//! constraints is neither filtered nor scored here.

use std::collections::{BTreeMap, HashMap, HashSet};

use controllers::node_fit::{affinity_matches, untolerated_taint};
use k8s_openapi::api::core::v1::{Node, Pod, TopologySpreadConstraint};
use kube::ResourceExt;
use kube::core::labels::{Expression, Selector, SelectorExt};

use crate::cache::NodeInfo;

/// Upstream's weight for PodTopologySpread in the default profile.
pub const WEIGHT: i64 = 2;
/// The best score a node gets (upstream's 100, times 100).
pub const MAX_SCORE: i64 = 10_000;

pub const CONSTRAINTS_NOT_MATCH: &str = "node(s) didn't match pod topology spread constraints";
pub const NODE_LABEL_NOT_MATCH: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";

/// The label whose domains are single nodes; upstream counts them per node when scoring.
const HOSTNAME: &str = "kubernetes.io/hostname";

/// One constraint, with upstream's defaults applied.
#[derive(Debug, Clone)]
struct Constraint {
    max_skew: i64,
    topology_key: String,
    /// `None`: a nil selector, which selects nothing.
    selector: Option<Selector>,
    min_domains: usize,
    honor_node_affinity: bool,
    honor_taints: bool,
}

impl Constraint {
    fn new(
        c: &TopologySpreadConstraint,
        pod_labels: &BTreeMap<String, String>,
    ) -> Result<Constraint, String> {
        let selector = match &c.label_selector {
            None => None,
            Some(selector) => {
                let parsed = Selector::try_from(selector.clone()).map_err(|e| e.to_string())?;
                let mut merged: Selector = c
                    .match_label_keys
                    .iter()
                    .flatten()
                    .filter_map(|k| {
                        pod_labels
                            .get(k)
                            .map(|v| Expression::Equal(k.clone(), v.clone()))
                    })
                    .collect();
                merged.extend(parsed);
                Some(merged)
            }
        };
        Ok(Constraint {
            max_skew: i64::from(c.max_skew),
            topology_key: c.topology_key.clone(),
            selector,
            min_domains: c
                .min_domains
                .and_then(|m| usize::try_from(m).ok())
                .unwrap_or(1),
            honor_node_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
            honor_taints: c.node_taints_policy.as_deref() == Some("Honor"),
        })
    }

    /// Whether the incoming pod itself counts towards this constraint.
    fn selects(&self, labels: &BTreeMap<String, String>) -> bool {
        self.selector.as_ref().is_some_and(|s| s.matches(labels))
    }

    /// The pods on `info` this constraint counts.
    fn count(&self, info: &NodeInfo, namespace: &str) -> i64 {
        let Some(selector) = self.selector.as_ref().filter(|s| !s.selects_all()) else {
            return 0;
        };
        info.pods
            .iter()
            .filter(|p| {
                p.metadata.deletion_timestamp.is_none()
                    && p.metadata.namespace.as_deref().unwrap_or("") == namespace
                    && selector.matches(p.labels())
            })
            .count() as i64
    }
}

/// Whether a node's pods count towards a constraint under its inclusion policies; the pod's
/// node affinity and its tolerations are worked out at most once per node.
struct Inclusion<'a> {
    pod: &'a Pod,
    node: &'a Node,
    affinity: Option<bool>,
    taints: Option<bool>,
}

impl<'a> Inclusion<'a> {
    fn new(pod: &'a Pod, node: &'a Node) -> Inclusion<'a> {
        Inclusion {
            pod,
            node,
            affinity: None,
            taints: None,
        }
    }

    fn includes(&mut self, c: &Constraint) -> bool {
        if c.honor_node_affinity
            && !*self
                .affinity
                .get_or_insert_with(|| affinity_matches(self.pod, self.node))
        {
            return false;
        }
        if c.honor_taints {
            let (pod, node) = (self.pod, self.node);
            let tolerated = self.taints.get_or_insert_with(|| {
                let taints = node
                    .spec
                    .as_ref()
                    .and_then(|s| s.taints.as_deref())
                    .unwrap_or_default();
                let tolerations = pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.tolerations.as_deref())
                    .unwrap_or_default();
                untolerated_taint(taints, tolerations, |t| {
                    t.effect == "NoSchedule" || t.effect == "NoExecute"
                })
                .is_none()
            });
            if !*tolerated {
                return false;
            }
        }
        true
    }
}

/// The per-pod state [`filter`] and [`scores`] read, built by [`prepare`].
#[derive(Debug, Default)]
pub struct SpreadState {
    /// `DoNotSchedule` constraints.
    hard: Vec<Constraint>,
    /// Per hard constraint: matching pods per eligible domain (eligible domains with none
    /// are present with 0).
    hard_counts: Vec<HashMap<String, i64>>,
    /// Per hard constraint: the global minimum, 0 when there are fewer eligible domains than
    /// `minDomains`.
    hard_min: Vec<i64>,
    /// `ScheduleAnyway` constraints.
    soft: Vec<Constraint>,
    /// Per soft constraint: matching pods per domain (hostname constraints are counted per
    /// node when scoring).
    soft_counts: Vec<HashMap<String, i64>>,
    /// The incoming pod's namespace: only pods there are counted.
    namespace: String,
    /// Why the pod's constraints cannot be used (a selector that does not parse).
    invalid: Option<String>,
}

fn has_every_key(labels: &BTreeMap<String, String>, constraints: &[Constraint]) -> bool {
    constraints
        .iter()
        .all(|c| labels.contains_key(&c.topology_key))
}

/// One pass over every node's pods: matching pod counts per domain for each constraint of
/// `pod`. `nodes` are all nodes (not only feasible ones).
pub fn prepare(pod: &Pod, nodes: &[NodeInfo]) -> SpreadState {
    let pod_labels = pod.labels();
    let mut errors = Vec::new();
    let mut hard = Vec::new();
    let mut soft = Vec::new();
    let constraints = pod
        .spec
        .as_ref()
        .and_then(|s| s.topology_spread_constraints.as_deref())
        .unwrap_or_default();
    for c in constraints {
        let into = match c.when_unsatisfiable.as_str() {
            "DoNotSchedule" => &mut hard,
            "ScheduleAnyway" => &mut soft,
            _ => continue,
        };
        match Constraint::new(c, pod_labels) {
            Ok(parsed) => into.push(parsed),
            Err(e) => errors.push(e),
        }
    }
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let mut hard_counts: Vec<HashMap<String, i64>> = vec![HashMap::new(); hard.len()];
    let mut soft_counts: Vec<HashMap<String, i64>> = vec![HashMap::new(); soft.len()];
    for info in nodes {
        if hard.is_empty() && soft.is_empty() {
            break;
        }
        let node = info.node.as_ref();
        let labels = node.labels();
        let mut inclusion = Inclusion::new(pod, node);
        if has_every_key(labels, &hard) {
            for (c, counts) in hard.iter().zip(hard_counts.iter_mut()) {
                if !inclusion.includes(c) {
                    continue;
                }
                let Some(value) = labels.get(&c.topology_key) else {
                    continue;
                };
                *counts.entry(value.clone()).or_default() += c.count(info, &namespace);
            }
        }
        if has_every_key(labels, &soft) {
            for (c, counts) in soft.iter().zip(soft_counts.iter_mut()) {
                if c.topology_key == HOSTNAME || !inclusion.includes(c) {
                    continue;
                }
                let Some(value) = labels.get(&c.topology_key) else {
                    continue;
                };
                *counts.entry(value.clone()).or_default() += c.count(info, &namespace);
            }
        }
    }
    let hard_min = hard
        .iter()
        .zip(&hard_counts)
        .map(|(c, counts)| {
            if counts.len() < c.min_domains {
                0
            } else {
                counts.values().copied().min().unwrap_or(0)
            }
        })
        .collect();
    SpreadState {
        hard,
        hard_counts,
        hard_min,
        soft,
        soft_counts,
        namespace,
        invalid: (!errors.is_empty())
            .then(|| format!("invalid topology spread constraint: {}", errors.join("; "))),
    }
}

/// Whether `pod` may go to `node` under its `DoNotSchedule` constraints: the node carries
/// every topology key, and in each constraint its domain's matching pods, plus the pod when it
/// matches, exceed the global minimum by at most `maxSkew`.
pub fn filter(state: &SpreadState, pod: &Pod, node: &NodeInfo) -> Result<(), String> {
    if let Some(why) = &state.invalid {
        return Err(why.clone());
    }
    let labels = node.node.labels();
    let pod_labels = pod.labels();
    for (i, c) in state.hard.iter().enumerate() {
        let Some(value) = labels.get(&c.topology_key) else {
            return Err(NODE_LABEL_NOT_MATCH.to_owned());
        };
        let matching = state.hard_counts[i].get(value).copied().unwrap_or(0);
        let own = i64::from(c.selects(pod_labels));
        if matching + own - state.hard_min[i] > c.max_skew {
            return Err(CONSTRAINTS_NOT_MATCH.to_owned());
        }
    }
    Ok(())
}

/// The score of each feasible node (0–[`MAX_SCORE`], in `feasible`'s order) under the pod's
/// `ScheduleAnyway` constraints. Per constraint a node's domain contributes its matching pods
/// times ln(number of domains among the feasible nodes + 2), plus `maxSkew - 1`; the rounded
/// sum is inverted so the fewest matching pods score [`MAX_SCORE`]. Nodes missing a topology
/// key score 0 and take no part in the normalization. All 0 without such constraints.
/// Multiply by [`WEIGHT`] when summing plugins.
pub fn scores(state: &SpreadState, _pod: &Pod, feasible: &[&NodeInfo]) -> Vec<i64> {
    if state.soft.is_empty() {
        return vec![0; feasible.len()];
    }
    let eligible: Vec<bool> = feasible
        .iter()
        .map(|info| has_every_key(info.node.labels(), &state.soft))
        .collect();
    let weights: Vec<f64> = state
        .soft
        .iter()
        .map(|c| {
            let domains = if c.topology_key == HOSTNAME {
                eligible.iter().filter(|e| **e).count()
            } else {
                feasible
                    .iter()
                    .zip(&eligible)
                    .filter(|(_, e)| **e)
                    .filter_map(|(info, _)| info.node.labels().get(&c.topology_key))
                    .collect::<HashSet<_>>()
                    .len()
            };
            ((domains + 2) as f64).ln()
        })
        .collect();
    let raw: Vec<Option<i64>> = feasible
        .iter()
        .zip(&eligible)
        .map(|(info, eligible)| {
            if !eligible {
                return None;
            }
            let labels = info.node.labels();
            let mut score = 0.0;
            for (i, c) in state.soft.iter().enumerate() {
                let Some(value) = labels.get(&c.topology_key) else {
                    continue;
                };
                let matching = if c.topology_key == HOSTNAME {
                    c.count(info, &state.namespace)
                } else {
                    state.soft_counts[i].get(value).copied().unwrap_or(0)
                };
                score += matching as f64 * weights[i] + (c.max_skew - 1) as f64;
            }
            Some(score.round() as i64)
        })
        .collect();
    let min = raw.iter().flatten().copied().min().unwrap_or(0);
    let max = raw.iter().flatten().copied().max().unwrap_or(0).max(0);
    raw.iter()
        .map(|s| match s {
            None => 0,
            Some(_) if max == 0 => MAX_SCORE,
            Some(s) => MAX_SCORE * (max + min - s) / max,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeSpec, PodSpec, Taint};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
    use std::sync::Arc;

    const ZONE: &str = "topology.kubernetes.io/zone";

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// A node with its hostname label, a zone unless empty, and `extra` labels.
    fn node(name: &str, zone: &str, extra: &[(&str, &str)]) -> NodeInfo {
        let mut l = labels(extra);
        l.insert(HOSTNAME.into(), name.into());
        if !zone.is_empty() {
            l.insert(ZONE.into(), zone.into());
        }
        NodeInfo::new(Arc::new(Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(l),
                ..ObjectMeta::default()
            },
            spec: Some(NodeSpec::default()),
            ..Node::default()
        }))
    }

    fn pod(namespace: &str, app: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(format!("{app}-x")),
                namespace: Some(namespace.into()),
                labels: Some(labels(&[("app", app)])),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec::default()),
            status: None,
        }
    }

    fn constraint(key: &str, max_skew: i32, when: &str, app: &str) -> TopologySpreadConstraint {
        TopologySpreadConstraint {
            label_selector: Some(LabelSelector {
                match_labels: Some(labels(&[("app", app)])),
                ..LabelSelector::default()
            }),
            max_skew,
            topology_key: key.into(),
            when_unsatisfiable: when.into(),
            ..TopologySpreadConstraint::default()
        }
    }

    fn spread(mut p: Pod, c: TopologySpreadConstraint) -> Pod {
        p.spec
            .get_or_insert_default()
            .topology_spread_constraints
            .get_or_insert_default()
            .push(c);
        p
    }

    /// Places `n` pods of `app` in `default` on node `at`.
    fn place(nodes: &mut [NodeInfo], at: usize, app: &str, n: usize) {
        for _ in 0..n {
            nodes[at].add_pod(Arc::new(pod("default", app)));
        }
    }

    /// The names of the nodes passing the filter, and the reasons of the others.
    fn outcomes(p: &Pod, nodes: &[NodeInfo]) -> Vec<Result<String, String>> {
        let state = prepare(p, nodes);
        nodes
            .iter()
            .map(|n| filter(&state, p, n).map(|()| n.node.name_any()))
            .collect()
    }

    fn fails(why: &str) -> Result<String, String> {
        Err(why.to_owned())
    }

    fn passes(name: &str) -> Result<String, String> {
        Ok(name.to_owned())
    }

    #[test]
    fn max_skew_one_over_zones_keeps_zones_within_one_pod() {
        let mut nodes = vec![
            node("a1", "a", &[]),
            node("a2", "a", &[]),
            node("b1", "b", &[]),
            node("c1", "c", &[]),
        ];
        place(&mut nodes, 0, "web", 1);
        place(&mut nodes, 1, "web", 1);
        place(&mut nodes, 2, "web", 1);
        place(&mut nodes, 3, "web", 1);
        // Not counted: another namespace, a pod being deleted, another app.
        nodes[3].add_pod(Arc::new(pod("prod", "web")));
        let mut leaving = pod("default", "web");
        leaving.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::UNIX_EPOCH));
        nodes[2].add_pod(Arc::new(leaving));
        place(&mut nodes, 2, "api", 3);
        let p = spread(
            pod("default", "web"),
            constraint(ZONE, 1, "DoNotSchedule", "web"),
        );
        // a: 2 + 1 - 1 = 2 > 1; b and c: 1 + 1 - 1 = 1.
        assert_eq!(
            outcomes(&p, &nodes),
            [
                fails(CONSTRAINTS_NOT_MATCH),
                fails(CONSTRAINTS_NOT_MATCH),
                passes("b1"),
                passes("c1"),
            ]
        );
        // A pod the selector does not match does not add to its domain.
        let other = spread(
            pod("default", "api"),
            constraint(ZONE, 1, "DoNotSchedule", "web"),
        );
        assert!(outcomes(&other, &nodes).iter().all(Result::is_ok));
        // ScheduleAnyway constraints do not filter.
        let soft = spread(
            pod("default", "web"),
            constraint(ZONE, 1, "ScheduleAnyway", "web"),
        );
        assert!(outcomes(&soft, &nodes).iter().all(Result::is_ok));
    }

    #[test]
    fn nodes_missing_the_topology_key_fail_and_do_not_count() {
        let mut nodes = vec![
            node("a1", "a", &[]),
            node("b1", "b", &[]),
            node("bare", "", &[]),
        ];
        place(&mut nodes, 0, "web", 1);
        place(&mut nodes, 1, "web", 1);
        place(&mut nodes, 2, "web", 5);
        let p = spread(
            pod("default", "web"),
            constraint(ZONE, 1, "DoNotSchedule", "web"),
        );
        assert_eq!(
            outcomes(&p, &nodes),
            [passes("a1"), passes("b1"), fails(NODE_LABEL_NOT_MATCH)]
        );
    }

    #[test]
    fn fewer_domains_than_min_domains_make_the_global_minimum_zero() {
        let mut nodes = vec![node("a1", "a", &[]), node("b1", "b", &[])];
        place(&mut nodes, 0, "web", 1);
        place(&mut nodes, 1, "web", 1);
        let mut c = constraint(ZONE, 1, "DoNotSchedule", "web");
        let p = spread(pod("default", "web"), c.clone());
        assert_eq!(outcomes(&p, &nodes), [passes("a1"), passes("b1")]);
        // Two domains, three wanted: 1 + 1 - 0 = 2 > 1 everywhere.
        c.min_domains = Some(3);
        let p = spread(pod("default", "web"), c.clone());
        assert_eq!(
            outcomes(&p, &nodes),
            [fails(CONSTRAINTS_NOT_MATCH), fails(CONSTRAINTS_NOT_MATCH)]
        );
        c.min_domains = Some(2);
        let p = spread(pod("default", "web"), c);
        assert_eq!(outcomes(&p, &nodes), [passes("a1"), passes("b1")]);
    }

    #[test]
    fn node_affinity_is_honoured_by_default_and_taints_only_when_asked() {
        let mut nodes = vec![
            node("a1", "a", &[("disk", "ssd")]),
            node("b1", "b", &[("disk", "ssd")]),
            node("c1", "c", &[("disk", "hdd")]),
        ];
        place(&mut nodes, 0, "web", 1);
        place(&mut nodes, 1, "web", 2);
        let mut c = constraint(ZONE, 1, "DoNotSchedule", "web");
        let mut p = spread(pod("default", "web"), c.clone());
        p.spec.get_or_insert_default().node_selector = Some(labels(&[("disk", "ssd")]));
        // Zone c is out of the pod's reach: minimum 1 (zone a), so a: 1 + 1 - 1 = 1 passes
        // and b: 2 + 1 - 1 = 2 fails.
        let state = prepare(&p, &nodes);
        assert_eq!(filter(&state, &p, &nodes[0]), Ok(()));
        assert_eq!(
            filter(&state, &p, &nodes[1]),
            Err(CONSTRAINTS_NOT_MATCH.to_owned())
        );
        // Ignoring node affinity, empty zone c makes the minimum 0.
        c.node_affinity_policy = Some("Ignore".into());
        let mut p = spread(pod("default", "web"), c);
        p.spec.get_or_insert_default().node_selector = Some(labels(&[("disk", "ssd")]));
        let state = prepare(&p, &nodes);
        assert_eq!(
            filter(&state, &p, &nodes[0]),
            Err(CONSTRAINTS_NOT_MATCH.to_owned())
        );

        // Taints: ignored by default, so tainted zone c counts and the minimum is 0.
        let mut tainted = (*nodes[2].node).clone();
        tainted.spec.get_or_insert_default().taints = Some(vec![Taint {
            key: "dedicated".into(),
            effect: "NoSchedule".into(),
            ..Taint::default()
        }]);
        nodes[2].node = Arc::new(tainted);
        let mut c = constraint(ZONE, 1, "DoNotSchedule", "web");
        let p = spread(pod("default", "web"), c.clone());
        let state = prepare(&p, &nodes);
        assert_eq!(
            filter(&state, &p, &nodes[0]),
            Err(CONSTRAINTS_NOT_MATCH.to_owned())
        );
        c.node_taints_policy = Some("Honor".into());
        let p = spread(pod("default", "web"), c);
        let state = prepare(&p, &nodes);
        assert_eq!(filter(&state, &p, &nodes[0]), Ok(()));
    }

    #[test]
    fn match_label_keys_count_only_the_same_revision() {
        let mut nodes = vec![node("a1", "a", &[]), node("b1", "b", &[])];
        let revision = |rev: &str| {
            let mut p = pod("default", "web");
            p.metadata
                .labels
                .get_or_insert_default()
                .insert("pod-template-hash".into(), rev.into());
            p
        };
        // Two old-revision pods in zone a, none of the new one anywhere.
        nodes[0].add_pod(Arc::new(revision("old")));
        nodes[0].add_pod(Arc::new(revision("old")));
        let c = constraint(ZONE, 1, "DoNotSchedule", "web");
        let p = spread(revision("new"), c.clone());
        assert_eq!(
            outcomes(&p, &nodes),
            [fails(CONSTRAINTS_NOT_MATCH), passes("b1")]
        );
        let mut keyed = c;
        keyed.match_label_keys = Some(vec!["pod-template-hash".into()]);
        let p = spread(revision("new"), keyed);
        assert_eq!(outcomes(&p, &nodes), [passes("a1"), passes("b1")]);
    }

    #[test]
    fn an_empty_selector_counts_nothing_but_the_pod_itself() {
        let mut nodes = vec![node("a1", "a", &[]), node("b1", "b", &[])];
        place(&mut nodes, 0, "web", 3);
        let mut c = constraint(ZONE, 1, "DoNotSchedule", "web");
        c.label_selector = Some(LabelSelector::default());
        let p = spread(pod("default", "web"), c);
        assert_eq!(outcomes(&p, &nodes), [passes("a1"), passes("b1")]);
    }

    #[test]
    fn fewer_matching_pods_score_higher_and_nodes_without_the_key_score_zero() {
        let mut nodes = vec![
            node("a1", "a", &[]),
            node("b1", "b", &[]),
            node("c1", "c", &[]),
            node("bare", "", &[]),
            node("a2", "a", &[]),
        ];
        place(&mut nodes, 0, "web", 2);
        place(&mut nodes, 4, "web", 1);
        place(&mut nodes, 1, "web", 1);
        let p = spread(
            pod("default", "web"),
            constraint(ZONE, 1, "ScheduleAnyway", "web"),
        );
        let state = prepare(&p, &nodes);
        let feasible: Vec<&NodeInfo> = nodes[..4].iter().collect();
        // Three zones among the feasible nodes: weight ln 5. Raw a 3 × 1.609 → 5,
        // b → 2, c → 0; score = 10,000 × (max + min - raw) / max.
        assert_eq!(scores(&state, &p, &feasible), [0, 6000, 10_000, 0]);
        // Without soft constraints everything scores 0.
        let hard = spread(
            pod("default", "web"),
            constraint(ZONE, 1, "DoNotSchedule", "web"),
        );
        let state = prepare(&hard, &nodes);
        assert_eq!(scores(&state, &hard, &feasible), [0, 0, 0, 0]);
    }

    #[test]
    fn hostname_spreading_scores_each_node_by_its_own_pods() {
        let mut nodes = vec![
            node("n1", "a", &[]),
            node("n2", "a", &[]),
            node("n3", "a", &[]),
        ];
        place(&mut nodes, 0, "web", 2);
        place(&mut nodes, 1, "web", 1);
        let p = spread(
            pod("default", "web"),
            constraint(HOSTNAME, 2, "ScheduleAnyway", "web"),
        );
        let state = prepare(&p, &nodes);
        let feasible: Vec<&NodeInfo> = nodes.iter().collect();
        // Weight ln 5; maxSkew 2 adds 1. Raw n1 round(2 × 1.609 + 1) = 4, n2 3, n3 1:
        // 10,000 × (4 + 1 - raw) / 4.
        assert_eq!(scores(&state, &p, &feasible), [2500, 5000, 10_000]);
    }
}

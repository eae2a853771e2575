//! The cluster-level default topology spread constraints (upstream's `systemDefaulting`):
//! a pod without constraints of its own is still spread, softly, over hostnames (maxSkew 3)
//! and zones (maxSkew 5) among its peers: the pods that the Services selecting it, and its
//! controlling ReplicationController, ReplicaSet or StatefulSet, select too. Both constraints
//! are ScheduleAnyway, so they only score.
//!
//! The zone constraint is left out while no node carries a zone label, as it could then only
//! score every node alike.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, ReplicationController, Service, TopologySpreadConstraint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

use crate::cache::NodeInfo;

pub const HOSTNAME_KEY: &str = "kubernetes.io/hostname";
pub const ZONE_KEY: &str = "topology.kubernetes.io/zone";

/// The objects that define a pod's peers, from the scheduler's caches.
pub struct Peers<'a> {
    pub services: &'a [std::sync::Arc<Service>],
    pub controllers: &'a [std::sync::Arc<ReplicationController>],
    pub replica_sets: &'a [std::sync::Arc<ReplicaSet>],
    pub stateful_sets: &'a [std::sync::Arc<StatefulSet>],
}

fn in_namespace<'a, K: kube::Resource>(
    objects: &'a [std::sync::Arc<K>],
    namespace: &'a str,
) -> impl Iterator<Item = &'a K> {
    objects
        .iter()
        .map(AsRef::as_ref)
        .filter(move |o| o.meta().namespace.as_deref() == Some(namespace))
}

/// The selector of a pod's peers (upstream's DefaultSelector): the selectors of the Services
/// that select it merged, plus its controller's selector. `None` when nothing selects it.
pub fn peer_selector(pod: &Pod, peers: &Peers<'_>) -> Option<LabelSelector> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("");
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    let selects = |selector: &BTreeMap<String, String>| {
        !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
    };
    let mut match_labels: BTreeMap<String, String> = BTreeMap::new();
    for service in in_namespace(peers.services, namespace) {
        if let Some(selector) = service.spec.as_ref().and_then(|s| s.selector.as_ref())
            && selects(selector)
        {
            match_labels.extend(selector.clone());
        }
    }
    let mut expressions: Vec<LabelSelectorRequirement> = Vec::new();
    let owner = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true));
    if let Some(owner) = owner {
        let named = |meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
            meta.name.as_deref() == Some(owner.name.as_str())
        };
        let set_selector = match (owner.api_version.as_str(), owner.kind.as_str()) {
            ("v1", "ReplicationController") => {
                if let Some(selector) = in_namespace(peers.controllers, namespace)
                    .find(|rc| named(&rc.metadata))
                    .and_then(|rc| rc.spec.as_ref()?.selector.clone())
                {
                    match_labels.extend(selector);
                }
                None
            }
            ("apps/v1", "ReplicaSet") => in_namespace(peers.replica_sets, namespace)
                .find(|rs| named(&rs.metadata))
                .and_then(|rs| rs.spec.as_ref().map(|s| s.selector.clone())),
            ("apps/v1", "StatefulSet") => in_namespace(peers.stateful_sets, namespace)
                .find(|ss| named(&ss.metadata))
                .and_then(|ss| ss.spec.as_ref().map(|s| s.selector.clone())),
            _ => None,
        };
        if let Some(selector) = set_selector {
            match_labels.extend(selector.match_labels.unwrap_or_default());
            expressions.extend(selector.match_expressions.unwrap_or_default());
        }
    }
    if match_labels.is_empty() && expressions.is_empty() {
        return None;
    }
    Some(LabelSelector {
        match_labels: (!match_labels.is_empty()).then_some(match_labels),
        match_expressions: (!expressions.is_empty()).then_some(expressions),
    })
}

/// The constraints a pod without its own is scored by, or `None` when it has its own or no
/// peers.
pub fn default_constraints(
    pod: &Pod,
    peers: &Peers<'_>,
    nodes: &[NodeInfo],
) -> Option<Vec<TopologySpreadConstraint>> {
    let own = pod
        .spec
        .as_ref()
        .and_then(|s| s.topology_spread_constraints.as_ref())
        .is_some_and(|c| !c.is_empty());
    if own {
        return None;
    }
    let selector = peer_selector(pod, peers)?;
    let constraint = |key: &str, skew: i32| TopologySpreadConstraint {
        max_skew: skew,
        topology_key: key.to_owned(),
        when_unsatisfiable: "ScheduleAnyway".to_owned(),
        label_selector: Some(selector.clone()),
        ..TopologySpreadConstraint::default()
    };
    let mut constraints = vec![constraint(HOSTNAME_KEY, 3)];
    let zoned = nodes.iter().any(|n| {
        n.node
            .metadata
            .labels
            .as_ref()
            .is_some_and(|l| l.contains_key(ZONE_KEY))
    });
    if zoned {
        constraints.push(constraint(ZONE_KEY, 5));
    }
    Some(constraints)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filters::tests::{node, pod};
    use k8s_openapi::api::apps::v1::ReplicaSetSpec;
    use k8s_openapi::api::core::v1::ServiceSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
    use std::sync::Arc;

    fn labelled(mut p: Pod, labels: &[(&str, &str)]) -> Pod {
        p.metadata.namespace = Some("default".into());
        p.metadata.labels = Some(
            labels
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
        );
        p
    }

    fn service(selector: &[(&str, &str)]) -> Arc<Service> {
        Arc::new(Service {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                ..ObjectMeta::default()
            },
            spec: Some(ServiceSpec {
                selector: Some(
                    selector
                        .iter()
                        .map(|(k, v)| ((*k).into(), (*v).into()))
                        .collect(),
                ),
                ..ServiceSpec::default()
            }),
            status: None,
        })
    }

    fn replica_set() -> Arc<ReplicaSet> {
        Arc::new(ReplicaSet {
            metadata: ObjectMeta {
                name: Some("web-abc".into()),
                namespace: Some("default".into()),
                ..ObjectMeta::default()
            },
            spec: Some(ReplicaSetSpec {
                selector: LabelSelector {
                    match_labels: Some(
                        [
                            ("app".to_owned(), "web".to_owned()),
                            ("pod-template-hash".to_owned(), "abc".to_owned()),
                        ]
                        .into(),
                    ),
                    ..LabelSelector::default()
                },
                ..ReplicaSetSpec::default()
            }),
            status: None,
        })
    }

    #[test]
    fn peers_are_what_the_services_and_the_controller_select() {
        let mut p = labelled(
            pod("100m"),
            &[
                ("app", "web"),
                ("tier", "front"),
                ("pod-template-hash", "abc"),
            ],
        );
        p.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "apps/v1".into(),
            kind: "ReplicaSet".into(),
            name: "web-abc".into(),
            controller: Some(true),
            ..OwnerReference::default()
        }]);
        let services = [service(&[("tier", "front")]), service(&[("app", "db")])];
        let sets = [replica_set()];
        let peers = Peers {
            services: &services,
            controllers: &[],
            replica_sets: &sets,
            stateful_sets: &[],
        };
        let selector = peer_selector(&p, &peers).unwrap();
        let labels = selector.match_labels.unwrap();
        assert_eq!(labels.get("tier").map(String::as_str), Some("front"));
        assert_eq!(
            labels.get("pod-template-hash").map(String::as_str),
            Some("abc")
        );
        assert!(!labels.contains_key("db"));
    }

    #[test]
    fn defaults_spread_over_hostnames_and_zones_when_nodes_have_zones() {
        let p = labelled(pod("100m"), &[("app", "web")]);
        let services = [service(&[("app", "web")])];
        let peers = Peers {
            services: &services,
            controllers: &[],
            replica_sets: &[],
            stateful_sets: &[],
        };
        let plain = [NodeInfo::new(Arc::new(node("a", "4", "8Gi", "110")))];
        let keys = |c: Vec<TopologySpreadConstraint>| -> Vec<(String, i32)> {
            c.into_iter()
                .map(|c| (c.topology_key, c.max_skew))
                .collect()
        };
        assert_eq!(
            keys(default_constraints(&p, &peers, &plain).unwrap()),
            [(HOSTNAME_KEY.to_owned(), 3)]
        );
        let mut zoned_node = node("b", "4", "8Gi", "110");
        zoned_node.metadata.labels = Some([(ZONE_KEY.to_owned(), "z1".to_owned())].into());
        let zoned = [NodeInfo::new(Arc::new(zoned_node))];
        assert_eq!(
            keys(default_constraints(&p, &peers, &zoned).unwrap()),
            [(HOSTNAME_KEY.to_owned(), 3), (ZONE_KEY.to_owned(), 5)]
        );
        // A pod nothing selects, or with constraints of its own, gets none.
        let alone = labelled(pod("100m"), &[("app", "other")]);
        assert!(default_constraints(&alone, &peers, &plain).is_none());
        let mut own = p.clone();
        own.spec.get_or_insert_default().topology_spread_constraints =
            Some(vec![TopologySpreadConstraint::default()]);
        assert!(default_constraints(&own, &peers, &plain).is_none());
    }
}

//! The Endpoints controller: every Service with a selector gets an Endpoints object of the
//! same name listing the IPs and resolved ports of the pods it selects, ready ones under
//! `addresses` and the others under `notReadyAddresses`, grouped into subsets by port set.
//! The Endpoints of a deleted Service are deleted. Services without a selector are left to
//! whoever writes their Endpoints (the `kubernetes` Service's are the API server's).
//!
//! `backends` (which pods back a Service and on which ports) is shared with the EndpointSlice
//! controller; `subsets` is this controller's pure decision. Pods and Services are read
//! from their informers' namespace indexes (a Service only selects pods of its namespace).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service,
    ServicePort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, PostParams};
use kube::core::labels::Selector;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use tracing::warn;

use crate::api_errors::{is_status, not_found};
use crate::informers::{Indexes, Informer};
use crate::pods;
use crate::{ControllerContext, ReconcileError};

/// The label marking the Endpoints and slices of a headless Service.
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";
/// An Endpoints object lists at most this many addresses (upstream truncates beyond).
const MAX_ADDRESSES: usize = 1000;
const OVER_CAPACITY: &str = "endpoints.kubernetes.io/over-capacity";

/// A port of a Service as resolved on one pod.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResolvedPort {
    pub name: Option<String>,
    pub port: i32,
    pub protocol: String,
    pub app_protocol: Option<String>,
}

/// One pod backing a Service.
#[derive(Debug, Clone, PartialEq)]
pub struct Backend {
    pub ip: String,
    /// Listed as ready: the pod is Ready, or the Service publishes unready pods.
    pub ready: bool,
    /// The pod itself is Ready (it may be terminating).
    pub serving: bool,
    pub terminating: bool,
    pub node_name: Option<String>,
    pub hostname: Option<String>,
    pub zone: Option<String>,
    pub pod: ObjectReference,
    /// The Service's ports that resolve on this pod, sorted.
    pub ports: Vec<ResolvedPort>,
}

/// The Service's selector, if it has one (an empty selector selects nothing here).
pub fn service_selector(service: &Service) -> Option<Selector> {
    let selector = service.spec.as_ref()?.selector.as_ref()?;
    if selector.is_empty() {
        return None;
    }
    Some(selector.clone().into_iter().collect())
}

fn is_headless(service: &Service) -> bool {
    service
        .spec
        .as_ref()
        .and_then(|s| s.cluster_ip.as_deref())
        .is_some_and(|ip| ip == "None")
}

/// The container port a Service port reaches on `pod`: the target port number, the number of
/// the container port its name names, or the Service port itself when no target is given.
fn resolve_port(port: &ServicePort, pod: &Pod) -> Option<i32> {
    match &port.target_port {
        None => Some(port.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => {
            let protocol = port.protocol.as_deref().unwrap_or("TCP");
            pod.spec
                .as_ref()?
                .containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| {
                    p.name.as_deref() == Some(name.as_str())
                        && p.protocol.as_deref().unwrap_or("TCP") == protocol
                })
                .map(|p| p.container_port)
        }
    }
}

/// The pods that back `service`, with their ports, ordered by IP. `zones` gives each node's
/// topology zone. Terminal pods, pods without an IP, and pods with no resolvable port (when
/// the Service has ports) are left out; terminating pods are kept, marked.
pub fn backends(
    service: &Service,
    pods: &[Arc<Pod>],
    zones: &HashMap<String, String>,
) -> Vec<Backend> {
    let Some(selector) = service_selector(service) else {
        return Vec::new();
    };
    let namespace = service.namespace().unwrap_or_default();
    let service_name = service.name_any();
    let service_ports = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default();
    let publish_not_ready = service
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false);
    let empty = BTreeMap::new();
    let mut out: Vec<Backend> = pods
        .iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(namespace.as_str()))
        .filter(|p| {
            pods::selects(
                Some(&selector),
                p.metadata.labels.as_ref().unwrap_or(&empty),
            )
        })
        .filter_map(|p| {
            let status = p.status.as_ref()?;
            if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
                return None;
            }
            let ip = status.pod_ip.clone().filter(|ip| !ip.is_empty())?;
            let mut ports: Vec<ResolvedPort> = service_ports
                .iter()
                .filter_map(|sp| {
                    Some(ResolvedPort {
                        name: sp.name.clone().filter(|n| !n.is_empty()),
                        port: resolve_port(sp, p)?,
                        protocol: sp.protocol.clone().unwrap_or_else(|| "TCP".into()),
                        app_protocol: sp.app_protocol.clone(),
                    })
                })
                .collect();
            if ports.is_empty() && !service_ports.is_empty() {
                return None;
            }
            ports.sort();
            let spec = p.spec.as_ref();
            let node_name = spec
                .and_then(|s| s.node_name.clone())
                .filter(|n| !n.is_empty());
            let hostname = spec
                .filter(|s| s.subdomain.as_deref() == Some(service_name.as_str()))
                .and_then(|s| s.hostname.clone())
                .filter(|h| !h.is_empty());
            Some(Backend {
                ip,
                ready: publish_not_ready || pods::is_ready(p),
                serving: pods::is_ready(p),
                terminating: p.metadata.deletion_timestamp.is_some(),
                zone: node_name.as_ref().and_then(|n| zones.get(n).cloned()),
                node_name,
                hostname,
                pod: ObjectReference {
                    kind: Some("Pod".into()),
                    namespace: Some(namespace.clone()),
                    name: p.metadata.name.clone(),
                    uid: p.metadata.uid.clone(),
                    ..ObjectReference::default()
                },
                ports,
            })
        })
        .collect();
    out.sort_by(|a, b| a.ip.cmp(&b.ip).then(a.pod.name.cmp(&b.pod.name)));
    out
}

/// The subsets of a Service's Endpoints: backends grouped by port set, each group's ready and
/// not-ready addresses sorted by IP. Terminating pods are listed only when the Service
/// publishes not-ready addresses. Returns whether the list was cut at the capacity limit.
pub fn subsets(service: &Service, backends: &[Backend]) -> (Vec<EndpointSubset>, bool) {
    let publish_not_ready = service
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false);
    let mut groups: BTreeMap<&[ResolvedPort], (Vec<EndpointAddress>, Vec<EndpointAddress>)> =
        BTreeMap::new();
    let mut listed = 0;
    let mut truncated = false;
    for b in backends {
        if b.terminating && !publish_not_ready {
            continue;
        }
        if listed == MAX_ADDRESSES {
            truncated = true;
            break;
        }
        listed += 1;
        let address = EndpointAddress {
            ip: b.ip.clone(),
            hostname: b.hostname.clone(),
            node_name: b.node_name.clone(),
            target_ref: Some(b.pod.clone()),
        };
        let (ready, not_ready) = groups.entry(&b.ports).or_default();
        if b.ready {
            ready.push(address);
        } else {
            not_ready.push(address);
        }
    }
    let subsets = groups
        .into_iter()
        .map(|(ports, (ready, not_ready))| EndpointSubset {
            addresses: (!ready.is_empty()).then_some(ready),
            not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
            ports: (!ports.is_empty()).then(|| {
                ports
                    .iter()
                    .map(|p| EndpointPort {
                        name: p.name.clone(),
                        port: p.port,
                        protocol: Some(p.protocol.clone()),
                        app_protocol: p.app_protocol.clone(),
                    })
                    .collect()
            }),
        })
        .collect();
    (subsets, truncated)
}

/// The labels the Endpoints and slices of `service` carry: the Service's own plus the
/// headless marker.
pub fn derived_labels(service: &Service) -> BTreeMap<String, String> {
    let mut labels = service.labels().clone();
    labels.remove(HEADLESS_LABEL);
    if is_headless(service) {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    }
    labels
}

/// Which Services each pod was last found backing, so a pod that stops matching (or is
/// deleted) still wakes the Services that listed it.
#[derive(Default)]
pub struct PodMemberships {
    by_pod: Mutex<HashMap<(String, String), HashSet<String>>>,
}

impl PodMemberships {
    /// Records that `service` (in `namespace`) is now backed by exactly `pods`.
    pub fn record(&self, namespace: &str, service: &str, pods: &[Backend]) {
        let mut map = self.by_pod.lock().expect("memberships lock");
        let now: HashSet<&str> = pods.iter().filter_map(|b| b.pod.name.as_deref()).collect();
        map.retain(|(ns, pod), services| {
            if ns == namespace && !now.contains(pod.as_str()) {
                services.remove(service);
            }
            !services.is_empty()
        });
        for pod in now {
            map.entry((namespace.to_owned(), pod.to_owned()))
                .or_default()
                .insert(service.to_owned());
        }
    }

    fn services_of(&self, namespace: &str, pod: &str) -> Vec<String> {
        let map = self.by_pod.lock().expect("memberships lock");
        map.get(&(namespace.to_owned(), pod.to_owned()))
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// The Services a changed pod may concern: those selecting it now and those that listed it.
pub fn services_for_pod(
    pod: &Pod,
    services: &Indexes<Service>,
    memberships: &PodMemberships,
) -> Vec<ObjectRef<Service>> {
    let namespace = pod.namespace().unwrap_or_default();
    let empty = BTreeMap::new();
    let labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
    let mut names: HashSet<String> = services
        .in_namespace(&namespace)
        .iter()
        .filter(|s| pods::selects(service_selector(s).as_ref(), labels))
        .map(|s| s.name_any())
        .collect();
    names.extend(memberships.services_of(&namespace, &pod.name_any()));
    names
        .into_iter()
        .map(|n| ObjectRef::new(&n).within(&namespace))
        .collect()
}

/// Node name → topology zone, from the nodes' `topology.kubernetes.io/zone` labels.
pub fn zones_of(nodes: &Store<k8s_openapi::api::core::v1::Node>) -> HashMap<String, String> {
    nodes
        .state()
        .iter()
        .filter_map(|n| {
            let zone = n.labels().get("topology.kubernetes.io/zone")?;
            Some((n.name_any(), zone.clone()))
        })
        .collect()
}

struct EndpointsContext {
    ctx: ControllerContext,
    /// The pods by namespace (a Service selects within its own).
    pods: Indexes<Pod>,
    endpoints: Store<Endpoints>,
    memberships: Arc<PodMemberships>,
}

pub fn run(
    ctx: ControllerContext,
    services: &mut Informer<Service>,
    pods: &mut Informer<Pod>,
    endpoints: &mut Informer<Endpoints>,
) -> impl std::future::Future<Output = ()> + use<> {
    let memberships = Arc::new(PodMemberships::default());
    let state = Arc::new(EndpointsContext {
        ctx: ctx.clone(),
        pods: pods.indexes(),
        endpoints: endpoints.store(),
        memberships: memberships.clone(),
    });
    let service_index = services.indexes();
    let controller = Controller::for_shared_stream(services.subscribe(), services.store())
        .watches_shared_stream(pods.subscribe(), move |pod: Arc<Pod>| {
            services_for_pod(&pod, &service_index, &memberships)
        })
        .watches_shared_stream(endpoints.subscribe(), |ep: Arc<Endpoints>| {
            Some(ObjectRef::new(&ep.name_any()).within(&ep.namespace().unwrap_or_default()))
        });
    let deletions = delete_orphaned_endpoints(
        ctx.client.clone(),
        services.store(),
        endpoints.store(),
        services.subscribe(),
    );
    async move {
        let reconciles = controller
            .run(reconcile, error_policy, state)
            .for_each(|_| futures::future::ready(()));
        tokio::join!(reconciles, deletions);
    }
}

fn error_policy(_s: Arc<Service>, err: &ReconcileError, _ctx: Arc<EndpointsContext>) -> Action {
    crate::retry_after_failure("endpoints reconcile failed", err)
}

async fn reconcile(
    service: Arc<Service>,
    state: Arc<EndpointsContext>,
) -> Result<Action, ReconcileError> {
    if service_selector(&service).is_none() || service.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let namespace = service.namespace().unwrap_or_default();
    let name = service.name_any();
    let pods = state.pods.in_namespace(&namespace);
    let backends = backends(&service, &pods, &HashMap::new());
    state.memberships.record(&namespace, &name, &backends);
    let (subsets, truncated) = subsets(&service, &backends);
    let labels = derived_labels(&service);
    let current = state
        .endpoints
        .get(&ObjectRef::new(&name).within(&namespace));
    let mut annotations = current
        .as_ref()
        .map(|e| e.annotations().clone())
        .unwrap_or_default();
    if truncated {
        annotations.insert(OVER_CAPACITY.into(), "truncated".into());
    } else {
        annotations.remove(OVER_CAPACITY);
    }
    let subsets = (!subsets.is_empty()).then_some(subsets);
    if let Some(current) = &current
        && current.subsets == subsets
        && current.labels() == &labels
        && current.annotations() == &annotations
    {
        return Ok(Action::await_change());
    }
    let api: Api<Endpoints> = Api::namespaced(state.ctx.client.clone(), &namespace);
    let desired = Endpoints {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(namespace.clone()),
            labels: Some(labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            resource_version: current.as_ref().and_then(|c| c.resource_version()),
            ..ObjectMeta::default()
        },
        subsets,
    };
    let written = match current {
        Some(_) => api.replace(&name, &PostParams::default(), &desired).await,
        None => api.create(&PostParams::default(), &desired).await,
    };
    match written {
        Ok(_) => Ok(Action::await_change()),
        // The cache was behind; the watch brings the newer object and another reconcile.
        Err(e) if is_status(&e, 409) => Ok(Action::requeue(Duration::from_millis(200))),
        Err(e) => Err(e.into()),
    }
}

/// Deletes the Endpoints of Services as they are deleted (the Service informer reports a
/// deleted Service once it has left the store), and, once both stores are filled, the
/// Endpoints left behind by Services deleted while no controller ran.
fn delete_orphaned_endpoints(
    client: kube::Client,
    services: Store<Service>,
    endpoints: Store<Endpoints>,
    changes: impl futures::Stream<Item = Arc<Service>> + Send + 'static,
) -> impl std::future::Future<Output = ()> {
    let service_of =
        |namespace: &str, name: &str| ObjectRef::<Service>::new(name).within(namespace);
    async move {
        if crate::informers::synced("services", &services)
            .await
            .is_err()
            || crate::informers::synced("endpoints", &endpoints)
                .await
                .is_err()
        {
            return;
        }
        for ep in endpoints.state() {
            let namespace = ep.namespace().unwrap_or_default();
            if services
                .get(&service_of(&namespace, &ep.name_any()))
                .is_none()
            {
                delete_endpoints(&client, &namespace, &ep.name_any()).await;
            }
        }
        let mut changes = std::pin::pin!(changes);
        while let Some(svc) = changes.next().await {
            let namespace = svc.namespace().unwrap_or_default();
            if services
                .get(&service_of(&namespace, &svc.name_any()))
                .is_none()
            {
                delete_endpoints(&client, &namespace, &svc.name_any()).await;
            }
        }
    }
}

async fn delete_endpoints(client: &kube::Client, namespace: &str, name: &str) {
    let api: Api<Endpoints> = Api::namespaced(client.clone(), namespace);
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => {}
        Err(e) if not_found(&e) => {}
        Err(e) => warn!(namespace, name, error = %e, "deleting endpoints failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pods::fixtures::*;
    use k8s_openapi::api::core::v1::{Container, ContainerPort, ServiceSpec};

    fn service(selector: &[(&str, &str)], ports: Vec<ServicePort>) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                labels: Some([("team".to_owned(), "a".to_owned())].into()),
                ..ObjectMeta::default()
            },
            spec: Some(ServiceSpec {
                selector: Some(
                    selector
                        .iter()
                        .map(|(k, v)| ((*k).into(), (*v).into()))
                        .collect(),
                ),
                ports: Some(ports),
                ..ServiceSpec::default()
            }),
            status: None,
        }
    }

    fn port(name: &str, port: i32, target: IntOrString) -> ServicePort {
        ServicePort {
            name: Some(name.into()),
            port,
            target_port: Some(target),
            protocol: Some("TCP".into()),
            ..ServicePort::default()
        }
    }

    fn with_ip(mut pod: Pod, ip: &str) -> Pod {
        pod.status.get_or_insert_default().pod_ip = Some(ip.into());
        pod.spec.get_or_insert_default().node_name = Some("node-a".into());
        pod
    }

    fn with_named_port(mut pod: Pod, name: &str, number: i32) -> Pod {
        pod.spec.get_or_insert_default().containers = vec![Container {
            name: "app".into(),
            ports: Some(vec![ContainerPort {
                name: Some(name.into()),
                container_port: number,
                protocol: Some("TCP".into()),
                ..ContainerPort::default()
            }]),
            ..Container::default()
        }];
        pod
    }

    #[test]
    fn ready_and_unready_pods_land_in_their_lists_with_resolved_ports() {
        let now = jiff::Timestamp::now();
        let svc = service(
            &[("app", "web")],
            vec![port("http", 80, IntOrString::Int(8080))],
        );
        let a = Arc::new(with_ip(ready(pod("a", &[("app", "web")]), now), "10.0.0.2"));
        let b = Arc::new(with_ip(pod("b", &[("app", "web")]), "10.0.0.1"));
        let stranger = Arc::new(with_ip(ready(pod("c", &[("app", "db")]), now), "10.0.0.3"));
        let no_ip = Arc::new(ready(pod("d", &[("app", "web")]), now));
        let found = backends(&svc, &[a, b, stranger, no_ip], &HashMap::new());
        let (subsets, truncated) = subsets(&svc, &found);
        assert!(!truncated);
        assert_eq!(subsets.len(), 1);
        let ready: Vec<&str> = subsets[0]
            .addresses
            .iter()
            .flatten()
            .map(|a| a.ip.as_str())
            .collect();
        let not_ready: Vec<&str> = subsets[0]
            .not_ready_addresses
            .iter()
            .flatten()
            .map(|a| a.ip.as_str())
            .collect();
        assert_eq!(ready, ["10.0.0.2"]);
        assert_eq!(not_ready, ["10.0.0.1"]);
        let ports = subsets[0].ports.clone().unwrap_or_default();
        assert_eq!(ports.len(), 1);
        assert_eq!(
            (ports[0].name.as_deref(), ports[0].port),
            (Some("http"), 8080)
        );
        let target = subsets[0].addresses.as_ref().unwrap()[0].target_ref.clone();
        assert_eq!(target.and_then(|t| t.name).as_deref(), Some("a"));
    }

    #[test]
    fn named_target_ports_resolve_per_pod_and_split_subsets() {
        let now = jiff::Timestamp::now();
        let svc = service(
            &[("app", "web")],
            vec![port("http", 80, IntOrString::String("web".into()))],
        );
        let a = with_named_port(
            with_ip(ready(pod("a", &[("app", "web")]), now), "10.0.0.1"),
            "web",
            8080,
        );
        let b = with_named_port(
            with_ip(ready(pod("b", &[("app", "web")]), now), "10.0.0.2"),
            "web",
            9090,
        );
        let missing = with_ip(ready(pod("c", &[("app", "web")]), now), "10.0.0.3");
        let found = backends(
            &svc,
            &[Arc::new(a), Arc::new(b), Arc::new(missing)],
            &HashMap::new(),
        );
        assert_eq!(found.len(), 2, "a pod without the named port backs nothing");
        let (subsets, _) = subsets(&svc, &found);
        let numbers: Vec<i32> = subsets
            .iter()
            .map(|s| s.ports.as_ref().unwrap()[0].port)
            .collect();
        assert_eq!(numbers, [8080, 9090]);
    }

    #[test]
    fn terminating_and_finished_pods_are_not_published() {
        let now = jiff::Timestamp::now();
        let svc = service(
            &[("app", "web")],
            vec![port("http", 80, IntOrString::Int(80))],
        );
        let mut leaving = with_ip(ready(pod("a", &[("app", "web")]), now), "10.0.0.1");
        leaving.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now));
        let mut done = with_ip(pod("b", &[("app", "web")]), "10.0.0.2");
        done.status.get_or_insert_default().phase = Some("Succeeded".into());
        let found = backends(&svc, &[Arc::new(leaving), Arc::new(done)], &HashMap::new());
        assert_eq!(found.len(), 1);
        assert!(found[0].terminating);
        let (subsets, _) = subsets(&svc, &found);
        assert!(subsets.is_empty());
    }

    #[test]
    fn a_service_without_selector_has_no_backends() {
        let now = jiff::Timestamp::now();
        let svc = service(&[], vec![port("http", 80, IntOrString::Int(80))]);
        let a = Arc::new(with_ip(ready(pod("a", &[("app", "web")]), now), "10.0.0.1"));
        assert!(backends(&svc, &[a], &HashMap::new()).is_empty());
    }

    #[test]
    fn headless_services_mark_their_endpoints() {
        let mut svc = service(&[("app", "web")], vec![]);
        svc.spec.as_mut().unwrap().cluster_ip = Some("None".into());
        let labels = derived_labels(&svc);
        assert_eq!(labels.get(HEADLESS_LABEL).map(String::as_str), Some(""));
        assert_eq!(labels.get("team").map(String::as_str), Some("a"));
    }

    #[test]
    fn a_pod_that_stops_matching_still_wakes_the_service_that_listed_it() {
        let now = jiff::Timestamp::now();
        let svc = service(&[("app", "web")], vec![]);
        let a = Arc::new(with_ip(ready(pod("a", &[("app", "web")]), now), "10.0.0.1"));
        let memberships = PodMemberships::default();
        memberships.record("default", "web", &backends(&svc, &[a], &HashMap::new()));
        assert_eq!(memberships.services_of("default", "a"), ["web"]);
        memberships.record("default", "web", &[]);
        assert!(memberships.services_of("default", "a").is_empty());
    }
}

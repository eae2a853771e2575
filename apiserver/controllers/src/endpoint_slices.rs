//! The EndpointSlice controller: every Service with a selector gets EndpointSlices
//! (discovery.k8s.io/v1) listing the pods it selects, at most 100 endpoints per slice, one
//! family of slices per address type and resolved port set, each with ready, serving and
//! terminating conditions, node name and zone. A Service that selects nothing keeps one
//! empty placeholder slice. Slices are owned by their Service, so the garbage collector
//! removes them with it.
//!
//! `desired_slices` is the pure decision, `assign` matches it to the existing slices so that
//! slices are updated in place rather than replaced; `reconcile` writes the difference. A
//! Service's pods come from the pod informer's namespace index, its slices from the slice
//! informer's controller-owner index.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};

use crate::api_errors::is_status;
use crate::endpoints::{self, Backend, PodMemberships, ResolvedPort};
use crate::informers::{Indexes, Informer};
use crate::pods;
use crate::{ControllerContext, ReconcileError};

pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
/// Upstream's default `--max-endpoints-per-slice`.
const MAX_ENDPOINTS_PER_SLICE: usize = 100;

/// The content of one slice, before it is matched to an object.
#[derive(Debug, Clone, PartialEq)]
pub struct SliceContent {
    pub address_type: String,
    pub ports: Option<Vec<EndpointPort>>,
    pub endpoints: Vec<Endpoint>,
}

fn address_type(ip: &str) -> &'static str {
    if ip.contains(':') { "IPv6" } else { "IPv4" }
}

fn endpoint_of(b: &Backend, publish_not_ready: bool) -> Endpoint {
    Endpoint {
        addresses: vec![b.ip.clone()],
        conditions: Some(EndpointConditions {
            ready: Some(publish_not_ready || (b.serving && !b.terminating)),
            serving: Some(b.serving || publish_not_ready),
            terminating: Some(b.terminating),
        }),
        hostname: b.hostname.clone(),
        node_name: b.node_name.clone(),
        target_ref: Some(b.pod.clone()),
        zone: b.zone.clone(),
        ..Endpoint::default()
    }
}

fn slice_ports(ports: &[ResolvedPort]) -> Vec<EndpointPort> {
    ports
        .iter()
        .map(|p| EndpointPort {
            name: Some(p.name.clone().unwrap_or_default()),
            port: Some(p.port),
            protocol: Some(p.protocol.clone()),
            app_protocol: p.app_protocol.clone(),
        })
        .collect()
}

/// The slices a Service should have: its backends grouped by address type and port set, cut
/// into slices of at most 100 endpoints; one empty placeholder when there are none.
pub fn desired_slices(service: &Service, backends: &[Backend]) -> Vec<SliceContent> {
    let publish_not_ready = service
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false);
    let mut groups: BTreeMap<(&str, &[ResolvedPort]), Vec<Endpoint>> = BTreeMap::new();
    for b in backends {
        groups
            .entry((address_type(&b.ip), &b.ports))
            .or_default()
            .push(endpoint_of(b, publish_not_ready));
    }
    let mut out = Vec::new();
    for ((kind, ports), list) in groups {
        for chunk in list.chunks(MAX_ENDPOINTS_PER_SLICE) {
            out.push(SliceContent {
                address_type: kind.to_owned(),
                ports: Some(slice_ports(ports)),
                endpoints: chunk.to_vec(),
            });
        }
    }
    if out.is_empty() {
        let family = service
            .spec
            .as_ref()
            .and_then(|s| s.ip_families.as_ref())
            .and_then(|f| f.first())
            .map_or("IPv4", |f| if f == "IPv6" { "IPv6" } else { "IPv4" });
        out.push(SliceContent {
            address_type: family.to_owned(),
            ports: None,
            endpoints: Vec::new(),
        });
    }
    out
}

/// What to do with the existing slices.
#[derive(Debug, Default)]
pub struct SlicePlan {
    /// Existing slices (by name) to rewrite with new content.
    pub update: Vec<(String, SliceContent)>,
    pub create: Vec<SliceContent>,
    /// Existing slices (by name) no longer needed.
    pub delete: Vec<String>,
}

fn content_of(slice: &EndpointSlice) -> SliceContent {
    SliceContent {
        address_type: slice.address_type.clone(),
        ports: slice.ports.clone(),
        endpoints: slice.endpoints.clone(),
    }
}

/// Matches desired slices to existing ones of the same address type and ports, keeping
/// unchanged ones, rewriting changed ones in place, creating what is missing and deleting
/// the rest. A slice for which `labels_current` is false is rewritten even if its content
/// is unchanged.
pub fn assign(
    desired: Vec<SliceContent>,
    existing: &[Arc<EndpointSlice>],
    labels_current: impl Fn(&EndpointSlice) -> bool,
) -> SlicePlan {
    let mut plan = SlicePlan::default();
    let mut unused: Vec<&EndpointSlice> = existing.iter().map(AsRef::as_ref).collect();
    unused.sort_by_key(|s| s.name_any());
    let mut leftover = Vec::new();
    // Unchanged slices first, so they are never rewritten to make room.
    for want in desired {
        if let Some(i) = unused
            .iter()
            .position(|s| content_of(s) == want && labels_current(s))
        {
            unused.remove(i);
        } else {
            leftover.push(want);
        }
    }
    for want in leftover {
        match unused
            .iter()
            .position(|s| s.address_type == want.address_type && s.ports == want.ports)
        {
            Some(i) => {
                let slice = unused.remove(i);
                plan.update.push((slice.name_any(), want));
            }
            None => plan.create.push(want),
        }
    }
    plan.delete = unused.into_iter().map(ResourceExt::name_any).collect();
    plan
}

struct SliceContext {
    ctx: ControllerContext,
    /// The pods by namespace (a Service selects within its own).
    pods: Indexes<Pod>,
    /// Every node, for the zones of the endpoints.
    nodes: Store<Node>,
    /// The slices by controller (a Service's own).
    slices: Indexes<EndpointSlice>,
    memberships: Arc<PodMemberships>,
}

pub fn run(
    ctx: ControllerContext,
    services: &mut Informer<Service>,
    pods: &mut Informer<Pod>,
    nodes: &mut Informer<Node>,
    slices: &mut Informer<EndpointSlice>,
) -> impl std::future::Future<Output = ()> + use<> {
    let memberships = Arc::new(PodMemberships::default());
    let state = Arc::new(SliceContext {
        ctx,
        pods: pods.indexes(),
        nodes: nodes.store(),
        slices: slices.indexes(),
        memberships: memberships.clone(),
    });
    let service_index = services.indexes();
    let controller = Controller::for_shared_stream(services.subscribe(), services.store())
        .watches_shared_stream(pods.subscribe(), move |pod: Arc<Pod>| {
            endpoints::services_for_pod(&pod, &service_index, &memberships)
        })
        .watches_shared_stream(slices.subscribe(), |slice: Arc<EndpointSlice>| {
            let service = slice.labels().get(SERVICE_NAME_LABEL)?;
            Some(ObjectRef::new(service).within(&slice.namespace().unwrap_or_default()))
        });
    async move {
        controller
            .run(reconcile, error_policy, state)
            .for_each(|_| futures::future::ready(()))
            .await
    }
}

fn error_policy(_s: Arc<Service>, err: &ReconcileError, _ctx: Arc<SliceContext>) -> Action {
    crate::retry_after_failure("endpointslice reconcile failed", err)
}

async fn reconcile(
    service: Arc<Service>,
    state: Arc<SliceContext>,
) -> Result<Action, ReconcileError> {
    if endpoints::service_selector(&service).is_none()
        || service.metadata.deletion_timestamp.is_some()
    {
        return Ok(Action::await_change());
    }
    let namespace = service.namespace().unwrap_or_default();
    let name = service.name_any();
    let uid = service.uid().unwrap_or_default();
    let backends = endpoints::backends(
        &service,
        &state.pods.in_namespace(&namespace),
        &endpoints::zones_of(&state.nodes),
    );
    state.memberships.record(&namespace, &name, &backends);
    let mut labels = endpoints::derived_labels(&service);
    labels.insert(SERVICE_NAME_LABEL.into(), name.clone());
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
    let existing: Vec<Arc<EndpointSlice>> = state
        .slices
        .controlled_by(&uid)
        .into_iter()
        .filter(|s| s.metadata.namespace.as_deref() == Some(namespace.as_str()))
        .collect();
    let plan = assign(desired_slices(&service, &backends), &existing, |s| {
        s.labels() == &labels
    });
    let api: Api<EndpointSlice> = Api::namespaced(state.ctx.client.clone(), &namespace);
    let owner = pods::controller_ref("v1", "Service", &service.metadata);
    let slice = |content: SliceContent, meta: ObjectMeta| EndpointSlice {
        metadata: ObjectMeta {
            labels: Some(labels.clone()),
            owner_references: Some(vec![owner.clone()]),
            namespace: Some(namespace.clone()),
            ..meta
        },
        address_type: content.address_type,
        endpoints: content.endpoints,
        ports: content.ports,
    };
    let params = PostParams::default();
    let mut conflict = false;
    for (slice_name, content) in plan.update {
        let Some(current) = existing.iter().find(|s| s.name_any() == slice_name) else {
            continue;
        };
        let meta = ObjectMeta {
            name: Some(slice_name.clone()),
            resource_version: current.resource_version(),
            annotations: current.metadata.annotations.clone(),
            ..ObjectMeta::default()
        };
        match api
            .replace(&slice_name, &params, &slice(content, meta))
            .await
        {
            Ok(_) => {}
            Err(e) if is_status(&e, 409) || is_status(&e, 404) => conflict = true,
            Err(e) => return Err(e.into()),
        }
    }
    for content in plan.create {
        let meta = ObjectMeta {
            generate_name: Some(format!("{name}-")),
            ..ObjectMeta::default()
        };
        api.create(&params, &slice(content, meta)).await?;
    }
    for slice_name in plan.delete {
        let uid = existing
            .iter()
            .find(|s| s.name_any() == slice_name)
            .and_then(|s| s.uid());
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid,
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(&slice_name, &params).await {
            Ok(_) => {}
            Err(e) if is_status(&e, 404) || is_status(&e, 409) => {}
            Err(e) => return Err(e.into()),
        }
    }
    if conflict {
        // The cache was behind; the slice watch brings the newer objects.
        return Ok(Action::requeue(Duration::from_millis(200)));
    }
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ObjectReference, ServiceSpec};

    fn service() -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                uid: Some("svc-uid".into()),
                ..ObjectMeta::default()
            },
            spec: Some(ServiceSpec {
                selector: Some([("app".to_owned(), "web".to_owned())].into()),
                ..ServiceSpec::default()
            }),
            status: None,
        }
    }

    fn backend(n: usize, port: i32, serving: bool, terminating: bool) -> Backend {
        Backend {
            ip: format!("10.0.{}.{}", n / 250, n % 250),
            ready: serving,
            serving,
            terminating,
            node_name: Some("node-a".into()),
            hostname: None,
            zone: Some("zone-1".into()),
            pod: ObjectReference {
                kind: Some("Pod".into()),
                name: Some(format!("web-{n}")),
                ..ObjectReference::default()
            },
            ports: vec![ResolvedPort {
                name: Some("http".into()),
                port,
                protocol: "TCP".into(),
                app_protocol: None,
            }],
        }
    }

    fn existing(name: &str, content: &SliceContent) -> Arc<EndpointSlice> {
        Arc::new(EndpointSlice {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            address_type: content.address_type.clone(),
            endpoints: content.endpoints.clone(),
            ports: content.ports.clone(),
        })
    }

    #[test]
    fn endpoints_are_cut_into_slices_of_a_hundred_per_port_set() {
        let mut backends: Vec<Backend> = (0..250).map(|n| backend(n, 8080, true, false)).collect();
        backends.push(backend(900, 9090, true, false));
        let slices = desired_slices(&service(), &backends);
        let sizes: Vec<usize> = slices.iter().map(|s| s.endpoints.len()).collect();
        assert_eq!(sizes, [100, 100, 50, 1]);
        assert!(slices.iter().all(|s| s.address_type == "IPv4"));
        let last_port = slices[3].ports.as_ref().unwrap()[0].port;
        assert_eq!(last_port, Some(9090));
    }

    #[test]
    fn conditions_follow_readiness_and_termination() {
        let slices = desired_slices(
            &service(),
            &[backend(1, 80, true, true), backend(2, 80, false, false)],
        );
        let conditions: Vec<(Option<bool>, Option<bool>, Option<bool>)> = slices[0]
            .endpoints
            .iter()
            .map(|e| {
                let c = e.conditions.clone().unwrap_or_default();
                (c.ready, c.serving, c.terminating)
            })
            .collect();
        assert_eq!(
            conditions,
            [
                (Some(false), Some(true), Some(true)),
                (Some(false), Some(false), Some(false))
            ]
        );
        assert_eq!(slices[0].endpoints[0].zone.as_deref(), Some("zone-1"));
    }

    #[test]
    fn a_service_selecting_nothing_keeps_one_empty_placeholder() {
        let slices = desired_slices(&service(), &[]);
        assert_eq!(slices.len(), 1);
        assert!(slices[0].endpoints.is_empty() && slices[0].ports.is_none());
    }

    #[test]
    fn unchanged_slices_stay_changed_ones_are_rewritten_in_place_and_extras_go() {
        let old = desired_slices(&service(), &[backend(1, 80, true, false)]);
        let other = desired_slices(&service(), &[backend(2, 81, true, false)]);
        let current = vec![
            existing("web-aaaaa", &old[0]),
            existing("web-bbbbb", &other[0]),
        ];
        // Same content as web-aaaaa: nothing to do for it; web-bbbbb is no longer wanted.
        let plan = assign(old.clone(), &current, |_| true);
        assert!(plan.update.is_empty() && plan.create.is_empty());
        assert_eq!(plan.delete, ["web-bbbbb"]);
        // One more pod on port 80: web-aaaaa is rewritten, not replaced.
        let grown = desired_slices(
            &service(),
            &[backend(1, 80, true, false), backend(3, 80, true, false)],
        );
        let plan = assign(grown, &current, |_| true);
        assert_eq!(plan.update.len(), 1);
        assert_eq!(plan.update[0].0, "web-aaaaa");
        assert!(plan.create.is_empty());
        // Stale labels force a rewrite even with the same endpoints.
        let plan = assign(old, &current, |s| s.name_any() != "web-aaaaa");
        assert_eq!(plan.update.len(), 1);
    }
}

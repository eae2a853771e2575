//! The resource table: every served resource with its group/version/kind, names, scope,
//! discovery data, subresources, strategy, printer and k8s-openapi type.

use std::sync::LazyLock;

use k8s_openapi::api::{
    admissionregistration, apps, authentication, authorization, autoscaling, batch, certificates,
    coordination, core, discovery, events, flowcontrol, networking, node, policy, rbac, scheduling,
    storage,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

use crate::registry::conversion::{self, Conversion};
use crate::registry::printers::{
    self, Printer, cluster, networking as net_printers, rbac as rbac_printers,
    storage as storage_printers,
};
use crate::registry::resources::cluster_policy::{
    BindingStrategy, CrdStrategy, CsrStrategy, DisruptionBudgetStrategy, HpaStrategy,
    IngressStrategy, PriorityClassStrategy, RoleStrategy, StorageClassStrategy, VolumeStrategy,
};
use crate::registry::resources::{
    DataStrategy, EndpointSliceStrategy, EventStrategy, NamespaceStrategy, NodeStrategy,
    PodStrategy, ServiceStrategy, WorkloadKind, WorkloadStrategy,
};
use crate::registry::reviews::Review;
use crate::registry::strategy::{PlainStrategy, StatusStrategy, Strategy};

/// What a subresource is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subresource {
    /// `<r>/status`: the same object; writes change only status.
    Status,
    /// `<r>/scale`: an `autoscaling/v1` Scale view of `spec.replicas`.
    Scale,
    /// `pods/binding`: assigns a pod to a node.
    Binding,
    /// `pods/eviction`: deletes a pod if no disruption budget forbids it.
    Eviction,
    /// `serviceaccounts/token`: issues a token (TokenRequest).
    Token,
    /// `pods/log`, `pods/exec`, `pods/attach`, `pods/portforward`: streams from the node.
    Log,
    Exec,
    Attach,
    PortForward,
    /// `pods/ephemeralcontainers`: adds debug containers to a running pod.
    EphemeralContainers,
    /// `pods|services|nodes/proxy[/path]`: HTTP relayed to the pod, service or node.
    Proxy,
    /// `namespaces/{name}/finalize`: writes only `spec.finalizers`.
    Finalize,
}

impl Subresource {
    pub fn name(self) -> &'static str {
        match self {
            Subresource::Status => "status",
            Subresource::Scale => "scale",
            Subresource::Binding => "binding",
            Subresource::Eviction => "eviction",
            Subresource::Token => "token",
            Subresource::Log => "log",
            Subresource::Exec => "exec",
            Subresource::Attach => "attach",
            Subresource::PortForward => "portforward",
            Subresource::EphemeralContainers => "ephemeralcontainers",
            Subresource::Proxy => "proxy",
            Subresource::Finalize => "finalize",
        }
    }
}

/// The k8s-openapi type behind a resource, as function pointers.
pub struct TypeHooks {
    /// Decodes JSON into the typed struct and back: rejects wrong field types and drops
    /// unknown fields, exactly as decoding into the Go type does.
    pub round_trip: fn(Value) -> Result<Value, String>,
    pub schema: fn(&mut SchemaGenerator) -> Schema,
    /// `io.k8s.api.core.v1.Pod`.
    pub schema_name: fn() -> String,
}

fn round_trip<K: DeserializeOwned + Serialize>(value: Value) -> Result<Value, String> {
    let typed: K = serde_json::from_value(value).map_err(|e| e.to_string())?;
    serde_json::to_value(&typed).map_err(|e| e.to_string())
}

fn hooks<K: DeserializeOwned + Serialize + JsonSchema>() -> TypeHooks {
    TypeHooks {
        round_trip: round_trip::<K>,
        schema: |g| g.subschema_for::<K>(),
        schema_name: || K::schema_name().into_owned(),
    }
}

/// One served resource.
pub struct ResourceDef {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub subresources: &'static [Subresource],
    pub strategy: Box<dyn Strategy>,
    pub printer: &'static Printer,
    pub types: TypeHooks,
    /// Create-only resources answered on the spot and never stored.
    pub review: Option<Review>,
    /// Served over another version's stored form.
    pub conversion: Option<Conversion>,
    /// Read-only resource metrics (`metrics.k8s.io`), gathered from the nodes on each read
    /// and never stored.
    pub metrics: Option<MetricsKind>,
}

/// Which resource metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsKind {
    Nodes,
    Pods,
}

impl ResourceDef {
    /// `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The storage key prefix of this resource (`/registry/apps/deployments/`).
    pub fn key_prefix(&self) -> String {
        // Converted versions live under their stored resource's prefix.
        let (group, plural) = match &self.conversion {
            Some(c) => (c.storage.0, c.storage.1),
            None => (self.group, self.plural),
        };
        let group = if group.is_empty() { "core" } else { group };
        format!("/registry/{group}/{plural}/")
    }

    /// The resource whose form is stored: itself, or the target of its conversion.
    pub fn stored(&'static self) -> &'static ResourceDef {
        match &self.conversion {
            Some(c) => lookup(c.storage.0, c.storage.2, c.storage.1)
                .expect("conversion targets a served resource"),
            None => self,
        }
    }

    /// The storage key of one object.
    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        match namespace.filter(|_| self.namespaced) {
            Some(ns) => format!("{}{ns}/{name}", self.key_prefix()),
            None => format!("{}{name}", self.key_prefix()),
        }
    }

    pub fn has_subresource(&self, sub: Subresource) -> bool {
        self.subresources.contains(&sub)
    }

    /// Verbs of the main resource, as discovery lists them.
    pub fn verbs(&self) -> &'static [&'static str] {
        if self.metrics.is_some() {
            &["get", "list"]
        } else if self.review.is_some() {
            &["create"]
        } else if self.plural == "namespaces" {
            &[
                "create", "delete", "get", "list", "patch", "update", "watch",
            ]
        } else {
            &[
                "create",
                "delete",
                "deletecollection",
                "get",
                "list",
                "patch",
                "update",
                "watch",
            ]
        }
    }
}

#[allow(clippy::too_many_arguments)] // reason: one row of the table, every column named at the call
fn def(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
    categories: &'static [&'static str],
    subresources: &'static [Subresource],
    strategy: Box<dyn Strategy>,
    printer: &'static Printer,
    types: TypeHooks,
) -> ResourceDef {
    ResourceDef {
        group,
        version,
        kind,
        plural,
        singular: Box::leak(kind.to_lowercase().into_boxed_str()),
        namespaced,
        short_names,
        categories,
        subresources,
        strategy,
        printer,
        types,
        review: None,
        conversion: None,
        metrics: None,
    }
}

fn metrics(kind: &'static str, plural: &'static str, which: MetricsKind) -> ResourceDef {
    ResourceDef {
        metrics: Some(which),
        ..def(
            "metrics.k8s.io",
            "v1beta1",
            kind,
            plural,
            which == MetricsKind::Pods,
            NONE,
            NONE,
            NO_SUBRESOURCES,
            Box::new(PlainStrategy),
            &printers::DEFAULT,
            match which {
                MetricsKind::Nodes => metrics_hooks::<k8s_metrics::v1beta1::NodeMetrics>(|| {
                    "io.k8s.metrics.pkg.apis.metrics.v1beta1.NodeMetrics".into()
                }),
                MetricsKind::Pods => metrics_hooks::<k8s_metrics::v1beta1::PodMetrics>(|| {
                    "io.k8s.metrics.pkg.apis.metrics.v1beta1.PodMetrics".into()
                }),
            },
        )
    }
}

/// Type hooks of a metrics kind: its k8s-metrics type, and no schema of its own (the
/// metrics API is left out of the OpenAPI documents, as metrics-server publishes it).
fn metrics_hooks<K: DeserializeOwned + Serialize>(schema_name: fn() -> String) -> TypeHooks {
    TypeHooks {
        round_trip: round_trip::<K>,
        schema: |g| g.subschema_for::<Value>(),
        schema_name,
    }
}

/// A version served over the stored form of another.
fn converted(def: ResourceDef, conversion: Conversion) -> ResourceDef {
    ResourceDef {
        conversion: Some(conversion),
        ..def
    }
}

fn review(
    group: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
    which: Review,
    types: TypeHooks,
) -> ResourceDef {
    let plain = Box::new(PlainStrategy);
    ResourceDef {
        review: Some(which),
        ..def(
            group,
            "v1",
            kind,
            plural,
            namespaced,
            NONE,
            NONE,
            NO_SUBRESOURCES,
            plain,
            &printers::DEFAULT,
            types,
        )
    }
}

const ALL: &[&str] = &["all"];
const NONE: &[&str] = &[];
const NO_SUBRESOURCES: &[Subresource] = &[];
const STATUS: &[Subresource] = &[Subresource::Status];
const STATUS_PROXY: &[Subresource] = &[Subresource::Status, Subresource::Proxy];
const STATUS_SCALE: &[Subresource] = &[Subresource::Status, Subresource::Scale];

fn workload(kind: WorkloadKind, template: &'static str) -> Box<dyn Strategy> {
    Box::new(WorkloadStrategy {
        template,
        map_selector: kind == WorkloadKind::ReplicationController,
        kind,
    })
}

/// Every served resource, in discovery order.
pub static RESOURCES: LazyLock<Vec<ResourceDef>> = LazyLock::new(|| {
    use Subresource::Binding;
    vec![
        def(
            "",
            "v1",
            "Namespace",
            "namespaces",
            false,
            &["ns"],
            NONE,
            &[Subresource::Finalize, Subresource::Status],
            Box::new(NamespaceStrategy),
            &printers::NAMESPACES,
            hooks::<core::v1::Namespace>(),
        ),
        def(
            "",
            "v1",
            "Pod",
            "pods",
            true,
            &["po"],
            ALL,
            &[
                Subresource::Status,
                Binding,
                Subresource::Eviction,
                Subresource::Log,
                Subresource::Exec,
                Subresource::Attach,
                Subresource::PortForward,
                Subresource::EphemeralContainers,
                Subresource::Proxy,
            ],
            Box::new(PodStrategy),
            &printers::PODS,
            hooks::<core::v1::Pod>(),
        ),
        def(
            "",
            "v1",
            "Service",
            "services",
            true,
            &["svc"],
            ALL,
            STATUS_PROXY,
            Box::new(ServiceStrategy),
            &printers::SERVICES,
            hooks::<core::v1::Service>(),
        ),
        def(
            "",
            "v1",
            "Endpoints",
            "endpoints",
            true,
            &["ep"],
            NONE,
            NO_SUBRESOURCES,
            Box::new(PlainStrategy),
            &printers::ENDPOINTS,
            hooks::<core::v1::Endpoints>(),
        ),
        def(
            "",
            "v1",
            "ConfigMap",
            "configmaps",
            true,
            &["cm"],
            NONE,
            NO_SUBRESOURCES,
            Box::new(DataStrategy { secret: false }),
            &printers::CONFIGMAPS,
            hooks::<core::v1::ConfigMap>(),
        ),
        def(
            "",
            "v1",
            "Secret",
            "secrets",
            true,
            NONE,
            NONE,
            NO_SUBRESOURCES,
            Box::new(DataStrategy { secret: true }),
            &printers::SECRETS,
            hooks::<core::v1::Secret>(),
        ),
        def(
            "",
            "v1",
            "ServiceAccount",
            "serviceaccounts",
            true,
            &["sa"],
            NONE,
            &[Subresource::Token],
            Box::new(PlainStrategy),
            &printers::SERVICEACCOUNTS,
            hooks::<core::v1::ServiceAccount>(),
        ),
        def(
            "",
            "v1",
            "Event",
            "events",
            true,
            &["ev"],
            NONE,
            NO_SUBRESOURCES,
            Box::new(EventStrategy),
            &printers::EVENTS,
            hooks::<core::v1::Event>(),
        ),
        def(
            "",
            "v1",
            "Node",
            "nodes",
            false,
            &["no"],
            NONE,
            STATUS_PROXY,
            Box::new(NodeStrategy),
            &printers::NODES,
            hooks::<core::v1::Node>(),
        ),
        def(
            "",
            "v1",
            "ReplicationController",
            "replicationcontrollers",
            true,
            &["rc"],
            ALL,
            STATUS_SCALE,
            workload(WorkloadKind::ReplicationController, "/spec/template"),
            &printers::REPLICATIONCONTROLLERS,
            hooks::<core::v1::ReplicationController>(),
        ),
        def(
            "",
            "v1",
            "LimitRange",
            "limitranges",
            true,
            &["limits"],
            NONE,
            NO_SUBRESOURCES,
            Box::new(PlainStrategy),
            &cluster::CREATED,
            hooks::<core::v1::LimitRange>(),
        ),
        def(
            "",
            "v1",
            "ResourceQuota",
            "resourcequotas",
            true,
            &["quota"],
            NONE,
            STATUS,
            Box::new(StatusStrategy),
            &cluster::RESOURCEQUOTAS,
            hooks::<core::v1::ResourceQuota>(),
        ),
        def(
            "",
            "v1",
            "PersistentVolume",
            "persistentvolumes",
            false,
            &["pv"],
            NONE,
            STATUS,
            Box::new(VolumeStrategy { claim: false }),
            &storage_printers::PERSISTENTVOLUMES,
            hooks::<core::v1::PersistentVolume>(),
        ),
        def(
            "",
            "v1",
            "PersistentVolumeClaim",
            "persistentvolumeclaims",
            true,
            &["pvc"],
            NONE,
            STATUS,
            Box::new(VolumeStrategy { claim: true }),
            &storage_printers::PERSISTENTVOLUMECLAIMS,
            hooks::<core::v1::PersistentVolumeClaim>(),
        ),
        def(
            "",
            "v1",
            "PodTemplate",
            "podtemplates",
            true,
            NONE,
            NONE,
            NO_SUBRESOURCES,
            Box::new(PlainStrategy),
            &cluster::PODTEMPLATES,
            hooks::<core::v1::PodTemplate>(),
        ),
        def(
            "apps",
            "v1",
            "DaemonSet",
            "daemonsets",
            true,
            &["ds"],
            ALL,
            STATUS,
            workload(WorkloadKind::DaemonSet, "/spec/template"),
            &printers::DAEMONSETS,
            hooks::<apps::v1::DaemonSet>(),
        ),
        def(
            "apps",
            "v1",
            "Deployment",
            "deployments",
            true,
            &["deploy"],
            ALL,
            STATUS_SCALE,
            workload(WorkloadKind::Deployment, "/spec/template"),
            &printers::DEPLOYMENTS,
            hooks::<apps::v1::Deployment>(),
        ),
        def(
            "apps",
            "v1",
            "ReplicaSet",
            "replicasets",
            true,
            &["rs"],
            ALL,
            STATUS_SCALE,
            workload(WorkloadKind::ReplicaSet, "/spec/template"),
            &printers::REPLICASETS,
            hooks::<apps::v1::ReplicaSet>(),
        ),
        def(
            "apps",
            "v1",
            "StatefulSet",
            "statefulsets",
            true,
            &["sts"],
            ALL,
            STATUS_SCALE,
            workload(WorkloadKind::StatefulSet, "/spec/template"),
            &printers::STATEFULSETS,
            hooks::<apps::v1::StatefulSet>(),
        ),
        def(
            "apps",
            "v1",
            "ControllerRevision",
            "controllerrevisions",
            true,
            NONE,
            NONE,
            NO_SUBRESOURCES,
            Box::new(PlainStrategy),
            &cluster::CONTROLLERREVISIONS,
            hooks::<apps::v1::ControllerRevision>(),
        ),
        converted(
            def(
                "events.k8s.io",
                "v1",
                "Event",
                "events",
                true,
                &["ev"],
                NONE,
                NO_SUBRESOURCES,
                Box::new(EventStrategy),
                &printers::EVENTS,
                hooks::<events::v1::Event>(),
            ),
            Conversion {
                storage: ("", "events", "v1"),
                to_storage: conversion::event_to_core,
                from_storage: conversion::event_from_core,
            },
        ),
        review(
            "authentication.k8s.io",
            "SelfSubjectReview",
            "selfsubjectreviews",
            false,
            Review::SelfSubject,
            hooks::<authentication::v1::SelfSubjectReview>(),
        ),
        review(
            "authentication.k8s.io",
            "TokenReview",
            "tokenreviews",
            false,
            Review::Token,
            hooks::<authentication::v1::TokenReview>(),
        ),
        review(
            "authorization.k8s.io",
            "LocalSubjectAccessReview",
            "localsubjectaccessreviews",
            true,
            Review::LocalSubjectAccess,
            hooks::<authorization::v1::LocalSubjectAccessReview>(),
        ),
        review(
            "authorization.k8s.io",
            "SelfSubjectAccessReview",
            "selfsubjectaccessreviews",
            false,
            Review::SelfSubjectAccess,
            hooks::<authorization::v1::SelfSubjectAccessReview>(),
        ),
        review(
            "authorization.k8s.io",
            "SelfSubjectRulesReview",
            "selfsubjectrulesreviews",
            false,
            Review::SelfSubjectRules,
            hooks::<authorization::v1::SelfSubjectRulesReview>(),
        ),
        review(
            "authorization.k8s.io",
            "SubjectAccessReview",
            "subjectaccessreviews",
            false,
            Review::SubjectAccess,
            hooks::<authorization::v1::SubjectAccessReview>(),
        ),
        def(
            "autoscaling",
            "v2",
            "HorizontalPodAutoscaler",
            "horizontalpodautoscalers",
            true,
            &["hpa"],
            ALL,
            STATUS,
            Box::new(HpaStrategy),
            &cluster::HORIZONTALPODAUTOSCALERS,
            hooks::<autoscaling::v2::HorizontalPodAutoscaler>(),
        ),
        converted(
            def(
                "autoscaling",
                "v1",
                "HorizontalPodAutoscaler",
                "horizontalpodautoscalers",
                true,
                &["hpa"],
                NONE,
                STATUS,
                Box::new(HpaStrategy),
                &cluster::HORIZONTALPODAUTOSCALERS,
                hooks::<autoscaling::v1::HorizontalPodAutoscaler>(),
            ),
            Conversion {
                storage: ("autoscaling", "horizontalpodautoscalers", "v2"),
                to_storage: conversion::hpa_v1_to_v2,
                from_storage: conversion::hpa_v2_to_v1,
            },
        ),
        def(
            "batch",
            "v1",
            "CronJob",
            "cronjobs",
            true,
            &["cj"],
            ALL,
            STATUS,
            workload(WorkloadKind::CronJob, "/spec/jobTemplate/spec/template"),
            &printers::CRONJOBS,
            hooks::<batch::v1::CronJob>(),
        ),
        def(
            "batch",
            "v1",
            "Job",
            "jobs",
            true,
            NONE,
            ALL,
            STATUS,
            workload(WorkloadKind::Job, "/spec/template"),
            &printers::JOBS,
            hooks::<batch::v1::Job>(),
        ),
        def(
            "certificates.k8s.io",
            "v1",
            "CertificateSigningRequest",
            "certificatesigningrequests",
            false,
            &["csr"],
            NONE,
            STATUS,
            Box::new(CsrStrategy),
            &cluster::CERTIFICATESIGNINGREQUESTS,
            hooks::<certificates::v1::CertificateSigningRequest>(),
        ),
        def(
            "networking.k8s.io",
            "v1",
            "IngressClass",
            "ingressclasses",
            false,
            NONE,
            NONE,
            NO_SUBRESOURCES,
            Box::new(PlainStrategy),
            &net_printers::INGRESSCLASSES,
            hooks::<networking::v1::IngressClass>(),
        ),
        def(
            "networking.k8s.io",
            "v1",
            "Ingress",
            "ingresses",
            true,
            &["ing"],
            NONE,
            STATUS,
            Box::new(IngressStrategy),
            &net_printers::INGRESSES,
            hooks::<networking::v1::Ingress>(),
        ),
        def(
            "networking.k8s.io",
            "v1",
            "IPAddress",
            "ipaddresses",
            false,
            &["ip"],
            NONE,
            NO_SUBRESOURCES,
            Box::new(PlainStrategy),
            &printers::DEFAULT,
            hooks::<networking::v1::IPAddress>(),
        ),
        def(
            "networking.k8s.io",
            "v1",
            "NetworkPolicy",
            "networkpolicies",
            true,
            &["netpol"],
            NONE,
            NO_SUBRESOURCES,
            Box::new(PlainStrategy),
            &net_printers::NETWORKPOLICIES,
            hooks::<networking::v1::NetworkPolicy>(),
        ),
        def(
            "networking.k8s.io",
            "v1",
            "ServiceCIDR",
            "servicecidrs",
            false,
            NONE,
            NONE,
            STATUS,
            Box::new(StatusStrategy),
            &net_printers::SERVICECIDRS,
            hooks::<networking::v1::ServiceCIDR>(),
        ),
        def(
            "policy",
            "v1",
            "PodDisruptionBudget",
            "poddisruptionbudgets",
            true,
            &["pdb"],
            NONE,
            STATUS,
            Box::new(DisruptionBudgetStrategy),
            &cluster::PODDISRUPTIONBUDGETS,
            hooks::<policy::v1::PodDisruptionBudget>(),
        ),
        def(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRoleBinding",
            "clusterrolebindings",
            false,
            NONE,
            NONE,
            NO_SUBRESOURCES,
            Box::new(BindingStrategy),
            &rbac_printers::BINDINGS,
            hooks::<rbac::v1::ClusterRoleBinding>(),
        ),
        def(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRole",
            "clusterroles",
            false,
            NONE,
            NONE,
            NO_SUBRESOURCES,
            Box::new(RoleStrategy),
            &rbac_printers::ROLES,
            hooks::<rbac::v1::ClusterRole>(),
        ),
        def(
            "rbac.authorization.k8s.io",
            "v1",
            "RoleBinding",
            "rolebindings",
            true,
            NONE,
            NONE,
            NO_SUBRESOURCES,
            Box::new(BindingStrategy),
            &rbac_printers::BINDINGS,
            hooks::<rbac::v1::RoleBinding>(),
        ),
        def(
            "rbac.authorization.k8s.io",
            "v1",
            "Role",
            "roles",
            true,
            NONE,
            NONE,
            NO_SUBRESOURCES,
            Box::new(RoleStrategy),
            &rbac_printers::ROLES,
            hooks::<rbac::v1::Role>(),
        ),
        def(
            "storage.k8s.io",
            "v1",
            "CSIDriver",
            "csidrivers",
            false,
            NONE,
            NONE,
            NO_SUBRESOURCES,
            Box::new(PlainStrategy),
            &storage_printers::CSIDRIVERS,
            hooks::<storage::v1::CSIDriver>(),
        ),
        def(
            "storage.k8s.io",
            "v1",
            "CSINode",
            "csinodes",
            false,
            NONE,
            NONE,
            NO_SUBRESOURCES,
            Box::new(PlainStrategy),
            &printers::DEFAULT,
            hooks::<storage::v1::CSINode>(),
        ),
        def(
            "storage.k8s.io",
            "v1",
            "CSIStorageCapacity",
            "csistoragecapacities",
            true,
            NONE,
            NONE,
            NO_SUBRESOURCES,
            Box::new(PlainStrategy),
            &printers::DEFAULT,
            hooks::<storage::v1::CSIStorageCapacity>(),
        ),
        def(
            "storage.k8s.io",
            "v1",
            "StorageClass",
            "storageclasses",
            false,
            &["sc"],
            NONE,
            NO_SUBRESOURCES,
            Box::new(StorageClassStrategy),
            &storage_printers::STORAGECLASSES,
            hooks::<storage::v1::StorageClass>(),
        ),
        def(
            "storage.k8s.io",
            "v1",
            "VolumeAttachment",
            "volumeattachments",
            false,
            NONE,
            NONE,
            STATUS,
            Box::new(StatusStrategy),
            &storage_printers::VOLUMEATTACHMENTS,
            hooks::<storage::v1::VolumeAttachment>(),
        ),
        def(
            "admissionregistration.k8s.io",
            "v1",
            "MutatingWebhookConfiguration",
            "mutatingwebhookconfigurations",
            false,
            NONE,
            &["api-extensions"],
            NO_SUBRESOURCES,
            Box::new(PlainStrategy),
            &cluster::WEBHOOKCONFIGURATIONS,
            hooks::<admissionregistration::v1::MutatingWebhookConfiguration>(),
        ),
        def(
            "admissionregistration.k8s.io",
            "v1",
            "ValidatingAdmissionPolicy",
            "validatingadmissionpolicies",
            false,
            NONE,
            &["api-extensions"],
            STATUS,
            Box::new(StatusStrategy),
            &cluster::VALIDATINGADMISSIONPOLICIES,
            hooks::<admissionregistration::v1::ValidatingAdmissionPolicy>(),
        ),
        def(
            "admissionregistration.k8s.io",
            "v1",
            "ValidatingAdmissionPolicyBinding",
            "validatingadmissionpolicybindings",
            false,
            NONE,
            &["api-extensions"],
            NO_SUBRESOURCES,
            Box::new(PlainStrategy),
            &printers::DEFAULT,
            hooks::<admissionregistration::v1::ValidatingAdmissionPolicyBinding>(),
        ),
        def(
            "admissionregistration.k8s.io",
            "v1",
            "ValidatingWebhookConfiguration",
            "validatingwebhookconfigurations",
            false,
            NONE,
            &["api-extensions"],
            NO_SUBRESOURCES,
            Box::new(PlainStrategy),
            &cluster::WEBHOOKCONFIGURATIONS,
            hooks::<admissionregistration::v1::ValidatingWebhookConfiguration>(),
        ),
        def(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
            "customresourcedefinitions",
            false,
            &["crd", "crds"],
            &["api-extensions"],
            STATUS,
            Box::new(CrdStrategy),
            &cluster::CREATED,
            hooks::<apiextensions::v1::CustomResourceDefinition>(),
        ),
        def(
            "scheduling.k8s.io",
            "v1",
            "PriorityClass",
            "priorityclasses",
            false,
            &["pc"],
            NONE,
            NO_SUBRESOURCES,
            Box::new(PriorityClassStrategy),
            &cluster::PRIORITYCLASSES,
            hooks::<scheduling::v1::PriorityClass>(),
        ),
        def(
            "coordination.k8s.io",
            "v1",
            "Lease",
            "leases",
            true,
            NONE,
            NONE,
            NO_SUBRESOURCES,
            Box::new(PlainStrategy),
            &printers::LEASES,
            hooks::<coordination::v1::Lease>(),
        ),
        def(
            "node.k8s.io",
            "v1",
            "RuntimeClass",
            "runtimeclasses",
            false,
            NONE,
            NONE,
            NO_SUBRESOURCES,
            Box::new(PlainStrategy),
            &cluster::RUNTIMECLASSES,
            hooks::<node::v1::RuntimeClass>(),
        ),
        def(
            "discovery.k8s.io",
            "v1",
            "EndpointSlice",
            "endpointslices",
            true,
            NONE,
            NONE,
            NO_SUBRESOURCES,
            Box::new(EndpointSliceStrategy),
            &printers::ENDPOINTSLICES,
            hooks::<discovery::v1::EndpointSlice>(),
        ),
        def(
            "flowcontrol.apiserver.k8s.io",
            "v1",
            "FlowSchema",
            "flowschemas",
            false,
            NONE,
            NONE,
            STATUS,
            Box::new(StatusStrategy),
            &cluster::FLOWSCHEMAS,
            hooks::<flowcontrol::v1::FlowSchema>(),
        ),
        def(
            "flowcontrol.apiserver.k8s.io",
            "v1",
            "PriorityLevelConfiguration",
            "prioritylevelconfigurations",
            false,
            NONE,
            NONE,
            STATUS,
            Box::new(StatusStrategy),
            &cluster::PRIORITYLEVELCONFIGURATIONS,
            hooks::<flowcontrol::v1::PriorityLevelConfiguration>(),
        ),
        metrics("NodeMetrics", "nodes", MetricsKind::Nodes),
        metrics("PodMetrics", "pods", MetricsKind::Pods),
    ]
});

/// The resource at `group`/`version`/`plural`.
pub fn lookup(group: &str, version: &str, plural: &str) -> Option<&'static ResourceDef> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The resource serving a kind at an apiVersion.
pub fn lookup_kind(api_version: &str, kind: &str) -> Option<&'static ResourceDef> {
    RESOURCES
        .iter()
        .find(|r| r.kind == kind && r.api_version() == api_version)
}

/// Group/versions served, in discovery order (core first).
pub fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for r in RESOURCES.iter() {
        if !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
        }
    }
    out
}

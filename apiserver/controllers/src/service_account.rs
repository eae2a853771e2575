//! The ServiceAccount and root-CA publishers: every active namespace gets a `default`
//! ServiceAccount and the `kube-root-ca.crt` ConfigMap holding the cluster CA, and both come
//! back if deleted.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use serde_json::json;

use crate::api_errors::is_status;
use crate::informers::Informer;
use crate::{ControllerContext, ReconcileError};

pub const ROOT_CA_CONFIGMAP: &str = "kube-root-ca.crt";
const ROOT_CA_DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";

struct Publisher {
    ctx: ControllerContext,
    root_ca: String,
}

pub fn run(
    ctx: ControllerContext,
    root_ca: String,
    namespaces: &mut Informer<Namespace>,
) -> impl std::future::Future<Output = ()> + use<> {
    let client = ctx.client.clone();
    let controller = Controller::for_shared_stream(namespaces.subscribe(), namespaces.store())
        .watches(
            Api::<ServiceAccount>::all(client.clone()),
            watcher::Config::default().fields("metadata.name=default"),
            |sa: ServiceAccount| sa.namespace().map(|ns| ObjectRef::new(&ns)),
        )
        .watches(
            Api::<ConfigMap>::all(client),
            watcher::Config::default().fields(&format!("metadata.name={ROOT_CA_CONFIGMAP}")),
            |cm: ConfigMap| cm.namespace().map(|ns| ObjectRef::new(&ns)),
        );
    let state = Arc::new(Publisher { ctx, root_ca });
    async move {
        controller
            .run(reconcile, error_policy, state)
            .for_each(|_| futures::future::ready(()))
            .await
    }
}

fn error_policy(_ns: Arc<Namespace>, err: &ReconcileError, _ctx: Arc<Publisher>) -> Action {
    crate::retry_after_failure("service account reconcile failed", err)
}

async fn reconcile(ns: Arc<Namespace>, state: Arc<Publisher>) -> Result<Action, ReconcileError> {
    if ns.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let name = ns.name_any();
    let client = state.ctx.client.clone();
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &name);
    if accounts.get_opt("default").await?.is_none() {
        let sa = ServiceAccount {
            metadata: ObjectMeta {
                name: Some("default".into()),
                ..ObjectMeta::default()
            },
            ..ServiceAccount::default()
        };
        ignore_exists(accounts.create(&PostParams::default(), &sa).await)?;
    }
    let maps: Api<ConfigMap> = Api::namespaced(client, &name);
    match maps.get_opt(ROOT_CA_CONFIGMAP).await? {
        None => {
            let cm = ConfigMap {
                metadata: ObjectMeta {
                    name: Some(ROOT_CA_CONFIGMAP.into()),
                    annotations: Some(BTreeMap::from([(
                        "kubernetes.io/description".to_owned(),
                        ROOT_CA_DESCRIPTION.to_owned(),
                    )])),
                    ..ObjectMeta::default()
                },
                data: Some(BTreeMap::from([(
                    "ca.crt".to_owned(),
                    state.root_ca.clone(),
                )])),
                ..ConfigMap::default()
            };
            ignore_exists(maps.create(&PostParams::default(), &cm).await)?;
        }
        Some(cm) if cm.data.as_ref().and_then(|d| d.get("ca.crt")) != Some(&state.root_ca) => {
            let patch = json!({"data": {"ca.crt": state.root_ca}});
            maps.patch(
                ROOT_CA_CONFIGMAP,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
        }
        Some(_) => {}
    }
    Ok(Action::await_change())
}

fn ignore_exists<T>(result: Result<T, kube::Error>) -> Result<(), ReconcileError> {
    match result {
        Ok(_) => Ok(()),
        Err(e) if is_status(&e, 409) => Ok(()),
        // The namespace is going away.
        Err(e) if is_status(&e, 403) || is_status(&e, 404) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

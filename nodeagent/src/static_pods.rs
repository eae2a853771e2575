//! Static pods: Pod manifests (YAML or JSON) in `--pod-manifest-path`, run by this node with
//! or without an API server. Each runs as `<name>-<node>` under a uid hashed from its
//! manifest and the node (a changed manifest is a new pod), and appears in the API as a
//! *mirror pod* once the API server answers: same name, annotated
//! `kubernetes.io/config.mirror`, owned by the Node, with the static pod's status. A mirror
//! pod someone deletes comes back; a manifest that is removed stops its pod and deletes its
//! mirror.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, PostParams};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tracing::{debug, warn};

/// The annotation naming where a pod came from (`file`, or `api`).
pub const CONFIG_SOURCE: &str = "kubernetes.io/config.source";
/// The static pod's hash (its uid), on the static pod and on its mirror.
pub const CONFIG_HASH: &str = "kubernetes.io/config.hash";
/// Marks a mirror pod; its value is the static pod's hash.
pub const CONFIG_MIRROR: &str = "kubernetes.io/config.mirror";

/// How often the manifest folder is read.
pub const SCAN_PERIOD: Duration = Duration::from_secs(10);

/// A static pod appearing (or changing) or going.
#[derive(Debug, Clone)]
pub enum StaticEvent {
    Present(Box<Pod>),
    Gone(Box<Pod>),
}

/// Whether an API pod is the mirror of a static pod.
pub fn is_mirror(pod: &Pod) -> bool {
    pod.annotations().contains_key(CONFIG_MIRROR)
}

/// The static pod a manifest describes on `node`.
pub fn from_manifest(text: &str, path: &Path, node: &str) -> anyhow::Result<Pod> {
    let value: serde_json::Value = if text.trim_start().starts_with('{') {
        serde_json::from_str(text)?
    } else {
        serde_saphyr::from_str(text)?
    };
    let mut pod: Pod = serde_json::from_value(value)?;
    let name = pod
        .metadata
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| anyhow::anyhow!("{}: the pod has no name", path.display()))?;
    let digest = Sha256::digest(format!("{node}\n{text}").as_bytes());
    let hash: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    pod.metadata.name = Some(format!("{name}-{node}"));
    pod.metadata
        .namespace
        .get_or_insert_with(|| "default".into());
    pod.metadata.uid = Some(hash.clone());
    let annotations = pod.metadata.annotations.get_or_insert_with(BTreeMap::new);
    annotations.insert(CONFIG_SOURCE.into(), "file".into());
    annotations.insert(CONFIG_HASH.into(), hash);
    let spec = pod.spec.get_or_insert_with(Default::default);
    spec.node_name = Some(node.to_owned());
    spec.restart_policy.get_or_insert_with(|| "Always".into());
    spec.termination_grace_period_seconds.get_or_insert(30);
    for c in spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten())
    {
        c.image_pull_policy.get_or_insert_with(|| {
            crate::pod_sync::default_pull_policy(c.image.as_deref().unwrap_or("")).into()
        });
    }
    Ok(pod)
}

/// Reads every manifest in `dir` (by file name), skipping what cannot be read.
pub fn read_dir(dir: &Path, node: &str) -> HashMap<PathBuf, Pod> {
    let mut out = HashMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let wanted = [".yaml", ".yml", ".json"].iter().any(|e| name.ends_with(e));
        if name.starts_with('.') || !wanted || !path.is_file() {
            continue;
        }
        match std::fs::read_to_string(&path)
            .map_err(anyhow::Error::from)
            .and_then(|text| from_manifest(&text, &path, node))
        {
            Ok(pod) => {
                out.insert(path, pod);
            }
            Err(e) => warn!(file = %path.display(), error = %e, "skipping a static pod manifest"),
        }
    }
    out
}

/// The mirror pod of a static pod.
fn mirror_of(pod: &Pod, node: &Node) -> Pod {
    let mut mirror = pod.clone();
    mirror.metadata.uid = None;
    mirror.metadata.resource_version = None;
    let hash = pod
        .annotations()
        .get(CONFIG_HASH)
        .cloned()
        .unwrap_or_default();
    mirror
        .metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(CONFIG_MIRROR.into(), hash);
    mirror.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "v1".into(),
        kind: "Node".into(),
        name: node.name_any(),
        uid: node.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        ..OwnerReference::default()
    }]);
    mirror.status = None;
    mirror
}

/// Makes the API's mirror pods match the static pods (best effort: the API may be away).
async fn sync_mirrors(client: &kube::Client, node_name: &str, pods: &[&Pod]) {
    let nodes: Api<Node> = Api::all(client.clone());
    let Ok(node) = nodes.get(node_name).await else {
        return;
    };
    for pod in pods {
        let namespace = pod.namespace().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(client.clone(), &namespace);
        let hash = pod.annotations().get(CONFIG_HASH).cloned();
        match api.get_opt(&pod.name_any()).await {
            Ok(Some(existing)) => {
                if existing.annotations().get(CONFIG_MIRROR) == hash.as_ref()
                    && existing.metadata.deletion_timestamp.is_none()
                {
                    continue;
                }
                // An outdated mirror (or a pod in its way) is replaced.
                let _ = api
                    .delete(
                        &pod.name_any(),
                        &DeleteParams {
                            grace_period_seconds: Some(0),
                            ..DeleteParams::default()
                        },
                    )
                    .await;
            }
            Ok(None) => {}
            Err(e) => {
                debug!(error = %e, "reading a mirror pod failed");
                continue;
            }
        }
        if let Err(e) = api
            .create(&PostParams::default(), &mirror_of(pod, &node))
            .await
        {
            debug!(pod = %pod.name_any(), error = %e, "creating a mirror pod failed");
        }
    }
}

async fn delete_mirror(client: &kube::Client, pod: &Pod) {
    let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
    if let Ok(Some(existing)) = api.get_opt(&pod.name_any()).await
        && is_mirror(&existing)
    {
        let _ = api
            .delete(
                &pod.name_any(),
                &DeleteParams {
                    grace_period_seconds: Some(0),
                    ..DeleteParams::default()
                },
            )
            .await;
    }
}

/// Watches `dir` and reports static pods to the pod workers, keeping their mirrors.
pub async fn run(
    dir: PathBuf,
    node: String,
    client: kube::Client,
    events: mpsc::Sender<StaticEvent>,
) {
    let mut known: HashMap<PathBuf, Pod> = HashMap::new();
    loop {
        let found = read_dir(&dir, &node);
        for (path, pod) in &known {
            let same = found.get(path).is_some_and(|p| p.uid() == pod.uid());
            if !same {
                let _ = events.send(StaticEvent::Gone(Box::new(pod.clone()))).await;
                if !found.values().any(|p| p.name_any() == pod.name_any()) {
                    delete_mirror(&client, pod).await;
                }
            }
        }
        for (path, pod) in &found {
            let same = known.get(path).is_some_and(|p| p.uid() == pod.uid());
            if !same {
                let _ = events
                    .send(StaticEvent::Present(Box::new(pod.clone())))
                    .await;
            }
        }
        known = found;
        let pods: Vec<&Pod> = known.values().collect();
        sync_mirrors(&client, &node, &pods).await;
        tokio::time::sleep(SCAN_PERIOD).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_becomes_a_static_pod_of_this_node() {
        let yaml = "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  containers: [{name: c, image: busybox:1.36}]\n";
        let pod = from_manifest(yaml, Path::new("web.yaml"), "n1").unwrap();
        assert_eq!(pod.name_any(), "web-n1");
        assert_eq!(pod.namespace().as_deref(), Some("default"));
        assert_eq!(pod.spec.as_ref().unwrap().node_name.as_deref(), Some("n1"));
        assert_eq!(pod.annotations()[CONFIG_SOURCE], "file");
        assert_eq!(pod.annotations()[CONFIG_HASH], pod.uid().unwrap());
        let c = &pod.spec.as_ref().unwrap().containers[0];
        assert_eq!(c.image_pull_policy.as_deref(), Some("IfNotPresent"));
        // Another node, or a changed manifest, is another pod.
        let other = from_manifest(yaml, Path::new("web.yaml"), "n2").unwrap();
        assert_ne!(other.uid(), pod.uid());
        let changed =
            from_manifest(&yaml.replace("1.36", "1.37"), Path::new("web.yaml"), "n1").unwrap();
        assert_ne!(changed.uid(), pod.uid());
        assert!(from_manifest("metadata: {}\n", Path::new("x.yaml"), "n1").is_err());
    }
}

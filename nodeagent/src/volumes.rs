//! Pod volumes, prepared on the node under `<root>/pods/<uid>/volumes/<name>` and bind-mounted
//! into containers: `emptyDir`, `hostPath` (with its type checks), and the file-backed ones —
//! `configMap`, `secret`, `downwardAPI` and `projected` (ConfigMaps, Secrets, downward API
//! and bound service-account tokens). File-backed volumes are written again on every sync,
//! so a changed ConfigMap or Secret shows in running containers (files are replaced by
//! rename, so a reader never sees half a file).
//!
//! `emptyDir` with `medium: Memory` is a tmpfs the runtime makes (a Docker volume), shared by
//! the pod's containers. Volume types that need a storage driver (persistentVolumeClaim,
//! csi, nfs, …) are refused.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{Container, KeyToPath, Pod, ServiceAccount, Volume};
use kube::api::{Api, PostParams};
use serde_json::json;

use crate::pod_env::{ConfigError, Sources, field_value, resource_value};
use crate::runtime::Mount;

/// Where a pod's volumes live on the node.
pub fn pod_dir(root: &Path, uid: &str) -> PathBuf {
    root.join("pods").join(uid)
}

struct File {
    path: String,
    bytes: Vec<u8>,
    mode: Option<i32>,
}

fn select(
    data: &BTreeMap<String, Vec<u8>>,
    items: &Option<Vec<KeyToPath>>,
    optional: bool,
    what: &str,
) -> Result<Vec<File>, ConfigError> {
    match items {
        None => Ok(data
            .iter()
            .map(|(k, v)| File {
                path: k.clone(),
                bytes: v.clone(),
                mode: None,
            })
            .collect()),
        Some(items) => {
            let mut out = Vec::new();
            for item in items {
                match data.get(&item.key) {
                    Some(v) => out.push(File {
                        path: item.path.clone(),
                        bytes: v.clone(),
                        mode: item.mode,
                    }),
                    None if optional => {}
                    None => {
                        return Err(ConfigError(format!(
                            "configmap references non-existent config key: {} ({what})",
                            item.key
                        )));
                    }
                }
            }
            Ok(out)
        }
    }
}

/// Writes `files` into `dir` (replacing each by rename) and removes files no longer there.
fn write_files(dir: &Path, files: &[File], default_mode: i32) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut wanted: Vec<PathBuf> = Vec::new();
    for f in files {
        let relative = Path::new(&f.path);
        if relative.is_absolute()
            || relative
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            continue;
        }
        let target = dir.join(relative);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mode = (f.mode.unwrap_or(default_mode) & 0o777) as u32;
        let same = std::fs::read(&target).is_ok_and(|old| old == f.bytes)
            && std::fs::metadata(&target).is_ok_and(|m| m.permissions().mode() & 0o777 == mode);
        if !same {
            let temp = target.with_file_name(format!(
                ".{}.tmp",
                target
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or("file")
            ));
            std::fs::write(&temp, &f.bytes)?;
            std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(mode))?;
            std::fs::rename(&temp, &target)?;
        }
        wanted.push(target);
    }
    remove_unwanted(dir, &wanted)
}

fn remove_unwanted(dir: &Path, wanted: &[PathBuf]) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            remove_unwanted(&path, wanted)?;
            if std::fs::read_dir(&path)?.next().is_none()
                && !wanted.iter().any(|w| w.starts_with(&path))
            {
                std::fs::remove_dir(&path)?;
            }
        } else if !wanted.contains(&path) {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

/// What prepares a pod's volumes.
pub struct VolumeContext<'a> {
    pub client: &'a kube::Client,
    pub root: &'a Path,
    pub pod_ip: &'a str,
    pub host_ip: IpAddr,
    /// The runtime's memory-backed volumes of the pod's `emptyDir` volumes with
    /// `medium: Memory`, by volume name.
    pub memory: &'a HashMap<String, String>,
}

/// The pod's `emptyDir` volumes with `medium: Memory`: name and size limit in bytes.
pub fn memory_volumes(pod: &Pod) -> Vec<(String, Option<u64>)> {
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| {
            let e = v.empty_dir.as_ref()?;
            (e.medium.as_deref() == Some("Memory")).then(|| {
                let limit = e
                    .size_limit
                    .as_ref()
                    .map(|q| (scheduler::resources::milli(q) / 1000).max(0) as u64);
                (v.name.clone(), limit)
            })
        })
        .collect()
}

async fn downward_files(
    pod: &Pod,
    items: &[k8s_openapi::api::core::v1::DownwardAPIVolumeFile],
    ctx: &VolumeContext<'_>,
) -> Result<Vec<File>, ConfigError> {
    let mut out = Vec::new();
    for item in items {
        let value = if let Some(f) = &item.field_ref {
            field_value(pod, f, ctx.pod_ip, ctx.host_ip)?
        } else if let Some(r) = &item.resource_field_ref {
            let spec = pod.spec.clone().unwrap_or_default();
            let name = r.container_name.clone().unwrap_or_default();
            let Some(c) = spec.containers.iter().find(|c| c.name == name) else {
                return Err(ConfigError(format!(
                    "downwardAPI: no container {name:?} for {}",
                    r.resource
                )));
            };
            resource_value(c, &r.resource, r.divisor.as_ref().map(|d| d.0.as_str()))?
        } else {
            continue;
        };
        out.push(File {
            path: item.path.clone(),
            bytes: value.into_bytes(),
            mode: item.mode,
        });
    }
    Ok(out)
}

async fn token_file(
    pod: &Pod,
    source: &k8s_openapi::api::core::v1::ServiceAccountTokenProjection,
    ctx: &VolumeContext<'_>,
) -> Result<File, ConfigError> {
    let meta = &pod.metadata;
    let namespace = meta.namespace.clone().unwrap_or_default();
    let account = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .unwrap_or_else(|| "default".into());
    let api: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), &namespace);
    let request: TokenRequest = serde_json::from_value(json!({
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
        "spec": {
            "audiences": source.audience.iter().collect::<Vec<_>>(),
            "expirationSeconds": source.expiration_seconds.unwrap_or(3607),
            "boundObjectRef": {"apiVersion": "v1", "kind": "Pod",
                "name": meta.name, "uid": meta.uid}
        }
    }))
    .map_err(|e| ConfigError(e.to_string()))?;
    let body = serde_json::to_vec(&request).map_err(|e| ConfigError(e.to_string()))?;
    let issued: TokenRequest = api
        .create_subresource("token", &account, &PostParams::default(), &body)
        .await
        .map_err(|e| {
            ConfigError(format!(
                "requesting a token for service account {account:?}: {e}"
            ))
        })?;
    Ok(File {
        path: source.path.clone(),
        bytes: issued
            .status
            .map(|s| s.token)
            .unwrap_or_default()
            .into_bytes(),
        mode: None,
    })
}

/// Makes every volume of `pod` ready on the node; returns each volume's host path.
pub async fn prepare(
    pod: &Pod,
    ctx: &VolumeContext<'_>,
) -> Result<HashMap<String, PathBuf>, ConfigError> {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let base = pod_dir(ctx.root, &uid).join("volumes");
    let mut sources = Sources::new(ctx.client.clone(), &namespace);
    let mut out = HashMap::new();
    let io = |e: std::io::Error| ConfigError(format!("preparing volumes: {e}"));
    let volumes: Vec<Volume> = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.clone())
        .unwrap_or_default();
    for v in volumes {
        let dir = base.join(&v.name);
        if let Some(source) = ctx.memory.get(&v.name) {
            out.insert(v.name.clone(), PathBuf::from(source));
            continue;
        }
        if v.empty_dir.is_some() {
            std::fs::create_dir_all(&dir).map_err(io)?;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).map_err(io)?;
        } else if let Some(h) = &v.host_path {
            let path = PathBuf::from(&h.path);
            let kind = h.type_.as_deref().unwrap_or("");
            let check = |ok: bool, what: &str| {
                if ok {
                    Ok(())
                } else {
                    Err(ConfigError(format!(
                        "hostPath type check failed: {} is not a {what}",
                        h.path
                    )))
                }
            };
            match kind {
                "DirectoryOrCreate" => std::fs::create_dir_all(&path).map_err(io)?,
                "FileOrCreate" if !path.exists() => {
                    if let Some(parent) = path.parent() {
                        std::fs::create_dir_all(parent).map_err(io)?;
                    }
                    std::fs::write(&path, b"").map_err(io)?;
                }
                "Directory" => check(path.is_dir(), "directory")?,
                "File" => check(path.is_file(), "file")?,
                "Socket" | "CharDevice" | "BlockDevice" => {
                    check(path.exists(), &kind.to_lowercase())?
                }
                _ => {}
            }
            out.insert(v.name.clone(), path);
            continue;
        } else if let Some(cm) = &v.config_map {
            let optional = cm.optional == Some(true);
            let files = match sources.config_map_bytes(&cm.name).await? {
                Some(data) => select(&data, &cm.items, optional, &cm.name)?,
                None if optional => Vec::new(),
                None => return Err(ConfigError(format!("configmap \"{}\" not found", cm.name))),
            };
            write_files(&dir, &files, cm.default_mode.unwrap_or(0o644)).map_err(io)?;
        } else if let Some(s) = &v.secret {
            let name = s.secret_name.clone().unwrap_or_default();
            let optional = s.optional == Some(true);
            let files = match sources.secret_bytes(&name).await? {
                Some(data) => select(&data, &s.items, optional, &name)?,
                None if optional => Vec::new(),
                None => return Err(ConfigError(format!("secret \"{name}\" not found"))),
            };
            write_files(&dir, &files, s.default_mode.unwrap_or(0o644)).map_err(io)?;
        } else if let Some(d) = &v.downward_api {
            let files = downward_files(pod, d.items.as_deref().unwrap_or(&[]), ctx).await?;
            write_files(&dir, &files, d.default_mode.unwrap_or(0o644)).map_err(io)?;
        } else if let Some(p) = &v.projected {
            let mut files = Vec::new();
            for source in p.sources.iter().flatten() {
                if let Some(cm) = &source.config_map {
                    let optional = cm.optional == Some(true);
                    match sources.config_map_bytes(&cm.name).await? {
                        Some(data) => files.extend(select(&data, &cm.items, optional, &cm.name)?),
                        None if optional => {}
                        None => {
                            return Err(ConfigError(format!(
                                "configmap \"{}\" not found",
                                cm.name
                            )));
                        }
                    }
                }
                if let Some(s) = &source.secret {
                    let optional = s.optional == Some(true);
                    match sources.secret_bytes(&s.name).await? {
                        Some(data) => files.extend(select(&data, &s.items, optional, &s.name)?),
                        None if optional => {}
                        None => {
                            return Err(ConfigError(format!("secret \"{}\" not found", s.name)));
                        }
                    }
                }
                if let Some(d) = &source.downward_api {
                    files
                        .extend(downward_files(pod, d.items.as_deref().unwrap_or(&[]), ctx).await?);
                }
                if let Some(t) = &source.service_account_token {
                    files.push(token_file(pod, t, ctx).await?);
                }
            }
            write_files(&dir, &files, p.default_mode.unwrap_or(0o644)).map_err(io)?;
        } else {
            return Err(ConfigError(format!(
                "volume {:?}: this node supports emptyDir, hostPath, configMap, secret, downwardAPI and projected volumes only",
                v.name
            )));
        }
        out.insert(v.name.clone(), dir);
    }
    Ok(out)
}

/// The bind mounts of `container` from its `volumeMounts`.
pub fn mounts(
    container: &Container,
    prepared: &HashMap<String, PathBuf>,
) -> Result<Vec<Mount>, ConfigError> {
    let mut out = Vec::new();
    for m in container.volume_mounts.iter().flatten() {
        let Some(host) = prepared.get(&m.name) else {
            return Err(ConfigError(format!(
                "cannot find volume {:?} to mount into container {:?}",
                m.name, container.name
            )));
        };
        let mut host = host.clone();
        if let Some(sub) = m.sub_path.as_deref().filter(|s| !s.is_empty()) {
            if !host.is_absolute() {
                return Err(ConfigError(format!(
                    "subPath {sub:?} of the memory-backed volume {:?} is not supported on this node",
                    m.name
                )));
            }
            if Path::new(sub)
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
            {
                return Err(ConfigError(format!(
                    "subPath {sub:?} must be a relative path without '..'"
                )));
            }
            host = host.join(sub);
            if !host.exists() {
                std::fs::create_dir_all(&host)
                    .map_err(|e| ConfigError(format!("preparing subPath {sub:?}: {e}")))?;
            }
        }
        out.push(Mount {
            host_path: host.to_string_lossy().into_owned(),
            container_path: m.mount_path.clone(),
            read_only: m.read_only.unwrap_or(false),
        });
    }
    Ok(out)
}

/// Removes what the node kept for a pod that is gone.
pub fn clean_up(root: &Path, uid: &str) {
    let dir = pod_dir(root, uid);
    if dir.exists()
        && let Err(e) = std::fs::remove_dir_all(&dir)
    {
        tracing::warn!(uid, error = %e, "removing a pod's volumes failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_written_replaced_and_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let file = |p: &str, b: &str| File {
            path: p.into(),
            bytes: b.as_bytes().to_vec(),
            mode: None,
        };
        write_files(dir.path(), &[file("a", "1"), file("sub/b", "2")], 0o644).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("sub/b")).unwrap(),
            "2"
        );
        write_files(
            dir.path(),
            &[file("a", "changed"), file("../escape", "x")],
            0o600,
        )
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("a")).unwrap(),
            "changed"
        );
        assert!(!dir.path().join("sub").exists());
        assert!(!dir.path().parent().unwrap().join("escape").exists());
        let mode = std::fs::metadata(dir.path().join("a"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
    }
}

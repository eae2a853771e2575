//! A container's environment, as the kubelet makes it: the Service variables of its
//! namespace (`<NAME>_SERVICE_HOST` …, `enableServiceLinks`), then `envFrom` (ConfigMaps and Secrets,
//! with prefixes), then `env` in order, with `valueFrom` (the downward API's `fieldRef` and
//! `resourceFieldRef`, `configMapKeyRef`, `secretKeyRef`) and `$(VAR)` references to what
//! came before; and the command and args expanded the same way.
//!
//! A missing source that is not optional is a `CreateContainerConfigError`, with the
//! kubelet's message.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{ConfigMap, Container, ObjectFieldSelector, Pod, Secret, Service};
use kube::api::Api;
use scheduler::resources::milli;

/// Why a container cannot be configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

/// Expands `$(NAME)` from `env`; `$$` is a literal `$`, and unknown references stay as written.
pub fn expand(text: &str, env: &HashMap<String, String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(inner) = after.strip_prefix('(')
            && let Some(end) = inner.find(')')
        {
            let name = &inner[..end];
            match env.get(name) {
                Some(v) => out.push_str(v),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// A downward-API field of the pod.
pub fn field_value(
    pod: &Pod,
    field: &ObjectFieldSelector,
    pod_ip: &str,
    host_ip: IpAddr,
) -> Result<String, ConfigError> {
    let meta = &pod.metadata;
    let spec = pod.spec.clone().unwrap_or_default();
    let path = field.field_path.as_str();
    let keyed = |prefix: &str, map: &Option<BTreeMap<String, String>>| -> Option<String> {
        let key = path
            .strip_prefix(prefix)?
            .strip_prefix("['")?
            .strip_suffix("']")?;
        Some(
            map.as_ref()
                .and_then(|m| m.get(key))
                .cloned()
                .unwrap_or_default(),
        )
    };
    let map_text = |map: &Option<BTreeMap<String, String>>| -> String {
        map.iter()
            .flatten()
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    Ok(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => map_text(&meta.labels),
        "metadata.annotations" => map_text(&meta.annotations),
        "spec.nodeName" => spec.node_name.clone().unwrap_or_default(),
        "spec.serviceAccountName" => spec.service_account_name.clone().unwrap_or_default(),
        "status.hostIP" | "status.hostIPs" => host_ip.to_string(),
        "status.podIP" | "status.podIPs" => pod_ip.to_owned(),
        _ => {
            if let Some(v) = keyed("metadata.labels", &meta.labels) {
                v
            } else if let Some(v) = keyed("metadata.annotations", &meta.annotations) {
                v
            } else {
                return Err(ConfigError(format!("unsupported fieldPath: {path}")));
            }
        }
    })
}

/// A resource of the container (`limits.cpu`, `requests.memory`, …) in `divisor` units.
pub fn resource_value(
    container: &Container,
    resource: &str,
    divisor: Option<&str>,
) -> Result<String, ConfigError> {
    let res = container.resources.clone().unwrap_or_default();
    let (which, name) = resource
        .split_once('.')
        .ok_or_else(|| ConfigError(format!("unsupported resource: {resource}")))?;
    let from = match which {
        "limits" => res.limits,
        "requests" => res.requests,
        _ => return Err(ConfigError(format!("unsupported resource: {resource}"))),
    };
    let value = from.as_ref().and_then(|m| m.get(name)).map(milli);
    let divisor = divisor
        .map(|d| {
            milli(&k8s_openapi::apimachinery::pkg::api::resource::Quantity(
                d.into(),
            ))
        })
        .filter(|d| *d > 0)
        .unwrap_or(1000);
    // Unset limits report the node's capacity upstream; unset requests report 0.
    let value = value.unwrap_or(0);
    Ok(((value + divisor - 1) / divisor).to_string())
}

fn decoded(secret: &Secret) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), String::from_utf8_lossy(&v.0).into_owned()))
        .collect();
    for (k, v) in secret.string_data.iter().flatten() {
        out.insert(k.clone(), v.clone());
    }
    out
}

/// Reads ConfigMaps and Secrets of one namespace, each once per resolution.
pub struct Sources {
    client: kube::Client,
    namespace: String,
    config_maps: HashMap<String, Option<BTreeMap<String, String>>>,
    secrets: HashMap<String, Option<BTreeMap<String, String>>>,
}

impl Sources {
    pub fn new(client: kube::Client, namespace: &str) -> Sources {
        Sources {
            client,
            namespace: namespace.to_owned(),
            config_maps: HashMap::new(),
            secrets: HashMap::new(),
        }
    }

    /// A ConfigMap's data (binary data as lossy text), or `None` when it does not exist.
    pub async fn config_map(
        &mut self,
        name: &str,
    ) -> Result<Option<BTreeMap<String, String>>, ConfigError> {
        if let Some(found) = self.config_maps.get(name) {
            return Ok(found.clone());
        }
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.namespace);
        let found = api
            .get_opt(name)
            .await
            .map_err(|e| ConfigError(format!("reading configmap {name:?}: {e}")))?
            .map(|cm| {
                let mut data = cm.data.unwrap_or_default();
                for (k, v) in cm.binary_data.unwrap_or_default() {
                    data.insert(k, String::from_utf8_lossy(&v.0).into_owned());
                }
                data
            });
        self.config_maps.insert(name.to_owned(), found.clone());
        Ok(found)
    }

    /// Like [`Sources::config_map`], with the raw bytes (binary data kept as it is).
    pub async fn config_map_bytes(
        &mut self,
        name: &str,
    ) -> Result<Option<BTreeMap<String, Vec<u8>>>, ConfigError> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.namespace);
        let found = api
            .get_opt(name)
            .await
            .map_err(|e| ConfigError(format!("reading configmap {name:?}: {e}")))?;
        Ok(found.map(|cm| {
            let mut data: BTreeMap<String, Vec<u8>> = cm
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.into_bytes()))
                .collect();
            for (k, v) in cm.binary_data.unwrap_or_default() {
                data.insert(k, v.0);
            }
            data
        }))
    }

    /// A Secret's data as raw bytes, or `None` when it does not exist.
    pub async fn secret_bytes(
        &mut self,
        name: &str,
    ) -> Result<Option<BTreeMap<String, Vec<u8>>>, ConfigError> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        let found = api
            .get_opt(name)
            .await
            .map_err(|e| ConfigError(format!("reading secret {name:?}: {e}")))?;
        Ok(found.map(|s| {
            let mut data: BTreeMap<String, Vec<u8>> = s
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect();
            for (k, v) in s.string_data.unwrap_or_default() {
                data.insert(k, v.into_bytes());
            }
            data
        }))
    }

    pub async fn secret(
        &mut self,
        name: &str,
    ) -> Result<Option<BTreeMap<String, String>>, ConfigError> {
        if let Some(found) = self.secrets.get(name) {
            return Ok(found.clone());
        }
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        let found = api
            .get_opt(name)
            .await
            .map_err(|e| ConfigError(format!("reading secret {name:?}: {e}")))?
            .map(|s| decoded(&s));
        self.secrets.insert(name.to_owned(), found.clone());
        Ok(found)
    }
}

/// The variables that describe one Service (`<NAME>_SERVICE_HOST`, `<NAME>_SERVICE_PORT`,
/// and the Docker-link style `<NAME>_PORT…`), as the kubelet makes them.
pub fn service_vars(service: &Service) -> Vec<(String, String)> {
    let Some(spec) = service.spec.as_ref() else {
        return Vec::new();
    };
    let Some(ip) = spec
        .cluster_ip
        .as_deref()
        .filter(|ip| !ip.is_empty() && *ip != "None")
    else {
        return Vec::new();
    };
    let name = service
        .metadata
        .name
        .as_deref()
        .unwrap_or("")
        .to_uppercase()
        .replace('-', "_");
    let ports = spec.ports.clone().unwrap_or_default();
    let Some(first) = ports.first() else {
        return Vec::new();
    };
    let mut out = vec![
        (format!("{name}_SERVICE_HOST"), ip.to_owned()),
        (format!("{name}_SERVICE_PORT"), first.port.to_string()),
    ];
    for p in &ports {
        if let Some(port_name) = p.name.as_deref().filter(|n| !n.is_empty()) {
            out.push((
                format!(
                    "{name}_SERVICE_PORT_{}",
                    port_name.to_uppercase().replace('-', "_")
                ),
                p.port.to_string(),
            ));
        }
    }
    let protocol = |p: &k8s_openapi::api::core::v1::ServicePort| {
        p.protocol.clone().unwrap_or_else(|| "TCP".into())
    };
    out.push((
        format!("{name}_PORT"),
        format!("{}://{ip}:{}", protocol(first).to_lowercase(), first.port),
    ));
    for p in &ports {
        let proto = protocol(p);
        let prefix = format!("{name}_PORT_{}_{}", p.port, proto.to_uppercase());
        out.push((
            prefix.clone(),
            format!("{}://{ip}:{}", proto.to_lowercase(), p.port),
        ));
        out.push((format!("{prefix}_PROTO"), proto.to_lowercase()));
        out.push((format!("{prefix}_PORT"), p.port.to_string()));
        out.push((format!("{prefix}_ADDR"), ip.to_owned()));
    }
    out
}

/// The Service variables of a pod: those of its namespace's Services (unless
/// `enableServiceLinks` is false), and always the API server's `kubernetes` Service.
pub async fn service_env(client: &kube::Client, pod: &Pod) -> Vec<(String, String)> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let links = pod
        .spec
        .as_ref()
        .and_then(|s| s.enable_service_links)
        .unwrap_or(true);
    let mut services: Vec<Service> = Vec::new();
    if links {
        let api: Api<Service> = Api::namespaced(client.clone(), &namespace);
        if let Ok(list) = api.list(&kube::api::ListParams::default()).await {
            services.extend(list.items);
        }
    }
    if !links || namespace != "default" {
        let api: Api<Service> = Api::namespaced(client.clone(), "default");
        if let Ok(Some(master)) = api.get_opt("kubernetes").await {
            services.push(master);
        }
    }
    services.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    services.iter().flat_map(service_vars).collect()
}

/// The container's environment, in order: `base` (the Service variables) first, then what
/// the container asks for, which wins.
pub async fn container_env(
    sources: &mut Sources,
    pod: &Pod,
    container: &Container,
    pod_ip: &str,
    host_ip: IpAddr,
    base: &[(String, String)],
) -> Result<Vec<(String, String)>, ConfigError> {
    let mut ordered: Vec<(String, String)> = base.to_vec();
    let mut values: HashMap<String, String> = HashMap::new();
    let mut set = |k: String, v: String, ordered: &mut Vec<(String, String)>| {
        if let Some(slot) = ordered.iter_mut().find(|(name, _)| *name == k) {
            slot.1 = v.clone();
        } else {
            ordered.push((k.clone(), v.clone()));
        }
        values.insert(k, v);
    };
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(r) = &from.config_map_ref {
            match sources.config_map(&r.name).await? {
                Some(data) => {
                    for (k, v) in data {
                        set(format!("{prefix}{k}"), v, &mut ordered);
                    }
                }
                None if r.optional == Some(true) => {}
                None => return Err(ConfigError(format!("configmap \"{}\" not found", r.name))),
            }
        }
        if let Some(r) = &from.secret_ref {
            match sources.secret(&r.name).await? {
                Some(data) => {
                    for (k, v) in data {
                        set(format!("{prefix}{k}"), v, &mut ordered);
                    }
                }
                None if r.optional == Some(true) => {}
                None => return Err(ConfigError(format!("secret \"{}\" not found", r.name))),
            }
        }
    }
    for e in container.env.iter().flatten() {
        let snapshot: HashMap<String, String> = ordered.iter().cloned().collect();
        let value = if let Some(v) = &e.value {
            Some(expand(v, &snapshot))
        } else if let Some(from) = &e.value_from {
            if let Some(f) = &from.field_ref {
                Some(field_value(pod, f, pod_ip, host_ip)?)
            } else if let Some(r) = &from.resource_field_ref {
                let target = match r.container_name.as_deref() {
                    Some(name) if !name.is_empty() => pod
                        .spec
                        .iter()
                        .flat_map(|s| s.containers.iter())
                        .find(|c| c.name == name)
                        .unwrap_or(container),
                    _ => container,
                };
                Some(resource_value(
                    target,
                    &r.resource,
                    r.divisor.as_ref().map(|d| d.0.as_str()),
                )?)
            } else if let Some(r) = &from.config_map_key_ref {
                match sources.config_map(&r.name).await? {
                    Some(data) => match data.get(&r.key) {
                        Some(v) => Some(v.clone()),
                        None if r.optional == Some(true) => None,
                        None => {
                            return Err(ConfigError(format!(
                                "couldn't find key {} in ConfigMap {}/{}",
                                r.key, sources.namespace, r.name
                            )));
                        }
                    },
                    None if r.optional == Some(true) => None,
                    None => {
                        return Err(ConfigError(format!("configmap \"{}\" not found", r.name)));
                    }
                }
            } else if let Some(r) = &from.secret_key_ref {
                match sources.secret(&r.name).await? {
                    Some(data) => match data.get(&r.key) {
                        Some(v) => Some(v.clone()),
                        None if r.optional == Some(true) => None,
                        None => {
                            return Err(ConfigError(format!(
                                "couldn't find key {} in Secret {}/{}",
                                r.key, sources.namespace, r.name
                            )));
                        }
                    },
                    None if r.optional == Some(true) => None,
                    None => return Err(ConfigError(format!("secret \"{}\" not found", r.name))),
                }
            } else {
                None
            }
        } else {
            Some(String::new())
        };
        if let Some(v) = value {
            set(e.name.clone(), v, &mut ordered);
        }
    }
    Ok(ordered)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn services_become_variables() {
        let svc: Service = serde_json::from_value(json!({
            "metadata": {"name": "web-api"},
            "spec": {"clusterIP": "10.96.0.10", "ports": [
                {"name": "http", "port": 80, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]}
        }))
        .unwrap();
        let vars: HashMap<String, String> = service_vars(&svc).into_iter().collect();
        assert_eq!(vars["WEB_API_SERVICE_HOST"], "10.96.0.10");
        assert_eq!(vars["WEB_API_SERVICE_PORT"], "80");
        assert_eq!(vars["WEB_API_SERVICE_PORT_HTTP"], "80");
        assert_eq!(vars["WEB_API_PORT"], "tcp://10.96.0.10:80");
        assert_eq!(vars["WEB_API_PORT_53_UDP_PROTO"], "udp");
        assert_eq!(vars["WEB_API_PORT_53_UDP_ADDR"], "10.96.0.10");
        let headless: Service = serde_json::from_value(
            json!({"metadata": {"name": "h"}, "spec": {"clusterIP": "None", "ports": [{"port": 1}]}}),
        )
        .unwrap();
        assert!(service_vars(&headless).is_empty());
    }

    #[test]
    fn references_expand_from_earlier_variables() {
        let env = HashMap::from([("A".to_string(), "1".to_string())]);
        assert_eq!(expand("x$(A)y", &env), "x1y");
        assert_eq!(expand("$(B)", &env), "$(B)");
        assert_eq!(expand("$$(A)", &env), "$(A)");
        assert_eq!(expand("cost $5", &env), "cost $5");
        assert_eq!(expand("$(A", &env), "$(A");
    }

    #[test]
    fn downward_fields_and_resources_resolve() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u", "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c",
                "resources": {"limits": {"cpu": "1500m", "memory": "64Mi"}}}]}
        }))
        .unwrap();
        let field = |p: &str| ObjectFieldSelector {
            field_path: p.into(),
            ..ObjectFieldSelector::default()
        };
        let host: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(
            field_value(&pod, &field("metadata.name"), "", host).unwrap(),
            "p"
        );
        assert_eq!(
            field_value(&pod, &field("spec.nodeName"), "", host).unwrap(),
            "n1"
        );
        assert_eq!(
            field_value(&pod, &field("status.podIP"), "172.17.0.3", host).unwrap(),
            "172.17.0.3"
        );
        assert_eq!(
            field_value(&pod, &field("metadata.labels['app']"), "", host).unwrap(),
            "web"
        );
        assert!(field_value(&pod, &field("spec.bogus"), "", host).is_err());
        let c = &pod.spec.as_ref().unwrap().containers[0];
        assert_eq!(resource_value(c, "limits.cpu", None).unwrap(), "2");
        assert_eq!(resource_value(c, "limits.cpu", Some("1m")).unwrap(), "1500");
        assert_eq!(
            resource_value(c, "limits.memory", Some("1Mi")).unwrap(),
            "64"
        );
    }
}

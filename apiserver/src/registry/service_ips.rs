//! Service address allocation: ClusterIPs from `--service-cluster-ip-range` and NodePorts from
//! `--service-node-port-range`.
//!
//! An allocated ClusterIP is an `IPAddress` object (networking.k8s.io/v1) named after the IP
//! and pointing at its Service, as in Kubernetes 1.33; creating it is the atomic reservation,
//! so two Services can never hold one IP, whatever restarts or how many apiservers. NodePorts
//! are reserved the same way under storage keys of their own. `repair` reconciles both with
//! the Services on start.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;
use std::sync::Arc;

use apiserver_storage::{ListRequest, Storage, StorageError};
use bytes::Bytes;
use rand::Rng;
use serde_json::{Value, json};
use tracing::{info, warn};

use crate::endpoints::status_error::{ApiError, FieldError};
use crate::registry::generic_store::{GenericStore, ListOptions, WriteOptions};
use crate::registry::resource_table::{ResourceDef, lookup};

const NODE_PORT_PREFIX: &str = "/registry/ranges/nodeports/";

/// An IPv4 CIDR range such as `10.96.0.0/12`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    base: u32,
    prefix: u8,
}

impl std::str::FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (ip, prefix) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not a CIDR"))?;
        let ip: Ipv4Addr = ip
            .parse()
            .map_err(|_| format!("{s:?} is not an IPv4 CIDR"))?;
        let prefix: u8 = prefix
            .parse()
            .map_err(|_| format!("{s:?} has no valid prefix length"))?;
        if !(8..=30).contains(&prefix) {
            return Err(format!("{s:?}: the prefix length must be between 8 and 30"));
        }
        let mask = u32::MAX << (32 - prefix);
        Ok(Cidr {
            base: u32::from(ip) & mask,
            prefix,
        })
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.base), self.prefix)
    }
}

impl Cidr {
    fn size(&self) -> u32 {
        1u32 << (32 - self.prefix)
    }

    /// Usable addresses: not the network address, not the broadcast address.
    fn contains_usable(&self, ip: Ipv4Addr) -> bool {
        let ip = u32::from(ip);
        ip > self.base && ip < self.base + self.size() - 1
    }

    /// The first usable address: the `kubernetes` Service's.
    pub fn first(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base + 1)
    }

    fn nth(&self, offset: u32) -> Ipv4Addr {
        Ipv4Addr::from(self.base + 1 + offset % (self.size() - 2))
    }
}

/// Parses `30000-32767`.
pub fn parse_port_range(s: &str) -> Result<RangeInclusive<u16>, String> {
    let (a, b) = s
        .split_once('-')
        .ok_or_else(|| format!("{s:?} is not a port range like 30000-32767"))?;
    let (a, b): (u16, u16) = (
        a.trim().parse().map_err(|_| format!("bad port in {s:?}"))?,
        b.trim().parse().map_err(|_| format!("bad port in {s:?}"))?,
    );
    if a == 0 || a > b {
        return Err(format!("{s:?} is not a valid port range"));
    }
    Ok(a..=b)
}

/// Allocates and releases Service addresses.
pub struct ServiceAllocator {
    store: GenericStore,
    storage: Arc<dyn Storage>,
    pub cidr: Cidr,
    pub node_ports: RangeInclusive<u16>,
}

fn ipaddresses() -> &'static ResourceDef {
    lookup("networking.k8s.io", "v1", "ipaddresses").expect("ipaddresses are served")
}

fn invalid(field: &str, value: &Value, detail: &str, name: &str) -> ApiError {
    ApiError::invalid(
        "Service",
        "",
        name,
        &[FieldError::invalid(field, value, detail)],
    )
}

impl ServiceAllocator {
    pub fn new(
        store: GenericStore,
        storage: Arc<dyn Storage>,
        cidr: Cidr,
        node_ports: RangeInclusive<u16>,
    ) -> Self {
        ServiceAllocator {
            store,
            storage,
            cidr,
            node_ports,
        }
    }

    async fn reserve_ip(
        &self,
        ip: Ipv4Addr,
        namespace: &str,
        name: &str,
    ) -> Result<bool, ApiError> {
        let body = json!({
            "metadata": {"name": ip.to_string(), "labels": {
                "ipaddress.kubernetes.io/ip-family": "IPv4",
                "ipaddress.kubernetes.io/managed-by": "ipallocator.k8s.io",
            }},
            "spec": {"parentRef": {"group": "", "resource": "services", "namespace": namespace, "name": name}},
        });
        match self
            .store
            .create(ipaddresses(), None, body, &WriteOptions::default())
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn reserve_port(&self, port: u16, owner: &str) -> Result<bool, ApiError> {
        match self
            .storage
            .create(
                &format!("{NODE_PORT_PREFIX}{port}"),
                Bytes::from(owner.to_owned()),
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(StorageError::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(ApiError::from_storage(e, "services", "", owner)),
        }
    }

    /// Fills in `spec.clusterIP(s)`, IP families and node ports of a Service about to be
    /// created, reserving each. On error, everything reserved so far is released.
    pub async fn allocate(&self, namespace: &str, service: &mut Value) -> Result<(), ApiError> {
        let name = service["metadata"]["name"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        let ty = service["spec"]["type"]
            .as_str()
            .unwrap_or("ClusterIP")
            .to_owned();
        if ty == "ExternalName" {
            return Ok(());
        }
        let spec = &mut service["spec"];
        let requested = spec["clusterIP"]
            .as_str()
            .or_else(|| spec["clusterIPs"][0].as_str())
            .unwrap_or("")
            .to_owned();
        if requested != "None" {
            let ip = if requested.is_empty() {
                self.allocate_any_ip(namespace, &name).await?
            } else {
                let ip: Ipv4Addr = requested.parse().map_err(|_| {
                    invalid(
                        "spec.clusterIPs[0]",
                        &json!(requested),
                        "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                        &name,
                    )
                })?;
                if !self.cidr.contains_usable(ip) {
                    return Err(invalid(
                        "spec.clusterIPs",
                        &json!([requested]),
                        &format!(
                            "failed to allocate IP {requested}: the provided IP ({requested}) is not in the valid range. The range of valid IPs is {}",
                            self.cidr
                        ),
                        &name,
                    ));
                }
                if !self.reserve_ip(ip, namespace, &name).await? {
                    return Err(invalid(
                        "spec.clusterIPs",
                        &json!([requested]),
                        &format!(
                            "failed to allocate IP {requested}: provided IP is already allocated"
                        ),
                        &name,
                    ));
                }
                ip
            };
            spec["clusterIP"] = json!(ip.to_string());
            spec["clusterIPs"] = json!([ip.to_string()]);
        } else {
            spec["clusterIPs"] = json!(["None"]);
        }
        spec["ipFamilies"] = json!(["IPv4"]);
        spec["ipFamilyPolicy"] = json!("SingleStack");
        if ty == "NodePort" || ty == "LoadBalancer" {
            let owner = format!("{namespace}/{name}");
            let mut taken: Vec<u16> = Vec::new();
            let ports = spec["ports"]
                .as_array_mut()
                .map(std::mem::take)
                .unwrap_or_default();
            let mut out = Vec::with_capacity(ports.len());
            for (i, mut port) in ports.into_iter().enumerate() {
                let result = match port["nodePort"].as_u64().filter(|p| *p > 0) {
                    Some(p) => {
                        let p = p as u16;
                        if !self.node_ports.contains(&p) {
                            Err(invalid(
                                &format!("spec.ports[{i}].nodePort"),
                                &json!(p),
                                &format!(
                                    "provided port is not in the valid range. The range of valid ports is {}-{}",
                                    self.node_ports.start(),
                                    self.node_ports.end()
                                ),
                                &name,
                            ))
                        } else if taken.contains(&p) || !self.reserve_port(p, &owner).await? {
                            Err(invalid(
                                &format!("spec.ports[{i}].nodePort"),
                                &json!(p),
                                "provided port is already allocated",
                                &name,
                            ))
                        } else {
                            Ok(p)
                        }
                    }
                    None => self.allocate_any_port(&owner).await,
                };
                match result {
                    Ok(p) => {
                        taken.push(p);
                        port["nodePort"] = json!(p);
                        out.push(port);
                    }
                    Err(e) => {
                        self.release_ports(&taken).await;
                        if let Some(ip) = service["spec"]["clusterIP"]
                            .as_str()
                            .and_then(|s| s.parse().ok())
                        {
                            self.release_ip(ip).await;
                        }
                        return Err(e);
                    }
                }
            }
            spec["ports"] = json!(out);
        }
        Ok(())
    }

    async fn allocate_any_ip(&self, namespace: &str, name: &str) -> Result<Ipv4Addr, ApiError> {
        let usable = self.cidr.size() - 2;
        let start = rand::rng().random_range(0..usable);
        // The first address belongs to the `kubernetes` Service.
        for step in 0..usable.min(4096) {
            let ip = self.cidr.nth(start + step);
            if ip == self.cidr.first() {
                continue;
            }
            if self.reserve_ip(ip, namespace, name).await? {
                return Ok(ip);
            }
        }
        Err(ApiError::new(
            500,
            "InternalError",
            format!(
                "failed to allocate a serviceIP: range {} is full",
                self.cidr
            ),
        ))
    }

    async fn allocate_any_port(&self, owner: &str) -> Result<u16, ApiError> {
        let (lo, hi) = (
            *self.node_ports.start() as u32,
            *self.node_ports.end() as u32,
        );
        let span = hi - lo + 1;
        let start = rand::rng().random_range(0..span);
        for step in 0..span {
            let port = (lo + (start + step) % span) as u16;
            if self.reserve_port(port, owner).await? {
                return Ok(port);
            }
        }
        Err(ApiError::new(
            500,
            "InternalError",
            "failed to allocate a nodePort: range is full",
        ))
    }

    pub async fn release_ip(&self, ip: Ipv4Addr) {
        if let Err(e) = self
            .store
            .delete(ipaddresses(), None, &ip.to_string(), &json!({}), false)
            .await
            && e.code != 404
        {
            warn!(%ip, error = %e.message, "could not release a service IP");
        }
    }

    async fn release_ports(&self, ports: &[u16]) {
        for port in ports {
            if let Err(e) = self
                .storage
                .delete(&format!("{NODE_PORT_PREFIX}{port}"), None)
                .await
                && !matches!(e, StorageError::NotFound { .. })
            {
                warn!(port, error = %e, "could not release a node port");
            }
        }
    }

    /// Releases what a deleted Service held.
    pub async fn release(&self, service: &Value) {
        if let Some(ip) = service["spec"]["clusterIP"]
            .as_str()
            .and_then(|s| s.parse::<Ipv4Addr>().ok())
        {
            self.release_ip(ip).await;
        }
        self.release_ports(&node_ports_of(service)).await;
    }

    /// After an update, makes the Service's addresses match what it now is: NodePorts for the
    /// ports of a NodePort/LoadBalancer Service that have none, its other reservations
    /// released, its ClusterIP released when it became ExternalName. Returns the Service with
    /// the fields to write back, if any changed.
    pub async fn reconcile_update(
        &self,
        namespace: &str,
        service: &Value,
    ) -> Result<Option<Value>, ApiError> {
        let name = service["metadata"]["name"].as_str().unwrap_or("");
        let owner = format!("{namespace}/{name}");
        let ty = service["spec"]["type"].as_str().unwrap_or("ClusterIP");
        let mut updated = service.clone();
        let mut changed = false;
        if matches!(ty, "NodePort" | "LoadBalancer") {
            let ports = updated["spec"]["ports"]
                .as_array_mut()
                .map(std::mem::take)
                .unwrap_or_default();
            let mut out = Vec::with_capacity(ports.len());
            for mut port in ports {
                if port["nodePort"].as_u64().is_none_or(|p| p == 0) {
                    port["nodePort"] = json!(self.allocate_any_port(&owner).await?);
                    changed = true;
                } else if let Some(p) = port["nodePort"].as_u64() {
                    // A port set by the update is reserved, or refused if someone else holds it.
                    let key = format!("{NODE_PORT_PREFIX}{p}");
                    let holder = self
                        .storage
                        .get(&key)
                        .await
                        .map_err(|e| ApiError::from_storage(e, "services", "", name))?;
                    match holder {
                        Some(kv) if kv.value.as_ref() != owner.as_bytes() => {
                            return Err(invalid(
                                "spec.ports[].nodePort",
                                &json!(p),
                                "provided port is already allocated",
                                name,
                            ));
                        }
                        Some(_) => {}
                        None => {
                            self.reserve_port(p as u16, &owner).await?;
                        }
                    }
                }
                out.push(port);
            }
            updated["spec"]["ports"] = json!(out);
        } else {
            let mut stripped = false;
            for port in updated["spec"]["ports"]
                .as_array_mut()
                .into_iter()
                .flatten()
            {
                if let Some(map) = port.as_object_mut()
                    && map.remove("nodePort").is_some()
                {
                    stripped = true;
                }
            }
            changed |= stripped;
        }
        // Release reservations this Service holds but no longer lists.
        let keep = node_ports_of(&updated);
        let reserved = self
            .storage
            .list(ListRequest {
                prefix: NODE_PORT_PREFIX.into(),
                ..Default::default()
            })
            .await
            .map_err(|e| ApiError::from_storage(e, "services", "", name))?;
        let stale: Vec<u16> = reserved
            .items
            .iter()
            .filter(|kv| kv.value.as_ref() == owner.as_bytes())
            .filter_map(|kv| kv.key.trim_start_matches(NODE_PORT_PREFIX).parse().ok())
            .filter(|p| !keep.contains(p))
            .collect();
        self.release_ports(&stale).await;
        let has_ip = updated["spec"]["clusterIP"]
            .as_str()
            .is_some_and(|ip| !ip.is_empty());
        if ty != "ExternalName" && !has_ip {
            // Coming back from ExternalName: a ClusterIP again.
            let ip = self.allocate_any_ip(namespace, name).await?;
            updated["spec"]["clusterIP"] = json!(ip.to_string());
            updated["spec"]["clusterIPs"] = json!([ip.to_string()]);
            changed = true;
        }
        if ty == "ExternalName"
            && let Some(ip) = updated["spec"]["clusterIP"]
                .as_str()
                .and_then(|s| s.parse::<Ipv4Addr>().ok())
        {
            self.release_ip(ip).await;
            let spec = updated["spec"].as_object_mut().expect("spec is an object");
            spec.remove("clusterIP");
            spec.remove("clusterIPs");
            changed = true;
        }
        Ok(changed.then_some(updated))
    }

    /// Reconciles reservations with the Services that exist: frees what no Service holds and
    /// reserves what a Service holds without a reservation.
    pub async fn repair(&self, services: &'static ResourceDef) -> Result<(), ApiError> {
        let all = self
            .store
            .list(services, None, &ListOptions::default())
            .await?
            .items;
        let mut held_ips = HashSet::new();
        let mut held_ports = HashSet::new();
        for svc in &all {
            let (ns, name) = (
                svc["metadata"]["namespace"].as_str().unwrap_or(""),
                svc["metadata"]["name"].as_str().unwrap_or(""),
            );
            if let Some(ip) = svc["spec"]["clusterIP"]
                .as_str()
                .and_then(|s| s.parse::<Ipv4Addr>().ok())
            {
                held_ips.insert(ip.to_string());
                if self.cidr.contains_usable(ip) && self.reserve_ip(ip, ns, name).await? {
                    info!(%ip, service = %format!("{ns}/{name}"), "repaired a missing IP reservation");
                }
            }
            for port in node_ports_of(svc) {
                held_ports.insert(port);
                self.reserve_port(port, &format!("{ns}/{name}")).await?;
            }
        }
        let ips = self
            .store
            .list(ipaddresses(), None, &ListOptions::default())
            .await?
            .items;
        for ip in ips {
            let name = ip["metadata"]["name"].as_str().unwrap_or("");
            let managed = ip["metadata"]["labels"]["ipaddress.kubernetes.io/managed-by"]
                == "ipallocator.k8s.io";
            if managed
                && !held_ips.contains(name)
                && let Ok(addr) = name.parse()
            {
                info!(ip = name, "released an IP no Service holds");
                self.release_ip(addr).await;
            }
        }
        let reserved = self
            .storage
            .list(ListRequest {
                prefix: NODE_PORT_PREFIX.into(),
                ..Default::default()
            })
            .await
            .map_err(|e| ApiError::from_storage(e, "services", "", ""))?;
        let orphans: Vec<u16> = reserved
            .items
            .iter()
            .filter_map(|kv| kv.key.trim_start_matches(NODE_PORT_PREFIX).parse().ok())
            .filter(|p| !held_ports.contains(p))
            .collect();
        self.release_ports(&orphans).await;
        Ok(())
    }
}

fn node_ports_of(service: &Value) -> Vec<u16> {
    service["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["nodePort"].as_u64())
        .filter(|p| *p > 0)
        .map(|p| p as u16)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_parse_and_bound_their_addresses() {
        let cidr: Cidr = "10.96.0.0/12".parse().unwrap();
        assert_eq!(cidr.first(), Ipv4Addr::new(10, 96, 0, 1));
        assert!(cidr.contains_usable("10.111.255.254".parse().unwrap()));
        assert!(!cidr.contains_usable("10.112.0.1".parse().unwrap()));
        assert!(!cidr.contains_usable("10.96.0.0".parse().unwrap()));
        assert!("10.96.0.0".parse::<Cidr>().is_err());
        assert_eq!(parse_port_range("30000-32767").unwrap(), 30000..=32767);
        assert!(parse_port_range("5-1").is_err());
    }
}

//! The Summary API (`GET /stats/summary`, the kubelet's `stats/v1alpha1` shape, as far as
//! metrics consumers read it): the node's CPU and memory from `/proc`, and each running
//! pod's containers from the runtime. The API server's `metrics.k8s.io` (and so
//! `kubectl top`) is served from it.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ListParams};
use serde::Serialize;

use crate::runtime::{ContainerRuntime, InstanceState};

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CpuStats {
    pub time: Time,
    pub usage_nano_cores: u64,
    pub usage_core_nano_seconds: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MemoryStats {
    pub time: Time,
    pub working_set_bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_bytes: Option<u64>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NodeStats {
    pub node_name: String,
    pub start_time: Time,
    pub cpu: CpuStats,
    pub memory: MemoryStats,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodReference {
    pub name: String,
    pub namespace: String,
    pub uid: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStats {
    pub name: String,
    pub start_time: Time,
    pub cpu: CpuStats,
    pub memory: MemoryStats,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodStats {
    pub pod_ref: PodReference,
    pub start_time: Time,
    pub containers: Vec<ContainerStats>,
    pub cpu: CpuStats,
    pub memory: MemoryStats,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub node: NodeStats,
    pub pods: Vec<PodStats>,
}

/// The host's busy and total CPU time (USER_HZ ticks) from `/proc/stat`.
fn cpu_ticks() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let total: u64 = fields.iter().take(8).sum();
    // idle and iowait are not busy.
    let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
    Some((total.saturating_sub(idle), total))
}

/// (MemTotal, MemAvailable) in bytes from `/proc/meminfo`.
fn memory() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let total = crate::host::mem_total_kib(&text).unwrap_or(0) * 1024;
    (total, crate::host::mem_available(&text).unwrap_or(0))
}

/// The node's CPU rate, measured between successive summaries.
pub struct NodeCpu {
    last: Mutex<Option<(Instant, u64, u64)>>,
    cpus: u64,
    started: Timestamp,
}

impl Default for NodeCpu {
    fn default() -> Self {
        NodeCpu {
            last: Mutex::new(None),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get() as u64),
            started: Timestamp::now(),
        }
    }
}

impl NodeCpu {
    /// (nano-cores now, busy core-nanoseconds since boot).
    async fn sample(&self) -> (u64, u64) {
        const TICK_NS: u64 = 10_000_000; // USER_HZ is 100 on Linux.
        let previous = *self.last.lock().unwrap_or_else(|e| e.into_inner());
        let previous = match previous {
            Some(p) if p.0.elapsed() < Duration::from_secs(60) => p,
            _ => {
                let (busy, total) = cpu_ticks().unwrap_or((0, 0));
                tokio::time::sleep(Duration::from_millis(250)).await;
                (Instant::now(), busy, total)
            }
        };
        let (busy, total) = cpu_ticks().unwrap_or((0, 0));
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), busy, total));
        let d_busy = busy.saturating_sub(previous.1) as f64;
        let d_total = total.saturating_sub(previous.2) as f64;
        let nano_cores = if d_total > 0.0 {
            (d_busy / d_total * self.cpus as f64 * 1e9) as u64
        } else {
            0
        };
        (nano_cores, busy * TICK_NS)
    }
}

fn cpu_stats(now: Timestamp, nano: u64, total: u64) -> CpuStats {
    CpuStats {
        time: Time(now),
        usage_nano_cores: nano,
        usage_core_nano_seconds: total,
    }
}

fn memory_stats(now: Timestamp, working: u64) -> MemoryStats {
    MemoryStats {
        time: Time(now),
        working_set_bytes: working,
        available_bytes: None,
        usage_bytes: None,
    }
}

/// The summary of `node` now.
pub async fn summary<R: ContainerRuntime>(
    runtime: &R,
    client: &kube::Client,
    node: &str,
    cpu: &NodeCpu,
) -> anyhow::Result<Summary> {
    let (nano, total) = cpu.sample().await;
    let (mem_total, mem_available) = memory();
    let now = Timestamp::now();
    let api: Api<Pod> = Api::all(client.clone());
    let pods = api
        .list(&ListParams::default().fields(&format!("spec.nodeName={node}")))
        .await?;
    let mut stats = Vec::new();
    let mut work = Vec::new();
    for pod in &pods.items {
        let Some(uid) = pod.metadata.uid.clone() else {
            continue;
        };
        let running: Vec<_> = runtime
            .containers(&uid)
            .await
            .unwrap_or_default()
            .into_iter()
            .filter_map(|i| match i.state {
                InstanceState::Running { started_at } => Some((i.name, i.id, started_at)),
                _ => None,
            })
            .collect();
        if running.is_empty() {
            continue;
        }
        work.push((pod, uid, running));
    }
    // Every container's sample at once (each takes Docker about a second).
    let samples = futures::future::join_all(work.iter().map(|(_, _, running)| {
        futures::future::join_all(running.iter().map(|(_, id, _)| runtime.usage(id)))
    }))
    .await;
    for ((pod, uid, running), usages) in work.into_iter().zip(samples) {
        let mut containers = Vec::new();
        for ((name, _, started), usage) in running.into_iter().zip(usages) {
            let Ok(u) = usage else { continue };
            containers.push(ContainerStats {
                name,
                start_time: Time(started),
                cpu: cpu_stats(now, u.cpu_nano_cores, u.cpu_core_nano_seconds),
                memory: memory_stats(now, u.memory_working_set_bytes),
            });
        }
        let sum = |f: fn(&ContainerStats) -> u64| containers.iter().map(f).sum::<u64>();
        let pod_cpu = cpu_stats(
            now,
            sum(|c| c.cpu.usage_nano_cores),
            sum(|c| c.cpu.usage_core_nano_seconds),
        );
        let pod_memory = memory_stats(now, sum(|c| c.memory.working_set_bytes));
        stats.push(PodStats {
            pod_ref: PodReference {
                name: pod.metadata.name.clone().unwrap_or_default(),
                namespace: pod.metadata.namespace.clone().unwrap_or_default(),
                uid,
            },
            start_time: pod
                .status
                .as_ref()
                .and_then(|s| s.start_time.clone())
                .unwrap_or(Time(now)),
            containers,
            cpu: pod_cpu,
            memory: pod_memory,
        });
    }
    Ok(Summary {
        node: NodeStats {
            node_name: node.to_owned(),
            start_time: Time(cpu.started),
            cpu: cpu_stats(now, nano, total),
            memory: MemoryStats {
                time: Time(now),
                working_set_bytes: mem_total.saturating_sub(mem_available),
                available_bytes: Some(mem_available),
                usage_bytes: Some(mem_total.saturating_sub(mem_available)),
            },
        },
        pods: stats,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_reports_cpu_and_memory() {
        let (busy, total) = cpu_ticks().expect("/proc/stat");
        assert!(total >= busy && total > 0);
        let (mem_total, available) = memory();
        assert!(mem_total > 0 && available <= mem_total);
    }
}

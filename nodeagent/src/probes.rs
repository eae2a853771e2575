//! Container probes: a task per running container instance that has probes. The startup
//! probe runs first; once it succeeds (or when there is none) the liveness and readiness
//! probes run, each on its own period with its thresholds. Results are kept per instance:
//! readiness feeds the container's `ready`, and a liveness or startup failure marks the
//! instance unhealthy so its worker stops it (and the restart policy restarts it).
//!
//! Handlers: `exec` (in the container), `httpGet` and `tcpSocket` (into the pod's network
//! namespace), and `grpc` (the standard health service, over h2c).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{Container, Pod, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::sync::broadcast;

use crate::pod_sync::Node;
use crate::runtime::{ContainerInstance, ContainerRuntime, InstanceState, Sandbox};

#[derive(Debug, Clone, Default)]
struct Results {
    uid: String,
    ready: bool,
    unhealthy: bool,
}

struct Tracked {
    results: Results,
    task: tokio::task::JoinHandle<()>,
}

/// The probes of one node.
#[derive(Clone)]
pub struct Prober {
    tracked: Arc<Mutex<HashMap<String, Tracked>>>,
    changes: broadcast::Sender<String>,
}

impl Default for Prober {
    fn default() -> Self {
        Self::new()
    }
}

fn has_probes(c: &Container) -> bool {
    c.liveness_probe.is_some() || c.readiness_probe.is_some() || c.startup_probe.is_some()
}

impl Prober {
    pub fn new() -> Prober {
        let (changes, _) = broadcast::channel(1024);
        Prober {
            tracked: Arc::new(Mutex::new(HashMap::new())),
            changes,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Tracked>> {
        self.tracked.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Pod uids whose probe results changed.
    pub fn subscribe(&self) -> broadcast::Receiver<String> {
        self.changes.subscribe()
    }

    /// The pod's instances whose liveness or startup probe failed.
    pub fn unhealthy(&self, uid: &str) -> HashSet<String> {
        self.lock()
            .iter()
            .filter(|(_, t)| t.results.uid == uid && t.results.unhealthy)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Readiness of the pod's probed instances.
    pub fn readiness(&self, uid: &str) -> HashMap<String, bool> {
        self.lock()
            .iter()
            .filter(|(_, t)| t.results.uid == uid)
            .map(|(id, t)| (id.clone(), t.results.ready))
            .collect()
    }

    /// Stops probing an instance.
    pub fn forget(&self, id: &str) {
        if let Some(t) = self.lock().remove(id) {
            t.task.abort();
        }
    }

    /// Stops probing a pod.
    pub fn forget_pod(&self, uid: &str) {
        self.lock().retain(|_, t| {
            let keep = t.results.uid != uid;
            if !keep {
                t.task.abort();
            }
            keep
        });
    }

    /// Probes the pod's running instances that have probes, and no others.
    pub fn track<R: ContainerRuntime>(
        &self,
        node: &Node<R>,
        pod: &Pod,
        sandbox: &Sandbox,
        instances: &[ContainerInstance],
    ) {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let spec = pod.spec.clone().unwrap_or_default();
        let running: HashMap<&str, &ContainerInstance> = instances
            .iter()
            .filter(|i| matches!(i.state, InstanceState::Running { .. }))
            .map(|i| (i.id.as_str(), i))
            .collect();
        let mut tracked = self.lock();
        tracked.retain(|id, t| {
            let keep = t.results.uid != uid || running.contains_key(id.as_str());
            if !keep {
                t.task.abort();
            }
            keep
        });
        for (id, instance) in running {
            if tracked.contains_key(id) {
                continue;
            }
            let Some(c) = spec
                .containers
                .iter()
                .chain(
                    spec.init_containers
                        .iter()
                        .flatten()
                        .filter(|c| crate::pod_actions::is_sidecar(c)),
                )
                .find(|c| c.name == instance.name)
            else {
                continue;
            };
            if !has_probes(c) {
                continue;
            }
            let task = tokio::spawn(probe_instance(
                self.clone(),
                node.runtime.clone(),
                id.to_owned(),
                c.clone(),
                sandbox.clone(),
            ));
            tracked.insert(
                id.to_owned(),
                Tracked {
                    results: Results {
                        uid: uid.clone(),
                        ready: false,
                        unhealthy: false,
                    },
                    task,
                },
            );
        }
    }

    fn set(&self, id: &str, f: impl FnOnce(&mut Results)) {
        let uid = {
            let mut tracked = self.lock();
            let Some(t) = tracked.get_mut(id) else {
                return;
            };
            let before = (t.results.ready, t.results.unhealthy);
            f(&mut t.results);
            if before == (t.results.ready, t.results.unhealthy) {
                return;
            }
            t.results.uid.clone()
        };
        let _ = self.changes.send(uid);
    }
}

/// Counts consecutive outcomes of one probe against its thresholds.
struct Counter {
    successes: i32,
    failures: i32,
    success_threshold: i32,
    failure_threshold: i32,
}

impl Counter {
    fn new(p: &Probe) -> Counter {
        Counter {
            successes: 0,
            failures: 0,
            success_threshold: p.success_threshold.unwrap_or(1).max(1),
            failure_threshold: p.failure_threshold.unwrap_or(3).max(1),
        }
    }

    /// Some(true) once passed, Some(false) once failed, None while undecided.
    fn observe(&mut self, ok: bool) -> Option<bool> {
        if ok {
            self.successes += 1;
            self.failures = 0;
            (self.successes >= self.success_threshold).then_some(true)
        } else {
            self.failures += 1;
            self.successes = 0;
            (self.failures >= self.failure_threshold).then_some(false)
        }
    }
}

fn period(p: &Probe) -> Duration {
    Duration::from_secs(p.period_seconds.unwrap_or(10).max(1) as u64)
}

async fn probe_instance<R: ContainerRuntime>(
    prober: Prober,
    runtime: Arc<R>,
    id: String,
    c: Container,
    sandbox: Sandbox,
) {
    let ports = c.ports.clone().unwrap_or_default();
    let run = |p: Probe| {
        let runtime = runtime.clone();
        let (id, sandbox, ports) = (id.clone(), sandbox.clone(), ports.clone());
        async move { run_probe(runtime.as_ref(), &id, &sandbox, &ports, &p).await }
    };
    if let Some(startup) = c.startup_probe.clone() {
        tokio::time::sleep(Duration::from_secs(
            startup.initial_delay_seconds.unwrap_or(0).max(0) as u64,
        ))
        .await;
        let mut counter = Counter::new(&startup);
        counter.success_threshold = 1;
        loop {
            match counter.observe(run(startup.clone()).await) {
                Some(true) => break,
                Some(false) => {
                    prober.set(&id, |r| r.unhealthy = true);
                    return;
                }
                None => tokio::time::sleep(period(&startup)).await,
            }
        }
    }
    let liveness = c.liveness_probe.clone().map(|p| {
        let prober = prober.clone();
        let id = id.clone();
        async move {
            tokio::time::sleep(Duration::from_secs(
                p.initial_delay_seconds.unwrap_or(0).max(0) as u64,
            ))
            .await;
            let mut counter = Counter::new(&p);
            counter.success_threshold = 1;
            loop {
                if counter.observe(run(p.clone()).await) == Some(false) {
                    prober.set(&id, |r| r.unhealthy = true);
                    return;
                }
                tokio::time::sleep(period(&p)).await;
            }
        }
    });
    let readiness = c.readiness_probe.clone().map(|p| {
        let prober = prober.clone();
        let id = id.clone();
        async move {
            tokio::time::sleep(Duration::from_secs(
                p.initial_delay_seconds.unwrap_or(0).max(0) as u64,
            ))
            .await;
            let mut counter = Counter::new(&p);
            loop {
                if let Some(ready) = counter.observe(run(p.clone()).await) {
                    prober.set(&id, |r| r.ready = ready);
                }
                tokio::time::sleep(period(&p)).await;
            }
        }
    });
    if readiness.is_none() {
        // No readiness probe: ready once started.
        prober.set(&id, |r| r.ready = true);
    }
    let liveness = async move {
        match liveness {
            Some(f) => f.await,
            None => futures::future::pending().await,
        }
    };
    let readiness = async move {
        match readiness {
            Some(f) => f.await,
            None => futures::future::pending().await,
        }
    };
    tokio::join!(liveness, readiness);
}

fn port_of(
    port: &IntOrString,
    c_ports: &[k8s_openapi::api::core::v1::ContainerPort],
) -> Option<u16> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n).ok(),
        IntOrString::String(name) => c_ports
            .iter()
            .find(|p| p.name.as_deref() == Some(name))
            .and_then(|p| u16::try_from(p.container_port).ok())
            .or_else(|| name.parse().ok()),
    }
}

/// Runs one probe once: true when it passed within its timeout.
pub async fn run_probe<R: ContainerRuntime>(
    runtime: &R,
    id: &str,
    sandbox: &Sandbox,
    ports: &[k8s_openapi::api::core::v1::ContainerPort],
    p: &Probe,
) -> bool {
    let timeout = Duration::from_secs(p.timeout_seconds.unwrap_or(1).max(1) as u64);
    let attempt = async {
        if let Some(exec) = &p.exec {
            let command = exec.command.clone().unwrap_or_default();
            let Ok(session) = runtime.exec(id, &command, false, false).await else {
                return false;
            };
            // Drain the output so the process is not blocked on a full pipe.
            let mut out = session.stdout;
            let drain_err = async {
                if let Some(mut err) = session.stderr {
                    while err.next().await.is_some() {}
                }
            };
            let drain_out = async { while out.next().await.is_some() {} };
            tokio::join!(drain_out, drain_err);
            matches!(session.exit.await, Ok(Some(0)))
        } else if let Some(http) = &p.http_get {
            let Some(port) = port_of(&http.port, ports) else {
                return false;
            };
            let Ok(conn) = runtime.connect(sandbox, port).await else {
                return false;
            };
            let Ok((mut sender, connection)) =
                hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(conn)).await
            else {
                return false;
            };
            tokio::spawn(connection);
            let path = http.path.clone().unwrap_or_else(|| "/".into());
            let mut req = http::Request::builder()
                .uri(if path.starts_with('/') {
                    path
                } else {
                    format!("/{path}")
                })
                .header(http::header::HOST, format!("{}:{port}", sandbox.ip))
                .header(http::header::USER_AGENT, "kube-probe/1.33");
            for h in http.http_headers.iter().flatten() {
                req = req.header(h.name.as_str(), h.value.as_str());
            }
            let Ok(req) = req.body(Full::new(Bytes::new())) else {
                return false;
            };
            match sender.send_request(req).await {
                Ok(resp) => {
                    let ok = (200..400).contains(&resp.status().as_u16());
                    let _ = resp.into_body().collect().await;
                    ok
                }
                Err(_) => false,
            }
        } else if let Some(tcp) = &p.tcp_socket {
            match port_of(&tcp.port, ports) {
                Some(port) => runtime.connect(sandbox, port).await.is_ok(),
                None => false,
            }
        } else if let Some(grpc) = &p.grpc {
            grpc_health(runtime, sandbox, grpc).await
        } else {
            false
        }
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .unwrap_or(false)
}

/// `grpc.health.v1.Health/Check` over h2c: SERVING passes.
async fn grpc_health<R: ContainerRuntime>(
    runtime: &R,
    sandbox: &Sandbox,
    grpc: &k8s_openapi::api::core::v1::GRPCAction,
) -> bool {
    let Ok(port) = u16::try_from(grpc.port) else {
        return false;
    };
    let Ok(conn) = runtime.connect(sandbox, port).await else {
        return false;
    };
    let Ok((mut sender, connection)) = hyper::client::conn::http2::handshake::<_, _, Full<Bytes>>(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(conn),
    )
    .await
    else {
        return false;
    };
    tokio::spawn(connection);
    // HealthCheckRequest { service = 1 }, framed: no compression, 4-byte length.
    let service = grpc.service.clone().unwrap_or_default();
    let mut message = Vec::new();
    if !service.is_empty() {
        message.push(0x0a);
        message.push(service.len() as u8);
        message.extend_from_slice(service.as_bytes());
    }
    let mut body = vec![0u8];
    body.extend_from_slice(&(message.len() as u32).to_be_bytes());
    body.extend_from_slice(&message);
    let Ok(req) = http::Request::builder()
        .method("POST")
        .uri(format!(
            "http://{}:{port}/grpc.health.v1.Health/Check",
            sandbox.ip
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(Bytes::from(body)))
    else {
        return false;
    };
    let Ok(resp) = sender.send_request(req).await else {
        return false;
    };
    let Ok(collected) = resp.into_body().collect().await else {
        return false;
    };
    let grpc_ok = collected
        .trailers()
        .and_then(|t| t.get("grpc-status"))
        .is_none_or(|s| s == "0");
    let bytes = collected.to_bytes();
    // HealthCheckResponse { status = 1 (SERVING) } is the field bytes 08 01.
    grpc_ok && bytes.len() >= 7 && bytes[5..7] == [0x08, 0x01]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_need_consecutive_outcomes() {
        let p = Probe {
            failure_threshold: Some(3),
            success_threshold: Some(2),
            ..Probe::default()
        };
        let mut c = Counter::new(&p);
        assert_eq!(c.observe(false), None);
        assert_eq!(c.observe(false), None);
        assert_eq!(c.observe(true), None);
        assert_eq!(c.observe(true), Some(true));
        assert_eq!(c.observe(false), None);
        assert_eq!(c.observe(false), None);
        assert_eq!(c.observe(false), Some(false));
    }
}

//! Container lifecycle hooks: `postStart` right after a container starts (a failure stops
//! the container, and the restart policy decides what comes next), and `preStop` before a
//! container is stopped, within the pod's grace period. Handlers run as probes do (`exec`
//! in the container, `httpGet` and `tcpSocket` into the pod's network), plus `sleep`.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, LifecycleHandler, Probe};

use crate::probes::run_probe;
use crate::runtime::{ContainerRuntime, Sandbox};

/// Which hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    PostStart,
    PreStop,
}

/// The container's handler for `hook`, if it has one.
pub fn handler(container: &Container, hook: Hook) -> Option<&LifecycleHandler> {
    let lifecycle = container.lifecycle.as_ref()?;
    match hook {
        Hook::PostStart => lifecycle.post_start.as_ref(),
        Hook::PreStop => lifecycle.pre_stop.as_ref(),
    }
}

/// Runs a handler against the instance `id`, for at most `limit`. True when it succeeded.
pub async fn run<R: ContainerRuntime>(
    runtime: &R,
    id: &str,
    sandbox: &Sandbox,
    container: &Container,
    handler: &LifecycleHandler,
    limit: Duration,
) -> bool {
    if let Some(sleep) = &handler.sleep {
        let wanted = Duration::from_secs(sleep.seconds.max(0) as u64);
        tokio::time::sleep(wanted.min(limit)).await;
        return true;
    }
    let as_probe = Probe {
        exec: handler.exec.clone(),
        http_get: handler.http_get.clone(),
        tcp_socket: handler.tcp_socket.clone(),
        timeout_seconds: Some(limit.as_secs().clamp(1, i32::MAX as u64) as i32),
        ..Probe::default()
    };
    let ports = container.ports.clone().unwrap_or_default();
    run_probe(runtime, id, sandbox, &ports, &as_probe).await
}

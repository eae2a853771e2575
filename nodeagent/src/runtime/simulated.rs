//! The simulated runtime: sandboxes and containers exist only as state in this process, so
//! one machine can host many nodes. Each sandbox gets its own address from the node's range.
//! A container runs from its start until it is stopped, except that a command which only
//! exits (`true`, `false`, `exit N`, `sh -c "exit N"`) ends at once with that code, so
//! restart policies and back-off behave as they do on a real runtime. There are no
//! processes: logs are empty, and exec and port-forward are refused.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use tokio::sync::broadcast;

use super::{
    ByteStream, ContainerInstance, ContainerRuntime, ExecSession, ImageError, ImageRef,
    InstanceState, Launch, LogOptions, PodConnection, RegistryAuth, Sandbox, Usage,
};

#[derive(Default)]
struct PodState {
    sandbox: Option<Sandbox>,
    containers: Vec<ContainerInstance>,
}

pub struct SimulatedRuntime {
    /// The first three octets of the pod addresses (`10.88.0` gives 10.88.0.2 …).
    prefix: String,
    pods: Mutex<HashMap<String, PodState>>,
    next_host: Mutex<u32>,
    next_id: Mutex<u64>,
    changes: broadcast::Sender<String>,
}

/// The exit code of a command that does nothing but exit.
fn exit_code_of(words: &[String]) -> Option<i32> {
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["true"] | ["/bin/true"] => Some(0),
        ["false"] | ["/bin/false"] => Some(1),
        ["exit", n] => n.parse().ok(),
        [.., "-c", script] => script.trim().strip_prefix("exit ")?.trim().parse().ok(),
        _ => None,
    }
}

impl SimulatedRuntime {
    pub fn new(prefix: &str) -> SimulatedRuntime {
        let (changes, _) = broadcast::channel(1024);
        SimulatedRuntime {
            prefix: prefix.to_owned(),
            pods: Mutex::new(HashMap::new()),
            next_host: Mutex::new(2),
            next_id: Mutex::new(1),
            changes,
        }
    }

    fn allocate_ip(&self) -> String {
        let mut next = self.next_host.lock().unwrap_or_else(|e| e.into_inner());
        let host = *next;
        // .2 to .254, then around again (a simulated node holds at most 110 pods).
        *next = if host >= 254 { 2 } else { host + 1 };
        format!("{}.{host}", self.prefix)
    }

    fn pods(&self) -> std::sync::MutexGuard<'_, HashMap<String, PodState>> {
        self.pods.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn with_instance<T>(
        &self,
        id: &str,
        f: impl FnOnce(&mut ContainerInstance) -> T,
    ) -> Option<(String, T)> {
        let mut pods = self.pods();
        let (uid, instance) = pods.iter_mut().find_map(|(uid, state)| {
            state
                .containers
                .iter_mut()
                .find(|c| c.id == id)
                .map(|c| (uid.clone(), c))
        })?;
        Some((uid, f(instance)))
    }
}

impl ContainerRuntime for SimulatedRuntime {
    fn version(&self) -> String {
        format!("simulated://{}", env!("CARGO_PKG_VERSION"))
    }

    async fn ensure_image(
        &self,
        image: &str,
        _policy: &str,
        _auth: &[RegistryAuth],
    ) -> Result<ImageRef, ImageError> {
        Ok(ImageRef {
            reference: image.to_owned(),
            image_id: format!("simulated://{image}"),
            pulled: false,
        })
    }

    async fn sandbox(&self, uid: &str) -> Result<Option<Sandbox>> {
        Ok(self.pods().get(uid).and_then(|p| p.sandbox.clone()))
    }

    async fn create_sandbox(&self, pod: &Pod, attempt: u32) -> Result<Sandbox> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let sandbox = Sandbox {
            id: format!("simulated://{uid}-sandbox-{attempt}"),
            ip: self.allocate_ip(),
            created_at: Timestamp::now(),
            running: true,
            attempt,
        };
        self.pods().entry(uid).or_default().sandbox = Some(sandbox.clone());
        Ok(sandbox)
    }

    async fn containers(&self, uid: &str) -> Result<Vec<ContainerInstance>> {
        Ok(self
            .pods()
            .get(uid)
            .map(|p| p.containers.clone())
            .unwrap_or_default())
    }

    async fn start_container(&self, sandbox: &Sandbox, launch: Launch<'_>) -> Result<String> {
        let uid = launch.pod.metadata.uid.clone().unwrap_or_default();
        let now = Timestamp::now();
        let words: Vec<String> = launch
            .command
            .iter()
            .flatten()
            .chain(launch.args.iter().flatten())
            .cloned()
            .collect();
        let state = match exit_code_of(&words) {
            Some(code) => InstanceState::Exited {
                exit_code: code,
                reason: if code == 0 { "Completed" } else { "Error" }.into(),
                message: None,
                started_at: now,
                finished_at: now,
            },
            None => InstanceState::Running { started_at: now },
        };
        let exited = matches!(state, InstanceState::Exited { .. });
        let id = {
            let mut next = self.next_id.lock().unwrap_or_else(|e| e.into_inner());
            *next += 1;
            format!("simulated://{:016x}", *next)
        };
        self.pods()
            .entry(uid.clone())
            .or_default()
            .containers
            .push(ContainerInstance {
                id: id.clone(),
                name: launch.container.name.clone(),
                attempt: launch.attempt,
                sandbox_attempt: sandbox.attempt,
                image: launch.image_ref.clone(),
                image_id: format!("simulated://{}", launch.image_ref),
                spec_hash: launch.spec_hash.clone(),
                state,
            });
        if exited {
            let _ = self.changes.send(uid);
        }
        Ok(id)
    }

    async fn stop_container(&self, id: &str, _grace: Duration) -> Result<()> {
        let now = Timestamp::now();
        let stopped = self.with_instance(id, |c| {
            if let InstanceState::Running { started_at } = c.state {
                c.state = InstanceState::Exited {
                    exit_code: 143,
                    reason: "Error".into(),
                    message: None,
                    started_at,
                    finished_at: now,
                };
                true
            } else {
                false
            }
        });
        if let Some((uid, true)) = stopped {
            let _ = self.changes.send(uid);
        }
        Ok(())
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        for state in self.pods().values_mut() {
            state.containers.retain(|c| c.id != id);
        }
        Ok(())
    }

    async fn kill_pod(&self, uid: &str, _grace: Duration) -> Result<()> {
        self.pods().remove(uid);
        Ok(())
    }

    async fn pod_uids(&self) -> Result<Vec<String>> {
        let mut uids: Vec<String> = self.pods().keys().cloned().collect();
        uids.sort();
        Ok(uids)
    }

    fn changes(&self) -> broadcast::Receiver<String> {
        self.changes.subscribe()
    }

    async fn logs(&self, id: &str, _options: &LogOptions) -> Result<ByteStream> {
        if self.with_instance(id, |_| ()).is_none() {
            bail!("no container {id}");
        }
        Ok(Box::pin(futures::stream::empty()))
    }

    async fn exec(
        &self,
        _id: &str,
        _command: &[String],
        _tty: bool,
        _stdin: bool,
    ) -> Result<ExecSession> {
        Err(anyhow!("the simulated runtime runs no processes"))
    }

    async fn memory_volume(&self, uid: &str, name: &str, _size: Option<u64>) -> Result<String> {
        // Nothing is mounted anywhere: the name is all there is.
        Ok(format!("simulated-{uid}-{name}"))
    }

    async fn usage(&self, id: &str) -> Result<Usage> {
        // Simulated containers use nothing.
        match self.with_instance(id, |_| ()) {
            Some(_) => Ok(Usage::default()),
            None => bail!("no container {id}"),
        }
    }

    async fn connect(&self, _sandbox: &Sandbox, _port: u16) -> Result<Box<dyn PodConnection>> {
        Err(anyhow!("the simulated runtime has no network"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_that_only_exit_end_with_their_code() {
        let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(exit_code_of(&words(&["sh", "-c", "exit 3"])), Some(3));
        assert_eq!(exit_code_of(&words(&["false"])), Some(1));
        assert_eq!(exit_code_of(&words(&["true"])), Some(0));
        assert_eq!(exit_code_of(&words(&["sleep", "3600"])), None);
        assert_eq!(exit_code_of(&[]), None);
    }
}

//! The node agent (the kubelet's role): an API client with its own node identity that
//! registers its Node and keeps its Lease (`heartbeat`, from the facts in `host` shaped by
//! `node_status`), and runs the pods bound to it through a container runtime.
//!
//! Running pods: `pod_sync` gives each pod a worker that carries out what `pod_actions`
//! decides (sandbox, init and app containers, restarts with back-off), with environments from
//! `pod_env`, volumes from `volumes`, health from `probes` and hooks from `lifecycle`, and reports `pod_status`.
//! Runtimes (`runtime`): Docker through bollard, and a simulated one for scale tests.
//! `streaming` serves logs, exec, attach and port-forward to the apiserver; `static_pods`
//! runs pods from manifest files, with mirror pods in the API; `stats` is the Summary API.

pub mod heartbeat;
pub mod host;
pub mod lifecycle;
pub mod node_status;
pub mod pod_actions;
pub mod pod_env;
pub mod pod_status;
pub mod pod_sync;
pub mod probes;
pub mod runtime;
pub mod static_pods;
pub mod stats;
pub mod streaming;
pub mod volumes;

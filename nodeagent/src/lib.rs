//! The node agent (the kubelet's role): an API client with its own node identity that
//! registers its Node and keeps its Lease (`heartbeat`, from the facts in `host` shaped by
//! `node_status`), and runs the pods bound to it through a container runtime (`pod_sync` on a
//! `runtime`).
//!
//! Runtimes: `simulated` (state only, for scale tests). The Docker runtime, the streaming
//! server (logs, exec, attach, port-forward), volumes, probes, graceful termination and static
//! pods are not built yet.

pub mod heartbeat;
pub mod host;
pub mod node_status;
pub mod pod_sync;
pub mod runtime;

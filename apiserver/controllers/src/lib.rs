//! Controllers (Deployment, ReplicaSet, GC, Namespace, …) as kube-rs API clients. Filled in by the controllers issue.

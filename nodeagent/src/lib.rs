//! The node agent (kubelet role). Filled in by the node agent issue.

//! A Kubernetes API server: REST and watch over TLS (HTTP/1.1 and h2), client-certificate
//! authentication, discovery, OpenAPI v3, Table output and one generic store for every
//! resource, on the revisioned storage of `apiserver-storage`.
//!
//! Request flow: `serve` (TLS, h1/h2, panic guard) → `authn` (client certificate, or a
//! service-account token checked by `service_account_tokens`) →
//! `endpoints` (routing, negotiation, decoding) → `registry::generic_store` (strategies,
//! `admission` plugins, validation, optimistic concurrency) → storage.

pub mod admission;
pub mod authn;
pub mod catalog;
pub mod components;
pub mod config;
pub mod endpoints;
pub mod in_process;
pub mod kubelet_client;
pub mod metrics;
pub mod registry;
pub mod request_info;
pub mod serve;
pub mod service_account_tokens;
pub mod version;

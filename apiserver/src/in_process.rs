//! In-process API clients: a `kube::Client` whose requests go straight into the endpoint
//! handler under a fixed identity, through the same routing, validation and storage as
//! requests over TLS. The embedded controller manager and scheduler use it.

use std::convert::Infallible;
use std::sync::Arc;

use http::Request;

use crate::authn::UserInfo;
use crate::endpoints::ApiServer;

/// A client acting as `user`.
pub fn client(server: Arc<ApiServer>, user: UserInfo) -> kube::Client {
    let service = tower::service_fn(move |req: Request<kube::client::Body>| {
        let server = server.clone();
        let user = user.clone();
        async move { Ok::<_, Infallible>(crate::serve::respond(server, req, Some(user)).await) }
    });
    kube::Client::new(service, "default")
}

/// The identity of an in-process component (`system:kube-controller-manager`, …).
pub fn component_user(name: &str) -> UserInfo {
    UserInfo {
        name: name.to_owned(),
        groups: vec!["system:authenticated".to_owned()],
    }
}

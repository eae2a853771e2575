//! The HTTP endpoints: routing of non-resource paths (version, health, discovery, OpenAPI)
//! and of resource requests to the verbs (get, list, watch, create, update, patch, delete,
//! deletecollection) and subresources (status, scale, binding). Every error leaves through
//! `status_error` as a Status.

pub mod discovery;
pub mod metrics_api;
pub mod negotiation;
pub mod openapi;
pub mod openapi_v2;
pub mod patch;
pub mod pod_streams;
pub mod protobuf;
pub mod protobuf_response;
pub mod proxy;
pub mod representation;
pub mod status_error;
pub mod strict_json;
pub mod tokens;
pub mod watch;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use serde_json::{Value, json};

use crate::authn::UserInfo;
use crate::registry::generic_store::{
    FieldValidation, GenericStore, ListOptions, Ownership, UpdateScope, WriteOptions, Written,
    parse_resource_version,
};
use crate::registry::printers;
use crate::registry::resource_table::{self, ResourceDef, Subresource};
use crate::registry::selectors::{FieldSelector, LabelSelector};
use crate::request_info::{Query, RequestInfo};
use negotiation::{BodyFormat, DiscoveryFormat};
use representation::IncludeObject;
use status_error::ApiError;

/// The response body type of every endpoint.
pub type Body = BoxBody<Bytes, Infallible>;

/// Largest request body accepted (the real server's default, 3 MiB).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// Shared state of the endpoints.
pub struct ApiServer {
    pub store: GenericStore,
    /// ClusterIP and NodePort allocation for Services.
    pub service_ips: crate::registry::service_ips::ServiceAllocator,
    pub openapi: openapi::OpenApiDocs,
    /// Watches without `timeoutSeconds` end after this long (kubectl `get -w` exits then).
    pub default_watch_timeout: Duration,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Signs and checks service-account tokens.
    pub tokens: crate::service_account_tokens::TokenSigner,
    /// Reaches nodes' streaming servers for logs, exec, attach and port-forward.
    pub kubelet: crate::kubelet_client::KubeletClient,
}

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

fn json_response(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Body> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(content_type).unwrap_or(HeaderValue::from_static("application/json")),
    );
    resp
}

fn json_value(status: StatusCode, value: &Value) -> Response<Body> {
    json_response(
        status,
        "application/json",
        serde_json::to_vec(value).expect("JSON serializes"),
    )
}

/// The Status response of an error.
pub fn error_response(err: &ApiError) -> Response<Body> {
    let mut resp = json_value(err.status_code(), &err.to_status_json());
    if let Some(secs) = err.retry_after {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

fn text_response(status: StatusCode, text: String) -> Response<Body> {
    let mut resp = Response::new(full(text));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp.headers_mut().insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    resp
}

fn with_warnings(mut resp: Response<Body>, warnings: &[String]) -> Response<Body> {
    for w in warnings {
        let text = format!("299 - {:?}", w);
        if let Ok(v) = HeaderValue::from_str(&text) {
            resp.headers_mut().append(header::WARNING, v);
        }
    }
    resp
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Serves one request from an authenticated (or not) caller.
pub async fn handle<B>(
    server: Arc<ApiServer>,
    req: Request<B>,
    user: Option<UserInfo>,
) -> Response<Body>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let user = match user {
        Some(user) => Some(user),
        None => match tokens::bearer_token(req.headers()) {
            Some(token) => tokens::token_user(&server, token).await,
            None => None,
        },
    };
    let Some(user) = user else {
        return error_response(&ApiError::unauthorized());
    };
    let gzip = accepts_gzip(req.headers());
    let info = RequestInfo::parse(
        req.method(),
        req.uri().path(),
        &Query::parse(req.uri().query()),
    );
    let resource = if info.is_resource {
        info.resource.as_str()
    } else {
        ""
    };
    let timer = server.metrics.start(&info.verb, resource);
    let resp = match route(&server, req, &user).await {
        Ok(resp) => resp,
        Err(err) => error_response(&err),
    };
    let elapsed = timer.finish(resp.status().as_u16());
    tracing::debug!(
        verb = %info.verb,
        resource = %info.resource,
        namespace = info.namespace.as_deref().unwrap_or(""),
        name = info.name.as_deref().unwrap_or(""),
        path = %info.path,
        user = %user.name,
        code = resp.status().as_u16(),
        latency_ms = elapsed.as_secs_f64() * 1000.0,
        "request"
    );
    if gzip { compress(resp).await } else { resp }
}

/// Complete responses at least this large are gzipped for clients that accept it (the real
/// server's threshold); streams are never buffered for it.
const GZIP_THRESHOLD: u64 = 128 * 1024;

fn accepts_gzip(headers: &HeaderMap) -> bool {
    header_str(headers, header::ACCEPT_ENCODING).is_some_and(|v| {
        v.split(',').any(|e| {
            e.split(';')
                .next()
                .is_some_and(|e| e.trim().eq_ignore_ascii_case("gzip"))
        })
    })
}

async fn compress(resp: Response<Body>) -> Response<Body> {
    use http_body::Body as _;
    let size = resp.body().size_hint();
    let complete = size.exact().is_some_and(|n| n >= GZIP_THRESHOLD);
    if !complete || resp.headers().contains_key(header::CONTENT_ENCODING) {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let bytes = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(never) => match never {},
    };
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(bytes.len() / 4),
        flate2::Compression::fast(),
    );
    let compressed = std::io::Write::write_all(&mut encoder, &bytes).and_then(|_| encoder.finish());
    match compressed {
        Ok(gz) => {
            parts
                .headers
                .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            parts.headers.remove(header::CONTENT_LENGTH);
            parts
                .headers
                .append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
            Response::from_parts(parts, full(gz))
        }
        Err(_) => Response::from_parts(parts, full(bytes)),
    }
}

async fn route<B>(
    server: &Arc<ApiServer>,
    req: Request<B>,
    user: &UserInfo,
) -> Result<Response<Body>, ApiError>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let path = req.uri().path().to_owned();
    let query = Query::parse(req.uri().query());
    let accept = header_str(req.headers(), header::ACCEPT).map(str::to_owned);
    let get = req.method() == Method::GET || req.method() == Method::HEAD;
    let trimmed = path.trim_end_matches('/');
    if get {
        match trimmed {
            "/version" => return Ok(json_value(StatusCode::OK, &crate::version::info())),
            "/healthz" | "/livez" | "/readyz" => return Ok(health(trimmed, &query)),
            "/metrics" => {
                let sizes = server
                    .store
                    .watch_cache()
                    .map(|c| c.sizes())
                    .unwrap_or_default();
                for (prefix, objects) in sizes {
                    let resource = prefix
                        .trim_start_matches("/registry/")
                        .trim_end_matches('/');
                    server.metrics.set_cache_objects(resource, objects);
                }
                let mut resp = text_response(StatusCode::OK, server.metrics.encode());
                resp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    ),
                );
                return Ok(resp);
            }
            "/api" => return Ok(discovery_response(accept.as_deref(), true)),
            "/apis" => return Ok(discovery_response(accept.as_deref(), false)),
            "/openapi/v3" => return Ok(json_value(StatusCode::OK, &server.openapi.index())),
            "/openapi/v2" | "/swagger-2.0.0.pb-v1" => {
                let wants_protobuf = trimmed != "/openapi/v2"
                    || accept
                        .as_deref()
                        .is_some_and(|a| a.contains(openapi_v2::PROTOBUF_MEDIA_TYPE));
                let doc = &*openapi_v2::DOCUMENT;
                return Ok(if wants_protobuf {
                    // Go's mime parser rejects the `@` of the requested type; the real
                    // server answers the protobuf as octet-stream.
                    json_response(
                        StatusCode::OK,
                        "application/octet-stream",
                        doc.protobuf.clone(),
                    )
                } else {
                    json_response(StatusCode::OK, "application/json", doc.json.clone())
                });
            }
            _ => {}
        }
        if let Some(rest) = trimmed.strip_prefix("/openapi/v3/") {
            return openapi_document(server, rest, &query);
        }
        if let Some(doc) = discovery_path(trimmed) {
            return Ok(json_value(StatusCode::OK, &doc));
        }
    }
    let info = RequestInfo::parse(req.method(), &path, &query);
    if !info.is_resource {
        return Err(ApiError::path_not_found());
    }
    let resource = resource_table::lookup(&info.group, &info.version, &info.resource)
        .ok_or_else(ApiError::path_not_found)?;
    if let Some(review) = resource.review {
        return review_request(server, resource, review, &info, user, req).await;
    }
    if let Some(kind) = resource.metrics {
        return metrics_api::serve(server, resource, kind, &info, &query).await;
    }
    resource_request(server, resource, info, query, req).await
}

/// A review: decoded, answered for the caller, never stored.
async fn review_request<B>(
    server: &ApiServer,
    r: &ResourceDef,
    review: crate::registry::reviews::Review,
    info: &RequestInfo,
    user: &UserInfo,
    req: Request<B>,
) -> Result<Response<Body>, ApiError>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if info.verb != "create" || info.name.is_some() {
        return Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({})",
            r.plural
        )));
    }
    let content_type = header_str(req.headers(), header::CONTENT_TYPE).map(str::to_owned);
    let format = negotiation::body_format(content_type.as_deref())?;
    let body = negotiation::decode_body(format, &read_body(req.into_body()).await?)?;
    let mut typed = (r.types.round_trip)(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding {}: {e}", r.kind)))?;
    typed["apiVersion"] = json!(r.api_version());
    typed["kind"] = json!(r.kind);
    if review == crate::registry::reviews::Review::Token {
        let answer = tokens::token_review(server, typed).await;
        return Ok(json_value(StatusCode::CREATED, &answer));
    }
    let answer = review.answer(user, typed, info.namespace.as_deref())?;
    Ok(json_value(StatusCode::CREATED, &answer))
}

fn discovery_path(path: &str) -> Option<Value> {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match parts.as_slice() {
        ["api", version] => discovery::api_resource_list("", version),
        ["apis", group] => discovery::api_group_doc(group),
        ["apis", group, version] => discovery::api_resource_list(group, version),
        _ => None,
    }
}

fn discovery_response(accept: Option<&str>, core: bool) -> Response<Body> {
    let mut resp = match negotiation::negotiate_discovery(accept) {
        DiscoveryFormat::Aggregated(version) => json_response(
            StatusCode::OK,
            &format!("application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList"),
            serde_json::to_vec(&discovery::aggregated(core, version)).expect("JSON serializes"),
        ),
        DiscoveryFormat::Legacy if core => json_value(StatusCode::OK, &discovery::api_versions()),
        DiscoveryFormat::Legacy => json_value(StatusCode::OK, &discovery::api_group_list()),
    };
    resp.headers_mut()
        .insert(header::VARY, HeaderValue::from_static("Accept"));
    resp
}

fn health(path: &str, query: &Query) -> Response<Body> {
    let name = path.trim_start_matches('/');
    if query.has("verbose") {
        let checks = ["ping", "log", "etcd", "poststarthook/start-apiserver"];
        let mut text: String = checks.iter().map(|c| format!("[+]{c} ok\n")).collect();
        text.push_str(&format!("{name} check passed\n"));
        text_response(StatusCode::OK, text)
    } else {
        text_response(StatusCode::OK, "ok".into())
    }
}

fn openapi_document(
    server: &ApiServer,
    path: &str,
    query: &Query,
) -> Result<Response<Body>, ApiError> {
    let (hash, bytes) = server
        .openapi
        .get(path)
        .ok_or_else(ApiError::path_not_found)?;
    let mut resp = json_response(StatusCode::OK, "application/json", bytes.to_vec());
    let headers = resp.headers_mut();
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{hash}\"")) {
        headers.insert(header::ETAG, etag);
    }
    let cache = if query.get("hash") == Some(hash) {
        "public, immutable"
    } else {
        "no-cache, private"
    };
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    Ok(resp)
}

/// Bytes of an oversized body still read (and dropped) before answering 413, so an HTTP/1.1
/// client that is still sending can read the answer instead of a reset connection.
const OVERSIZE_DRAIN_BYTES: usize = 64 * 1024 * 1024;
const OVERSIZE_DRAIN_TIME: Duration = Duration::from_secs(10);

/// Reads a request body, refusing more than [`MAX_BODY_BYTES`] with 413.
async fn read_body<B>(body: B) -> Result<Bytes, ApiError>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut body = std::pin::pin!(body);
    let mut collected = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            ApiError::bad_request(format!("error reading the request body: {}", e.into()))
        })?;
        if let Ok(data) = frame.into_data() {
            collected.extend_from_slice(&data);
            if collected.len() > MAX_BODY_BYTES {
                let mut drained = collected.len();
                let _ = tokio::time::timeout(OVERSIZE_DRAIN_TIME, async {
                    while drained < OVERSIZE_DRAIN_BYTES {
                        match body.frame().await {
                            Some(Ok(frame)) => {
                                drained += frame.data_ref().map(Bytes::len).unwrap_or(0)
                            }
                            _ => break,
                        }
                    }
                })
                .await;
                return Err(ApiError::too_large(MAX_BODY_BYTES));
            }
        }
    }
    Ok(collected.freeze())
}

/// `fieldManager`, or else the first part of the User-Agent, as the real server names
/// writers that do not say.
fn field_manager(
    query: &Query,
    headers: &HeaderMap,
    options_kind: &str,
) -> Result<String, ApiError> {
    let manager = match query.non_empty("fieldManager") {
        Some(m) => m.to_owned(),
        None => header_str(headers, header::USER_AGENT)
            .unwrap_or("")
            .split('/')
            .next()
            .unwrap_or("")
            .chars()
            .take(128)
            .collect(),
    };
    let problem = if manager.len() > 128 {
        Some(status_error::FieldError {
            reason: "FieldValueTooLong",
            field: "fieldManager".into(),
            detail: "Too long: may not be more than 128 bytes".into(),
        })
    } else if manager.chars().any(char::is_control) {
        Some(status_error::FieldError::invalid(
            "fieldManager",
            &json!(manager),
            "must only contain printable characters",
        ))
    } else {
        None
    };
    match problem {
        Some(e) => Err(ApiError::invalid(options_kind, "meta.k8s.io", "", &[e])),
        None => Ok(manager),
    }
}

/// The write options of a create, update or patch, with the writer's field manager.
fn writer_options(
    query: &Query,
    headers: &HeaderMap,
    options_kind: &str,
) -> Result<WriteOptions, ApiError> {
    Ok(WriteOptions {
        field_manager: Some(field_manager(query, headers, options_kind)?),
        ..write_options(query)?
    })
}

fn write_options(query: &Query) -> Result<WriteOptions, ApiError> {
    let dry_run = match query.all("dryRun").as_slice() {
        [] => false,
        ["All"] => true,
        other => {
            return Err(ApiError::bad_request(format!(
                "dryRun must be \"All\"; got {other:?}"
            )));
        }
    };
    Ok(WriteOptions {
        dry_run,
        field_validation: FieldValidation::parse(query.non_empty("fieldValidation"))?,
        ..WriteOptions::default()
    })
}

fn list_options(r: &ResourceDef, query: &Query) -> Result<ListOptions, ApiError> {
    let labels = LabelSelector::parse(query.get("labelSelector").unwrap_or(""))?;
    let fields = FieldSelector::parse(
        query.get("fieldSelector").unwrap_or(""),
        r.strategy.as_ref(),
        r.kind,
    )?;
    let limit = match query.non_empty("limit") {
        Some(l) => Some(
            l.parse::<usize>()
                .map_err(|_| ApiError::bad_request(format!("invalid limit {l:?}")))?,
        ),
        None => None,
    };
    let resource_version = match query.non_empty("resourceVersion") {
        Some(rv) => Some(parse_resource_version(rv)?),
        None => None,
    };
    let exact = query.get("resourceVersionMatch") == Some("Exact");
    Ok(ListOptions {
        labels,
        fields,
        limit,
        continue_token: query.non_empty("continue").map(str::to_owned),
        resource_version,
        exact,
    })
}

async fn resource_request<B>(
    server: &Arc<ApiServer>,
    r: &'static ResourceDef,
    info: RequestInfo,
    query: Query,
    req: Request<B>,
) -> Result<Response<Body>, ApiError>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if !r.namespaced && info.namespace.is_some() {
        return Err(ApiError::path_not_found());
    }
    let namespace = info.namespace.as_deref();
    let subresource = match info.subresource.as_deref() {
        None => None,
        Some(s) => Some(
            r.subresources
                .iter()
                .copied()
                .find(|sub| {
                    sub.name() == s || (*sub == Subresource::Proxy && s.starts_with("proxy/"))
                })
                .ok_or_else(ApiError::path_not_found)?,
        ),
    };
    let headers = req.headers().clone();
    let accept = header_str(&headers, header::ACCEPT);
    let content_type = header_str(&headers, header::CONTENT_TYPE).map(str::to_owned);
    let output = negotiation::negotiate_output(accept)?;
    let include = IncludeObject::parse(query.non_empty("includeObject"))?;
    let store = &server.store;
    let name = info.name.as_deref().unwrap_or("");
    let encode = |status: StatusCode, value: Value, warnings: &[String]| {
        with_warnings(
            {
                let (content_type, body) = representation::encode(&value, output);
                json_response(status, &content_type, body)
            },
            warnings,
        )
    };

    match (info.verb.as_str(), subresource) {
        (
            "get" | "create",
            Some(
                sub @ (Subresource::Log
                | Subresource::Exec
                | Subresource::Attach
                | Subresource::PortForward),
            ),
        ) if !(sub == Subresource::Log && info.verb == "create") => {
            pod_streams::serve(server, sub, namespace.unwrap_or(""), name, &query, req).await
        }
        (_, Some(Subresource::Proxy)) => {
            let method = req.method().clone();
            let query_string = req.uri().query().map(str::to_owned);
            let body = read_body(req.into_body()).await?;
            proxy::serve(
                server,
                r.plural,
                namespace,
                name,
                method,
                &info.path,
                query_string.as_deref(),
                &headers,
                body,
            )
            .await
        }
        ("get", None | Some(Subresource::Status | Subresource::EphemeralContainers)) => {
            let obj = store.get(r, namespace, name).await?;
            Ok(encode(
                StatusCode::OK,
                representation::object(r, obj, output, include),
                &[],
            ))
        }
        ("get", Some(Subresource::Scale)) => {
            let obj = store.get(r, namespace, name).await?;
            Ok(encode(StatusCode::OK, scale_of(r, &obj), &[]))
        }
        ("list", None) => {
            if namespace.is_none() && info.path.contains("/namespaces/") {
                return Err(ApiError::path_not_found());
            }
            let opts = list_options(r, &query)?;
            let page = store.list(r, namespace, &opts).await?;
            let body = representation::list(
                r,
                page.items,
                &page.resource_version.to_string(),
                page.continue_token.as_deref(),
                output,
                include,
            );
            Ok(encode(StatusCode::OK, body, &[]))
        }
        ("watch", None) => {
            let opts = list_options(r, &query)?;
            watch::serve_watch(
                server,
                r,
                namespace.map(str::to_owned),
                &query,
                opts,
                output,
                include,
            )
            .await
        }
        ("create", None) => {
            let ns = require_namespace(r, namespace)?;
            let mut opts = writer_options(&query, &headers, "CreateOptions")?;
            let format = negotiation::body_format(content_type.as_deref())?;
            let (body, duplicates) =
                negotiation::decode_body_checked(format, &read_body(req.into_body()).await?)?;
            opts.duplicate_fields = duplicates;
            let written = create_object(server, r, ns, body, &opts).await?;
            Ok(encode(
                StatusCode::CREATED,
                representation::object(r, written.object, output, include),
                &written.warnings,
            ))
        }
        ("create", Some(Subresource::Eviction)) => {
            let format = negotiation::body_format(content_type.as_deref())?;
            let eviction = negotiation::decode_body(format, &read_body(req.into_body()).await?)?;
            evict_pod(store, r, namespace, name, &eviction).await?;
            Ok(json_value(
                StatusCode::CREATED,
                &status_error::success_status(name, "", "pods", ""),
            ))
        }
        ("create", Some(Subresource::Token)) => {
            let format = negotiation::body_format(content_type.as_deref())?;
            let request = negotiation::decode_body(format, &read_body(req.into_body()).await?)?;
            let answer =
                tokens::token_request(server, namespace.unwrap_or(""), name, request).await?;
            Ok(json_value(StatusCode::CREATED, &answer))
        }
        ("create", Some(Subresource::Binding)) => {
            let format = negotiation::body_format(content_type.as_deref())?;
            let binding = negotiation::decode_body(format, &read_body(req.into_body()).await?)?;
            bind_pod(store, r, namespace, name, &binding, &write_options(&query)?).await?;
            Ok(json_value(
                StatusCode::CREATED,
                &status_error::success_status(name, "", "pods", ""),
            ))
        }
        (
            "update",
            None
            | Some(Subresource::Status | Subresource::EphemeralContainers | Subresource::Finalize),
        ) => {
            let mut opts = writer_options(&query, &headers, "UpdateOptions")?;
            let format = negotiation::body_format(content_type.as_deref())?;
            let (body, duplicates) =
                negotiation::decode_body_checked(format, &read_body(req.into_body()).await?)?;
            opts.duplicate_fields = duplicates;
            let scope = update_scope(subresource, &mut opts);
            let mut written = store
                .guaranteed_update(r, namespace, name, scope, &opts, |_| Ok(body.clone()))
                .await?;
            if r.plural == "services" && scope == UpdateScope::Main && !opts.dry_run {
                written.object = reconcile_service(server, r, namespace, written.object).await?;
            }
            Ok(encode(
                StatusCode::OK,
                representation::object(r, written.object, output, include),
                &written.warnings,
            ))
        }
        ("update", Some(Subresource::Scale)) => {
            let body = negotiation::decode_body(
                negotiation::body_format(content_type.as_deref())?,
                &read_body(req.into_body()).await?,
            )?;
            let opts = WriteOptions {
                subresource: "scale",
                ..writer_options(&query, &headers, "UpdateOptions")?
            };
            update_scale(store, r, namespace, name, &opts, |_| Ok(body.clone()))
                .await
                .map(|v| encode(StatusCode::OK, v, &[]))
        }
        ("patch", sub) => {
            let patch_type = patch::PatchType::from_content_type(content_type.as_deref())?;
            let body = read_body(req.into_body()).await?;
            let mut opts = writer_options(&query, &headers, "PatchOptions")?;
            let force = patch_force(&query, patch_type)?;
            if patch_type == patch::PatchType::Apply {
                if query.non_empty("fieldManager").is_none() {
                    // The User-Agent stand-in does not count: an applier must name itself.
                    return Err(ApiError::invalid(
                        "PatchOptions",
                        "meta.k8s.io",
                        "",
                        &[status_error::FieldError::required(
                            "fieldManager",
                            "is required for apply patch",
                        )],
                    ));
                }
                let (config, duplicates) = patch::decode_apply(&body)?;
                opts.duplicate_fields = duplicates;
                let (status, object) =
                    apply_object(server, r, namespace, name, sub, &opts, config, force).await?;
                return Ok(encode(
                    status,
                    representation::object(r, object.object, output, include),
                    &object.warnings,
                ));
            }
            // Decoded once; a bad body is still reported after the object is read, as before.
            let decoded = patch::decode_patch(patch_type, &body);
            if let Ok((_, duplicates)) = &decoded {
                opts.duplicate_fields = duplicates.clone();
            }
            let decoded = decoded.map(|(patch, _)| patch);
            let schema = (r.types.schema_name)();
            if sub == Some(Subresource::Scale) {
                let scale_schema = "io.k8s.api.autoscaling.v1.Scale";
                opts.subresource = "scale";
                return update_scale(store, r, namespace, name, &opts, |scale| {
                    decoded
                        .as_ref()
                        .map_err(Clone::clone)?
                        .apply(scale, scale_schema)
                })
                .await
                .map(|v| encode(StatusCode::OK, v, &[]));
            }
            let scope = update_scope(sub, &mut opts);
            let mut written = store
                .guaranteed_update(r, namespace, name, scope, &opts, |old| {
                    decoded.as_ref().map_err(Clone::clone)?.apply(old, &schema)
                })
                .await?;
            if r.plural == "services" && scope == UpdateScope::Main && !opts.dry_run {
                written.object = reconcile_service(server, r, namespace, written.object).await?;
            }
            Ok(encode(
                StatusCode::OK,
                representation::object(r, written.object, output, include),
                &written.warnings,
            ))
        }
        ("delete", None) => {
            let body = read_body(req.into_body()).await?;
            let options = delete_options(&body, &query)?;
            let dry_run = write_options(&query)?.dry_run
                || options["dryRun"]
                    .as_array()
                    .is_some_and(|d| d.iter().any(|v| v == "All"));
            let (obj, gone) = store.delete(r, namespace, name, &options, dry_run).await?;
            if gone && !dry_run && r.plural == "services" {
                server.service_ips.release(&obj).await;
            }
            let status = if gone {
                StatusCode::OK
            } else {
                StatusCode::ACCEPTED
            };
            if gone && r.plural != "pods" {
                let uid = obj["metadata"]["uid"].as_str().unwrap_or("");
                return Ok(json_value(
                    status,
                    &status_error::success_status(name, r.group, r.plural, uid),
                ));
            }
            Ok(encode(
                status,
                representation::object(r, obj, output, include),
                &[],
            ))
        }
        ("deletecollection", None) => {
            let body = read_body(req.into_body()).await?;
            let options = delete_options(&body, &query)?;
            let dry_run = write_options(&query)?.dry_run;
            let opts = list_options(r, &query)?;
            let page = store
                .list(
                    r,
                    namespace,
                    &ListOptions {
                        limit: None,
                        continue_token: None,
                        ..opts
                    },
                )
                .await?;
            let mut deleted = Vec::new();
            for item in page.items {
                let item_name = item["metadata"]["name"].as_str().unwrap_or("").to_owned();
                let item_ns = item["metadata"]["namespace"].as_str().map(str::to_owned);
                match store
                    .delete(r, item_ns.as_deref(), &item_name, &options, dry_run)
                    .await
                {
                    Ok((obj, gone)) => {
                        if gone && !dry_run && r.plural == "services" {
                            server.service_ips.release(&obj).await;
                        }
                        deleted.push(obj)
                    }
                    Err(e) if e.code == 404 => {}
                    Err(e) => return Err(e),
                }
            }
            let rv = store.current_revision().to_string();
            Ok(encode(
                StatusCode::OK,
                representation::list(r, deleted, &rv, None, output, include),
                &[],
            ))
        }
        _ => Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({} {})",
            info.verb, info.path
        ))),
    }
}

/// Creates an object, allocating a Service's addresses first (and releasing them if the
/// create fails).
async fn create_object(
    server: &ApiServer,
    r: &'static ResourceDef,
    ns: Option<&str>,
    mut body: Value,
    opts: &WriteOptions,
) -> Result<Written, ApiError> {
    let store = &server.store;
    ensure_namespace_exists(store, r, ns).await?;
    let allocates = r.plural == "services" && !opts.dry_run;
    if allocates {
        server
            .service_ips
            .allocate(ns.unwrap_or(""), &mut body)
            .await?;
    }
    match store.create(r, ns, body.clone(), opts).await {
        Ok(written) => Ok(written),
        Err(e) => {
            if allocates {
                server.service_ips.release(&body).await;
            }
            Err(e)
        }
    }
}

/// What an update through `sub` may change (the subresource is noted for managedFields).
fn update_scope(sub: Option<Subresource>, opts: &mut WriteOptions) -> UpdateScope {
    match sub {
        Some(Subresource::Status) => UpdateScope::Status,
        Some(Subresource::Finalize) => UpdateScope::Finalize,
        Some(Subresource::EphemeralContainers) => {
            opts.subresource = "ephemeralcontainers";
            UpdateScope::EphemeralContainers
        }
        _ => UpdateScope::Main,
    }
}

/// `force` is for apply patches only.
fn patch_force(query: &Query, patch_type: patch::PatchType) -> Result<bool, ApiError> {
    let force = match query.non_empty("force") {
        None => return Ok(false),
        Some("true") => true,
        Some("false") => false,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "force must be true or false; got {other:?}"
            )));
        }
    };
    if patch_type != patch::PatchType::Apply {
        return Err(ApiError::invalid(
            "PatchOptions",
            "meta.k8s.io",
            "",
            &[status_error::FieldError::forbidden(
                "force",
                "may not be specified for non-apply patch",
            )],
        ));
    }
    Ok(force)
}

/// Server-side apply: onto the live object, or a create when there is none. Returns the
/// answer's status code with the written object.
#[allow(clippy::too_many_arguments)] // reason: every input of one apply, named
async fn apply_object(
    server: &Arc<ApiServer>,
    r: &'static ResourceDef,
    namespace: Option<&str>,
    name: &str,
    sub: Option<Subresource>,
    opts: &WriteOptions,
    config: Value,
    force: bool,
) -> Result<(StatusCode, Written), ApiError> {
    let scope = match sub {
        None => UpdateScope::Main,
        Some(Subresource::Status) => UpdateScope::Status,
        Some(other) => {
            return Err(ApiError::method_not_allowed(format!(
                "server-side apply is not supported on the {} subresource",
                other.name()
            )));
        }
    };
    let store = &server.store;
    for _ in 0..4 {
        match store
            .apply(r, namespace, name, scope, opts, &config, force)
            .await
        {
            Ok(mut written) => {
                if r.plural == "services" && scope == UpdateScope::Main && !opts.dry_run {
                    written.object =
                        reconcile_service(server, r, namespace, written.object).await?;
                }
                return Ok((StatusCode::OK, written));
            }
            Err(e) if e.code == 404 && scope == UpdateScope::Main => {}
            Err(e) => return Err(e),
        }
        let object = store.apply_new(r, name, opts, &config, force)?;
        let ns = require_namespace(r, namespace)?;
        let applied = WriteOptions {
            ownership: Ownership::Applied,
            ..opts.clone()
        };
        match create_object(server, r, ns, object, &applied).await {
            Ok(written) => return Ok((StatusCode::CREATED, written)),
            // Created meanwhile: apply onto it.
            Err(e) if e.code == 409 && e.reason == "AlreadyExists" => {}
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::conflict(
        r.plural,
        r.group,
        name,
        "the object kept changing during server-side apply; try again",
    ))
}

/// Brings a Service's addresses in line with an update (see `ServiceAllocator::reconcile_update`).
async fn reconcile_service(
    server: &ApiServer,
    r: &'static ResourceDef,
    namespace: Option<&str>,
    service: Value,
) -> Result<Value, ApiError> {
    let Some(fixed) = server
        .service_ips
        .reconcile_update(namespace.unwrap_or(""), &service)
        .await?
    else {
        return Ok(service);
    };
    let name = service["metadata"]["name"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    let written = server
        .store
        .guaranteed_update(
            r,
            namespace,
            &name,
            UpdateScope::Binding,
            &WriteOptions::default(),
            |current| {
                let mut next = current.clone();
                next["spec"]["ports"] = fixed["spec"]["ports"].clone();
                for field in ["clusterIP", "clusterIPs"] {
                    match fixed["spec"].get(field) {
                        Some(v) => next["spec"][field] = v.clone(),
                        None => {
                            next["spec"].as_object_mut().map(|m| m.remove(field));
                        }
                    }
                }
                Ok(next)
            },
        )
        .await?;
    Ok(written.object)
}

fn require_namespace<'a>(
    r: &ResourceDef,
    namespace: Option<&'a str>,
) -> Result<Option<&'a str>, ApiError> {
    if r.namespaced && namespace.is_none() {
        return Err(ApiError::path_not_found());
    }
    Ok(namespace)
}

/// Namespaced objects may only be created in an existing namespace (NamespaceLifecycle).
async fn ensure_namespace_exists(
    store: &GenericStore,
    r: &ResourceDef,
    namespace: Option<&str>,
) -> Result<(), ApiError> {
    let (true, Some(ns)) = (r.namespaced, namespace) else {
        return Ok(());
    };
    let namespaces = resource_table::lookup("", "v1", "namespaces").expect("namespaces are served");
    let obj = store.get(namespaces, None, ns).await?;
    if !obj["metadata"]["deletionTimestamp"].is_null() {
        return Err(ApiError::new(
            403,
            "Forbidden",
            format!(
                "unable to create new content in namespace {ns} because it is being terminated"
            ),
        ));
    }
    Ok(())
}

fn delete_options(body: &[u8], query: &Query) -> Result<Value, ApiError> {
    let mut options: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        let v = negotiation::decode_body(BodyFormat::Json, body)?;
        if let Some(kind) = v["kind"].as_str()
            && kind != "DeleteOptions"
        {
            return Err(ApiError::bad_request(format!(
                "expected DeleteOptions, got {kind}"
            )));
        }
        v
    };
    if let Some(policy) = query.non_empty("propagationPolicy") {
        options["propagationPolicy"] = json!(policy);
    }
    if let Some(policy) = options["propagationPolicy"].as_str()
        && !["Orphan", "Background", "Foreground"].contains(&policy)
    {
        return Err(ApiError::bad_request(format!(
            "propagationPolicy {policy:?} is not one of Orphan, Background, Foreground"
        )));
    }
    Ok(options)
}

/// The `autoscaling/v1` Scale of a workload.
fn scale_of(r: &ResourceDef, obj: &Value) -> Value {
    let meta = &obj["metadata"];
    let selector = &obj["spec"]["selector"];
    let selector = if r.plural == "replicationcontrollers" {
        printers::label_map_string(selector)
    } else {
        printers::selector_string(selector)
    };
    json!({
        "kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {"name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"],
                     "resourceVersion": meta["resourceVersion"], "creationTimestamp": meta["creationTimestamp"]},
        "spec": {"replicas": obj["spec"]["replicas"].as_i64().unwrap_or(1)},
        "status": {"replicas": obj["status"]["replicas"].as_i64().unwrap_or(0), "selector": selector},
    })
}

async fn update_scale<F>(
    store: &GenericStore,
    r: &'static ResourceDef,
    namespace: Option<&str>,
    name: &str,
    opts: &WriteOptions,
    mut new_scale: F,
) -> Result<Value, ApiError>
where
    F: FnMut(&Value) -> Result<Value, ApiError>,
{
    let written = store
        .guaranteed_update(r, namespace, name, UpdateScope::Main, opts, |old| {
            let scale = new_scale(&scale_of(r, old))?;
            let replicas = scale["spec"]["replicas"].as_i64().ok_or_else(|| {
                ApiError::invalid(
                    "Scale",
                    "autoscaling",
                    name,
                    &[status_error::FieldError::required("spec.replicas", "")],
                )
            })?;
            if replicas < 0 {
                return Err(ApiError::invalid(
                    "Scale",
                    "autoscaling",
                    name,
                    &[status_error::FieldError::invalid(
                        "spec.replicas",
                        &json!(replicas),
                        "must be greater than or equal to 0",
                    )],
                ));
            }
            let mut obj = old.clone();
            obj["spec"]["replicas"] = json!(replicas);
            if let Some(rv) = scale["metadata"]["resourceVersion"].as_str() {
                obj["metadata"]["resourceVersion"] = json!(rv);
            }
            Ok(obj)
        })
        .await?;
    Ok(scale_of(r, &written.object))
}

/// `pods/eviction`: deletes the pod unless a PodDisruptionBudget selecting it allows no
/// disruption (429, as the real server answers). Pods that are not running are always evicted.
async fn evict_pod(
    store: &GenericStore,
    r: &'static ResourceDef,
    namespace: Option<&str>,
    name: &str,
    eviction: &Value,
) -> Result<(), ApiError> {
    let pod = store.get(r, namespace, name).await?;
    let running = !matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded" | "Failed" | "Pending")
    );
    if running {
        let budgets = resource_table::lookup("policy", "v1", "poddisruptionbudgets")
            .expect("PDBs are served");
        let page = store
            .list(budgets, namespace, &ListOptions::default())
            .await?;
        for pdb in page.items {
            let selector =
                LabelSelector::parse(&printers::selector_string(&pdb["spec"]["selector"]))?;
            if pdb["spec"]["selector"].is_null() || !selector.matches(&pod) {
                continue;
            }
            if pdb["status"]["disruptionsAllowed"].as_i64().unwrap_or(0) < 1 {
                let pdb_name = pdb["metadata"]["name"].as_str().unwrap_or("");
                let mut err = ApiError::new(
                    429,
                    "TooManyRequests",
                    "Cannot evict pod as it would violate the pod's disruption budget.",
                );
                err.details = Some(Box::new(kube_core::response::StatusDetails {
                    name: String::new(),
                    group: String::new(),
                    kind: String::new(),
                    uid: String::new(),
                    causes: vec![kube_core::response::StatusCause {
                        reason: "DisruptionBudget".into(),
                        message: format!(
                            "The disruption budget {pdb_name} needs {} healthy pods and has {} currently",
                            pdb["status"]["desiredHealthy"].as_i64().unwrap_or(0),
                            pdb["status"]["currentHealthy"].as_i64().unwrap_or(0)
                        ),
                        field: String::new(),
                    }],
                    retry_after_seconds: 0,
                }));
                return Err(err);
            }
        }
    }
    let options = eviction
        .get("deleteOptions")
        .cloned()
        .unwrap_or_else(|| json!({}));
    store
        .delete(r, namespace, name, &options, false)
        .await
        .map(|_| ())
}

/// `pods/binding`: sets `spec.nodeName` once.
async fn bind_pod(
    store: &GenericStore,
    r: &'static ResourceDef,
    namespace: Option<&str>,
    name: &str,
    binding: &Value,
    opts: &WriteOptions,
) -> Result<(), ApiError> {
    let node = binding["target"]["name"]
        .as_str()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            ApiError::invalid(
                "Binding",
                "",
                name,
                &[status_error::FieldError::required("target.name", "")],
            )
        })?;
    store
        .guaranteed_update(r, namespace, name, UpdateScope::Binding, opts, |old| {
            if let Some(current) = old["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
                return Err(ApiError::conflict(
                    "pods",
                    "",
                    name,
                    &format!("pod {name} is already assigned to node {current:?}"),
                ));
            }
            if !old["metadata"]["deletionTimestamp"].is_null() {
                return Err(ApiError::conflict(
                    "pods",
                    "",
                    name,
                    "pod is being deleted, cannot be assigned to a host",
                ));
            }
            let mut pod = old.clone();
            pod["spec"]["nodeName"] = json!(node);
            Ok(pod)
        })
        .await
        .map(|_| ())
}

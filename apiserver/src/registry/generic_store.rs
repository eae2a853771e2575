//! THE store: one implementation of create, get, list, update (guaranteed_update), delete and
//! watch for every resource, over JSON objects in the storage crate. Resources only supply
//! strategy hooks; this module owns system metadata, typed decoding, the order of
//! preparation, admission and validation, optimistic concurrency, finalizers and the mapping
//! of storage events to watch events.

use std::sync::Arc;

use apiserver_storage::{Event, EventKind, KeyValue, ListRequest, Revision, Storage, StorageError};
use base64::Engine;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use jiff::Timestamp;
use rand::Rng;
use serde_json::{Map, Value, json};

use crate::admission::{self, Attributes, Operation};
use crate::endpoints::status_error::{ApiError, FieldError};
use crate::registry::managed_fields::{self, Scope, Writer};
use crate::registry::resource_table::ResourceDef;
use crate::registry::selectors::{FieldSelector, LabelSelector};
use crate::registry::validation::validate_object_meta;
use crate::registry::watch_cache::WatchCache;

/// Options of a write, from the query string.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    pub dry_run: bool,
    pub field_validation: FieldValidation,
    /// The field manager `managedFields` records the write under; `None` for the server's
    /// own bookkeeping writes, which leave ownership as it is.
    pub field_manager: Option<String>,
    /// The subresource a main-resource write came through (`scale`), for its entry.
    pub subresource: &'static str,
    pub ownership: Ownership,
    /// Paths of keys the request body repeated, reported as `fieldValidation` says.
    pub duplicate_fields: Vec<String>,
}

/// How a write's `managedFields` come about.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Ownership {
    /// Computed here from what the write changed (operation `Update`).
    #[default]
    Track,
    /// Already computed by server-side apply; stored as given.
    Applied,
}

/// `fieldValidation`: what to do with unknown fields.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FieldValidation {
    Ignore,
    #[default]
    Warn,
    Strict,
}

impl FieldValidation {
    pub fn parse(value: Option<&str>) -> Result<Self, ApiError> {
        match value.unwrap_or("") {
            "" | "Warn" => Ok(FieldValidation::Warn),
            "Ignore" => Ok(FieldValidation::Ignore),
            "Strict" => Ok(FieldValidation::Strict),
            other => Err(ApiError::bad_request(format!(
                "fieldValidation must be one of Ignore, Warn, Strict; got {other:?}"
            ))),
        }
    }
}

/// The outcome of a write: the object and any warnings for `Warning:` headers.
#[derive(Debug, Clone)]
pub struct Written {
    pub object: Value,
    pub warnings: Vec<String>,
}

/// Which part of the object an update may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateScope {
    /// The main endpoint: everything but status.
    Main,
    /// `/status`: only status.
    Status,
    /// A system write through a subresource such as `pods/binding`: the whole object may
    /// change, without the main endpoint's immutability rules.
    Binding,
    /// `pods/ephemeralcontainers`: only `spec.ephemeralContainers`, and only by adding.
    EphemeralContainers,
    /// `namespaces/{name}/finalize`: only `spec.finalizers`.
    Finalize,
}

/// Options of a list.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
    /// `resourceVersion` with `resourceVersionMatch=Exact` semantics when `exact` is set.
    pub resource_version: Option<Revision>,
    pub exact: bool,
}

/// One page of a list.
#[derive(Debug, Clone)]
pub struct ListPage {
    pub items: Vec<Value>,
    pub resource_version: Revision,
    pub continue_token: Option<String>,
}

/// A watch event ready for encoding.
#[derive(Debug, Clone)]
pub enum WatchItem {
    Added(Value),
    Modified(Value),
    Deleted(Value),
    Bookmark(Revision),
    /// The initial state (sent when watching without a revision) is complete, as of this
    /// revision.
    InitialEnd(Revision),
    /// Ends the stream with an in-stream error Status.
    Error(ApiError),
}

impl WatchItem {
    /// Applies `f` to the object an event carries.
    fn map_object(self, f: fn(Value) -> Value) -> WatchItem {
        match self {
            WatchItem::Added(o) => WatchItem::Added(f(o)),
            WatchItem::Modified(o) => WatchItem::Modified(f(o)),
            WatchItem::Deleted(o) => WatchItem::Deleted(f(o)),
            other => other,
        }
    }
}

/// The object as the requested version shows it.
fn served(r: &ResourceDef, obj: Value) -> Value {
    match &r.conversion {
        Some(c) => (c.from_storage)(obj),
        None => obj,
    }
}

/// Who `managedFields` credits a write to, if anyone: `requested` is the resource as the
/// client addressed it (its API version is the entry's).
fn writer_of(requested: &ResourceDef, opts: &WriteOptions, scope: UpdateScope) -> Option<Writer> {
    if opts.ownership == Ownership::Applied
        || scope == UpdateScope::Binding
        || opts.field_manager.is_none()
    {
        return None;
    }
    Some(writer(requested, opts, scope))
}

/// The writer of a write through `scope` (an unnamed manager is the empty name).
fn writer(requested: &ResourceDef, opts: &WriteOptions, scope: UpdateScope) -> Writer {
    Writer {
        manager: opts.field_manager.clone().unwrap_or_default(),
        subresource: match scope {
            UpdateScope::Status => "status",
            _ => opts.subresource,
        },
        api_version: requested.api_version(),
    }
}

fn ownership_scope(r: &ResourceDef, scope: UpdateScope) -> Scope {
    match scope {
        UpdateScope::Status => Scope::Status,
        _ => Scope::Main {
            has_status: r.strategy.has_status(),
        },
    }
}

#[derive(Clone)]
pub struct GenericStore {
    storage: Arc<dyn Storage>,
    cache: Option<Arc<WatchCache>>,
}

fn now_rfc3339() -> String {
    rfc3339(Timestamp::now())
}

fn rfc3339(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj["metadata"][field].as_str().filter(|s| !s.is_empty())
}

/// The conflict answered when concurrent writers kept winning every retry.
fn retries_exhausted(r: &ResourceDef, name: &str) -> ApiError {
    ApiError::conflict(
        r.plural,
        r.group,
        name,
        "too many concurrent updates; try again",
    )
}

/// Puts the URL's namespace on the object (a different one in the body is an error);
/// cluster-scoped objects carry none.
fn set_namespace(
    r: &ResourceDef,
    obj: &mut Value,
    namespace: Option<&str>,
) -> Result<(), ApiError> {
    if !r.namespaced {
        if let Some(meta) = obj["metadata"].as_object_mut() {
            meta.remove("namespace");
        }
        return Ok(());
    }
    let url_ns = namespace.unwrap_or("");
    match meta_str(obj, "namespace") {
        Some(ns) if ns != url_ns => Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        )),
        _ => {
            obj["metadata"]["namespace"] = json!(url_ns);
            Ok(())
        }
    }
}

/// Decodes a stored value, setting `metadata.resourceVersion` to its revision.
pub fn decode_stored(kv: &KeyValue) -> Result<Value, ApiError> {
    let mut obj: Value = serde_json::from_slice(&kv.value)
        .map_err(|e| ApiError::internal(format!("stored object {} is corrupt: {e}", kv.key)))?;
    obj["metadata"]["resourceVersion"] = json!(kv.mod_revision.to_string());
    Ok(obj)
}

fn encode_for_storage(obj: &Value) -> Bytes {
    let mut obj = obj.clone();
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
    Bytes::from(serde_json::to_vec(&obj).expect("a JSON value serializes"))
}

/// Paths of fields present in `original` but dropped by the typed round trip.
fn unknown_fields(original: &Value, typed: &Value, path: &str, out: &mut Vec<String>) {
    match (original, typed) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match b.get(k) {
                    Some(tv) => unknown_fields(v, tv, &p, out),
                    None if v.is_null() => {}
                    None => out.push(p),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                unknown_fields(x, y, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// `resourceVersion` query or body value as a revision.
pub fn parse_resource_version(rv: &str) -> Result<Revision, ApiError> {
    rv.parse::<Revision>()
        .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv:?}")))
}

fn encode_continue(key: &str, revision: Revision) -> String {
    let token = json!({"v": "meta.k8s.io/v1", "rv": revision, "start": key});
    base64::engine::general_purpose::URL_SAFE.encode(token.to_string())
}

fn decode_continue(token: &str) -> Result<(String, Revision), ApiError> {
    let bad = || {
        ApiError::bad_request(
            "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
        )
    };
    let raw = base64::engine::general_purpose::URL_SAFE
        .decode(token)
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    match (v["start"].as_str(), v["rv"].as_u64()) {
        (Some(start), Some(rv)) => Ok((start.to_owned(), rv)),
        _ => Err(bad()),
    }
}

impl GenericStore {
    /// A store reading storage directly (no watch cache).
    pub fn new(storage: Arc<dyn Storage>) -> Self {
        GenericStore {
            storage,
            cache: None,
        }
    }

    /// Serves lists and watches from `cache` where it can.
    pub fn with_watch_cache(mut self, cache: Arc<WatchCache>) -> Self {
        self.cache = Some(cache);
        self
    }

    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    /// The watch cache in front of storage, if any.
    pub fn watch_cache(&self) -> Option<&Arc<WatchCache>> {
        self.cache.as_ref()
    }

    /// Checks apiVersion/kind, decodes through the typed struct and applies fieldValidation.
    fn decode_typed(
        &self,
        r: &ResourceDef,
        mut obj: Value,
        opts: &WriteOptions,
        warnings: &mut Vec<String>,
    ) -> Result<Value, ApiError> {
        let api_version = r.api_version();
        match obj["apiVersion"].as_str() {
            None | Some("") => obj["apiVersion"] = json!(api_version),
            Some(v) if v == api_version => {}
            Some(v) => {
                return Err(ApiError::bad_request(format!(
                    "the API version in the data ({v}) does not match the expected API version ({api_version})"
                )));
            }
        }
        match obj["kind"].as_str() {
            None | Some("") => obj["kind"] = json!(r.kind),
            Some(k) if k == r.kind => {}
            Some(k) => {
                return Err(ApiError::bad_request(format!(
                    "the kind in the data ({k}) does not match the expected kind ({})",
                    r.kind
                )));
            }
        }
        let typed = (r.types.round_trip)(obj.clone())
            .map_err(|e| ApiError::bad_request(format!("error decoding {}: {e}", r.kind)))?;
        let mut unknown = Vec::new();
        unknown_fields(&obj, &typed, "", &mut unknown);
        if !unknown.is_empty() || !opts.duplicate_fields.is_empty() {
            let messages: Vec<String> = unknown
                .iter()
                .map(|f| format!("unknown field {f:?}"))
                .chain(
                    opts.duplicate_fields
                        .iter()
                        .map(|f| format!("duplicate field {f:?}")),
                )
                .collect();
            match opts.field_validation {
                FieldValidation::Strict => {
                    return Err(ApiError::bad_request(format!(
                        "strict decoding error: {}",
                        messages.join(", ")
                    )));
                }
                FieldValidation::Warn => warnings.extend(messages),
                FieldValidation::Ignore => {}
            }
        }
        Ok(typed)
    }

    fn validate(&self, r: &ResourceDef, obj: &Value) -> Vec<FieldError> {
        let mut errs = validate_object_meta(obj, r.strategy.name_rule(), r.namespaced);
        errs.extend(r.strategy.validate(obj));
        errs
    }

    fn invalid(&self, r: &ResourceDef, obj: &Value, errs: &[FieldError]) -> ApiError {
        ApiError::invalid(r.kind, r.group, meta_str(obj, "name").unwrap_or(""), errs)
    }

    pub async fn create(
        &self,
        r: &'static ResourceDef,
        namespace: Option<&str>,
        body: Value,
        opts: &WriteOptions,
    ) -> Result<Written, ApiError> {
        let mut warnings = Vec::new();
        let typed = self.decode_typed(r, body, opts, &mut warnings)?;
        // Everything below works on the stored form; the answer is converted back.
        let requested = r;
        let mut obj = match &r.conversion {
            Some(c) => (c.to_storage)(typed),
            None => typed,
        };
        let r = r.stored();
        if !obj["metadata"].is_object() {
            obj["metadata"] = json!({});
        }
        set_namespace(r, &mut obj, namespace)?;
        // Admission runs before names are generated upstream, and reports the prefix.
        let admission_name = meta_str(&obj, "name")
            .or_else(|| meta_str(&obj, "generateName"))
            .unwrap_or("Unknown")
            .to_owned();
        if meta_str(&obj, "name").is_none()
            && let Some(prefix) = meta_str(&obj, "generateName")
        {
            let prefix: String = prefix.chars().take(58).collect();
            obj["metadata"]["name"] = json!(format!("{prefix}{}", random_suffix()));
        }
        let meta = obj["metadata"]
            .as_object_mut()
            .expect("metadata is an object");
        for field in [
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "resourceVersion",
            "selfLink",
        ] {
            meta.remove(field);
        }
        meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
        meta.insert("creationTimestamp".into(), json!(now_rfc3339()));
        if r.strategy.tracks_generation() {
            meta.insert("generation".into(), json!(1));
        } else {
            meta.remove("generation");
        }
        r.strategy.defaults(&mut obj);
        r.strategy.prepare_for_create(&mut obj);
        if let Some(writer) = writer_of(requested, opts, UpdateScope::Main) {
            let scope = ownership_scope(r, UpdateScope::Main);
            managed_fields::track_update(
                managed_fields::root_type(r),
                None,
                &mut obj,
                &writer,
                scope,
            );
        }
        let attrs = Attributes {
            resource: r,
            name: &admission_name,
            operation: Operation::Create,
        };
        admission::mutate(self, &attrs, &mut obj).await?;
        let errs = self.validate(r, &obj);
        if !errs.is_empty() {
            return Err(self.invalid(r, &obj, &errs));
        }
        admission::validate(self, &attrs, &obj).await?;
        let name = meta_str(&obj, "name").unwrap_or("").to_owned();
        let key = r.key(namespace, &name);
        if opts.dry_run {
            if self
                .storage
                .get(&key)
                .await
                .map_err(|e| ApiError::from_storage(e, r.plural, r.group, &name))?
                .is_some()
            {
                return Err(ApiError::already_exists(r.plural, r.group, &name));
            }
            return Ok(Written {
                object: served(requested, obj),
                warnings,
            });
        }
        let kv = self
            .storage
            .create(&key, encode_for_storage(&obj))
            .await
            .map_err(|e| ApiError::from_storage(e, r.plural, r.group, &name))?;
        obj["metadata"]["resourceVersion"] = json!(kv.mod_revision.to_string());
        Ok(Written {
            object: served(requested, obj),
            warnings,
        })
    }

    pub async fn get(
        &self,
        r: &'static ResourceDef,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Value, ApiError> {
        let kv = self.get_kv(r, namespace, name).await?;
        Ok(served(r, decode_stored(&kv)?))
    }

    async fn get_kv(
        &self,
        r: &ResourceDef,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<KeyValue, ApiError> {
        self.storage
            .get(&r.key(namespace, name))
            .await
            .map_err(|e| ApiError::from_storage(e, r.plural, r.group, name))?
            .ok_or_else(|| ApiError::not_found(r.plural, r.group, name))
    }

    /// Lists objects in a namespace (or all), filtered by selectors, one page at a time.
    pub async fn list(
        &self,
        r: &'static ResourceDef,
        namespace: Option<&str>,
        opts: &ListOptions,
    ) -> Result<ListPage, ApiError> {
        let mut page = self.list_stored(r, namespace, opts).await?;
        if r.conversion.is_some() {
            page.items = page.items.into_iter().map(|o| served(r, o)).collect();
        }
        Ok(page)
    }

    /// Lists in the stored form.
    async fn list_stored(
        &self,
        r: &'static ResourceDef,
        namespace: Option<&str>,
        opts: &ListOptions,
    ) -> Result<ListPage, ApiError> {
        let prefix = match namespace.filter(|_| r.namespaced) {
            Some(ns) => format!("{}{ns}/", r.key_prefix()),
            None => r.key_prefix(),
        };
        if opts.continue_token.is_none()
            && !opts.exact
            && let Some(page) = self.list_from_cache(r, &prefix, opts).await
        {
            return Ok(page);
        }
        let (mut start_after, mut revision) = match &opts.continue_token {
            Some(token) => {
                let (start, rv) = decode_continue(token)?;
                (Some(start), Some(rv))
            }
            None => (None, opts.resource_version.filter(|_| opts.exact)),
        };
        let mut items = Vec::new();
        let want = opts.limit.filter(|l| *l > 0);
        loop {
            let page = self
                .storage
                .list(ListRequest {
                    prefix: prefix.clone(),
                    revision,
                    start_after: start_after.clone(),
                    limit: want.map(|w| (w - items.len()).max(1)),
                })
                .await
                .map_err(|e| match e {
                    StorageError::Compacted { .. } if opts.continue_token.is_some() => ApiError::expired(
                        "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
                    ),
                    other => ApiError::from_storage(other, r.plural, r.group, ""),
                })?;
            revision = Some(page.revision);
            let last_key = page.items.last().map(|kv| kv.key.clone());
            for kv in &page.items {
                let obj = decode_stored(kv)?;
                if opts.labels.matches(&obj) && opts.fields.matches(&obj, r.strategy.as_ref()) {
                    items.push(obj);
                }
            }
            let full = want.is_some_and(|w| items.len() >= w);
            if !page.more {
                return Ok(ListPage {
                    items,
                    resource_version: page.revision,
                    continue_token: None,
                });
            }
            if full || want.is_none() {
                let token = last_key.map(|k| encode_continue(&k, page.revision));
                return Ok(ListPage {
                    items,
                    resource_version: page.revision,
                    continue_token: token,
                });
            }
            start_after = last_key;
        }
    }

    /// A consistent first page from the watch cache, once it has applied every acknowledged
    /// write; `None` sends the read to storage.
    async fn list_from_cache(
        &self,
        r: &ResourceDef,
        prefix: &str,
        opts: &ListOptions,
    ) -> Option<ListPage> {
        let cache = self.cache.as_ref()?;
        let resource = cache.resource(&r.key_prefix())?;
        if !cache.wait_for(self.storage.current_revision()).await {
            return None;
        }
        let snapshot = resource.snapshot(prefix, cache.applied());
        let limit = opts.limit.filter(|l| *l > 0).unwrap_or(usize::MAX);
        let mut items = Vec::new();
        let mut continue_token = None;
        let mut last_key = None;
        for (key, obj) in &snapshot.items {
            if !(opts.labels.matches(obj) && opts.fields.matches(obj, r.strategy.as_ref())) {
                continue;
            }
            if items.len() == limit {
                continue_token = last_key.map(|k: &String| encode_continue(k, snapshot.revision));
                break;
            }
            items.push(obj.as_ref().clone());
            last_key = Some(key);
        }
        Some(ListPage {
            items,
            resource_version: snapshot.revision,
            continue_token,
        })
    }

    /// Reads the object, lets `apply` compute its new state, and writes it with
    /// compare-and-swap on the read revision; retries on conflicts unless the new state pins a
    /// resourceVersion (then the conflict is the client's).
    pub async fn guaranteed_update<F>(
        &self,
        r: &'static ResourceDef,
        namespace: Option<&str>,
        name: &str,
        scope: UpdateScope,
        opts: &WriteOptions,
        mut apply: F,
    ) -> Result<Written, ApiError>
    where
        F: FnMut(&Value) -> Result<Value, ApiError>,
    {
        // The client's closure sees and returns the requested version; the rest is stored form.
        let requested = r;
        let r = r.stored();
        // Duplicates are reported once, at the version the client wrote.
        let stored_opts;
        let store_opts = if requested.conversion.is_some() {
            stored_opts = WriteOptions {
                duplicate_fields: Vec::new(),
                ..opts.clone()
            };
            &stored_opts
        } else {
            opts
        };
        for _ in 0..16 {
            let kv = self.get_kv(r, namespace, name).await?;
            let old = decode_stored(&kv)?;
            let body = apply(&served(requested, old.clone()))?;
            let pinned = meta_str(&body, "resourceVersion").map(str::to_owned);
            if let Some(rv) = &pinned
                && *rv != kv.mod_revision.to_string()
            {
                return Err(ApiError::conflict(
                    r.plural,
                    r.group,
                    name,
                    "the object has been modified; please apply your changes to the latest version and try again",
                ));
            }
            let mut warnings = Vec::new();
            let body = match &requested.conversion {
                Some(c) => {
                    let typed = self.decode_typed(requested, body, opts, &mut warnings)?;
                    (c.to_storage)(typed)
                }
                None => body,
            };
            let writer = writer_of(requested, opts, scope);
            let mut new = self.prepare_update(
                r,
                namespace,
                name,
                body,
                &old,
                scope,
                store_opts,
                writer.as_ref(),
                &mut warnings,
            )?;
            // Admission sees main-endpoint writes only, as upstream skips subresources.
            let attrs = Attributes {
                resource: r,
                name,
                operation: Operation::Update { old: &old },
            };
            if scope == UpdateScope::Main {
                admission::mutate(self, &attrs, &mut new).await?;
            }
            self.validate_update(r, &new, &old, scope)?;
            if scope == UpdateScope::Main {
                admission::validate(self, &attrs, &new).await?;
            }
            if new == old {
                return Ok(Written {
                    object: served(requested, old),
                    warnings,
                });
            }
            if opts.dry_run {
                return Ok(Written {
                    object: served(requested, new),
                    warnings,
                });
            }
            let key = r.key(namespace, name);
            let deleting = !new["metadata"]["deletionTimestamp"].is_null();
            let no_finalizers = new["metadata"]["finalizers"]
                .as_array()
                .is_none_or(Vec::is_empty);
            // A graceful deletion still running (a grace period left) is finished by whoever
            // runs the object, not by its last update.
            let grace_left = new["metadata"]["deletionGracePeriodSeconds"]
                .as_i64()
                .is_some_and(|g| g > 0);
            let result =
                if deleting && no_finalizers && !grace_left && !r.strategy.pending_finalizers(&new)
                {
                    self.storage
                        .delete(&key, Some(kv.mod_revision))
                        .await
                        .map(|_| {
                            let mut gone = new.clone();
                            gone["metadata"]["resourceVersion"] =
                                old["metadata"]["resourceVersion"].clone();
                            gone
                        })
                } else {
                    self.storage
                        .update(&key, kv.mod_revision, encode_for_storage(&new))
                        .await
                        .map(|kv| {
                            let mut obj = new.clone();
                            obj["metadata"]["resourceVersion"] = json!(kv.mod_revision.to_string());
                            obj
                        })
                };
            match result {
                Ok(object) => {
                    return Ok(Written {
                        object: served(requested, object),
                        warnings,
                    });
                }
                Err(StorageError::Conflict { .. }) if pinned.is_none() => continue,
                Err(e) => return Err(ApiError::from_storage(e, r.plural, r.group, name)),
            }
        }
        Err(retries_exhausted(r, name))
    }

    /// The new state of an object an update gives, before admission and validation.
    #[allow(clippy::too_many_arguments)] // reason: every input of one update step, named
    fn prepare_update(
        &self,
        r: &ResourceDef,
        namespace: Option<&str>,
        name: &str,
        body: Value,
        old: &Value,
        scope: UpdateScope,
        opts: &WriteOptions,
        writer: Option<&Writer>,
        warnings: &mut Vec<String>,
    ) -> Result<Value, ApiError> {
        let mut new = self.decode_typed(r, body, opts, warnings)?;
        if !new["metadata"].is_object() {
            new["metadata"] = json!({});
        }
        name_from_url(&mut new, name)?;
        set_namespace(r, &mut new, namespace)?;
        // System fields the client cannot change.
        for field in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
        ] {
            copy_field(&mut new, old, &["metadata", field]);
        }
        new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
        match scope {
            UpdateScope::EphemeralContainers => {
                let kept = old_with(old, &new, &["spec", "ephemeralContainers"], opts);
                let errs =
                    crate::registry::resources::pod_spec::validate_ephemeral_update(&kept, old);
                if !errs.is_empty() {
                    return Err(self.invalid(r, &kept, &errs));
                }
                new = kept;
            }
            UpdateScope::Main => {
                if r.strategy.has_status() {
                    copy_field(&mut new, old, &["status"]);
                }
                r.strategy.prepare_for_update(&mut new, old);
            }
            UpdateScope::Status if r.strategy.has_status() => {
                new = old_with(old, &new, &["status"], opts);
            }
            UpdateScope::Finalize => new = old_with(old, &new, &["spec", "finalizers"], opts),
            _ => {}
        }
        if !old["metadata"]["deletionTimestamp"].is_null() {
            let old_finalizers: Vec<&Value> = old["metadata"]["finalizers"]
                .as_array()
                .into_iter()
                .flatten()
                .collect();
            let added: Vec<String> = new["metadata"]["finalizers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|f| !old_finalizers.contains(f))
                .map(|f| f.as_str().unwrap_or("").to_owned())
                .collect();
            if !added.is_empty() {
                return Err(self.invalid(r, &new, &[FieldError::forbidden(
                    "metadata.finalizers",
                    &format!("no new finalizers can be added if the object is being deleted, found new finalizers {added:?}"),
                )]));
            }
        }
        r.strategy.defaults(&mut new);
        if r.strategy.tracks_generation()
            && scope == UpdateScope::Main
            && new.get("spec") != old.get("spec")
        {
            let generation = old["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
            new["metadata"]["generation"] = json!(generation);
        }
        match writer {
            Some(writer) => managed_fields::track_update(
                managed_fields::root_type(r),
                Some(old),
                &mut new,
                writer,
                ownership_scope(r, scope),
            ),
            // Server bookkeeping and subresource writes cannot rewrite ownership.
            None if opts.ownership == Ownership::Track => {
                copy_field(&mut new, old, &["metadata", "managedFields"]);
            }
            None => {}
        }
        Ok(new)
    }

    /// Validates an update [`GenericStore::prepare_update`] prepared (and admission mutated).
    fn validate_update(
        &self,
        r: &ResourceDef,
        new: &Value,
        old: &Value,
        scope: UpdateScope,
    ) -> Result<(), ApiError> {
        let mut errs = self.validate(r, new);
        if scope == UpdateScope::Main {
            errs.extend(r.strategy.validate_update(new, old));
        }
        if !errs.is_empty() {
            return Err(self.invalid(r, new, &errs));
        }
        Ok(())
    }

    /// The object a server-side apply creates when there is none yet (created by the caller,
    /// with [`Ownership::Applied`]).
    pub fn apply_new(
        &self,
        r: &'static ResourceDef,
        name: &str,
        opts: &WriteOptions,
        config: &Value,
        force: bool,
    ) -> Result<Value, ApiError> {
        let scope = UpdateScope::Main;
        let mut object = managed_fields::apply(
            r,
            None,
            config,
            &writer(r, opts, scope),
            force,
            ownership_scope(r, scope),
        )?;
        name_from_url(&mut object, name)?;
        Ok(object)
    }

    /// Server-side apply onto an existing object (404 when there is none: the caller then
    /// creates the object [`GenericStore::apply_new`] gives).
    #[allow(clippy::too_many_arguments)] // reason: every input of one apply, named
    pub async fn apply(
        &self,
        r: &'static ResourceDef,
        namespace: Option<&str>,
        name: &str,
        scope: UpdateScope,
        opts: &WriteOptions,
        config: &Value,
        force: bool,
    ) -> Result<Written, ApiError> {
        let writer = writer(r, opts, scope);
        let applied = WriteOptions {
            ownership: Ownership::Applied,
            ..opts.clone()
        };
        let ownership = ownership_scope(r, scope);
        self.guaranteed_update(r, namespace, name, scope, &applied, |live| {
            managed_fields::apply(r, Some(live), config, &writer, force, ownership)
        })
        .await
    }

    /// Deletes an object. With finalizers it is only marked (`deletionTimestamp`) and the last
    /// finalizer's removal deletes it. Returns the object and whether it is gone.
    pub async fn delete(
        &self,
        r: &'static ResourceDef,
        namespace: Option<&str>,
        name: &str,
        options: &Value,
        dry_run: bool,
    ) -> Result<(Value, bool), ApiError> {
        let (obj, gone) = self
            .delete_stored(r, namespace, name, options, dry_run)
            .await?;
        Ok((served(r, obj), gone))
    }

    /// Whether a Node of that name exists (graceful pod deletion needs someone to finish it).
    async fn node_exists(&self, node: &str) -> Result<bool, ApiError> {
        let nodes = super::resource_table::lookup("", "v1", "nodes").expect("nodes are served");
        match self.get_kv(nodes, None, node).await {
            Ok(_) => Ok(true),
            Err(e) if e.code == 404 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Stores a deletion mark with compare-and-swap on `revision`: the marked object as
    /// stored (as it would be, on a dry run), or `None` when the object changed meanwhile and
    /// the delete must read it again.
    async fn store_mark(
        &self,
        r: &'static ResourceDef,
        name: &str,
        key: &str,
        revision: Revision,
        mut marked: Value,
        dry_run: bool,
    ) -> Result<Option<Value>, ApiError> {
        if dry_run {
            return Ok(Some(marked));
        }
        match self
            .storage
            .update(key, revision, encode_for_storage(&marked))
            .await
        {
            Ok(kv) => {
                marked["metadata"]["resourceVersion"] = json!(kv.mod_revision.to_string());
                Ok(Some(marked))
            }
            Err(StorageError::Conflict { .. }) => Ok(None),
            Err(e) => Err(ApiError::from_storage(e, r.plural, r.group, name)),
        }
    }

    async fn delete_stored(
        &self,
        r: &'static ResourceDef,
        namespace: Option<&str>,
        name: &str,
        options: &Value,
        dry_run: bool,
    ) -> Result<(Value, bool), ApiError> {
        let key = r.key(namespace, name);
        for _ in 0..16 {
            let kv = self.get_kv(r, namespace, name).await?;
            let obj = decode_stored(&kv)?;
            let preconditions = &options["preconditions"];
            if let Some(uid) = preconditions["uid"].as_str()
                && Some(uid) != meta_str(&obj, "uid")
            {
                return Err(ApiError::conflict(
                    r.plural,
                    r.group,
                    name,
                    &format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                        meta_str(&obj, "uid").unwrap_or("")
                    ),
                ));
            }
            if let Some(rv) = preconditions["resourceVersion"].as_str()
                && rv != kv.mod_revision.to_string()
            {
                return Err(ApiError::conflict(
                    r.plural,
                    r.group,
                    name,
                    &format!(
                        "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                        kv.mod_revision
                    ),
                ));
            }
            let deleting = !obj["metadata"]["deletionTimestamp"].is_null();
            if let Some(graceful) = r.strategy.graceful_delete(&obj, options)
                && self.node_exists(&graceful.node).await?
            {
                // Marked only; a later delete may shorten the grace period, never lengthen it.
                let current = obj["metadata"]["deletionGracePeriodSeconds"].as_i64();
                if deleting && current.is_some_and(|c| c <= graceful.seconds) {
                    return Ok((obj, false));
                }
                let mut marked = obj.clone();
                let until = Timestamp::now() + jiff::SignedDuration::from_secs(graceful.seconds);
                marked["metadata"]["deletionTimestamp"] = json!(rfc3339(until));
                marked["metadata"]["deletionGracePeriodSeconds"] = json!(graceful.seconds);
                let finalizers = finalizers_on_delete(r, &obj, options)?;
                if !finalizers.is_empty() {
                    marked["metadata"]["finalizers"] = json!(finalizers);
                }
                if !deleting && let Some(g) = marked["metadata"]["generation"].as_i64() {
                    marked["metadata"]["generation"] = json!(g + 1);
                }
                match self
                    .store_mark(r, name, &key, kv.mod_revision, marked, dry_run)
                    .await?
                {
                    Some(marked) => return Ok((marked, false)),
                    None => continue,
                }
            }
            let finalizers = finalizers_on_delete(r, &obj, options)?;
            let has_finalizers = !finalizers.is_empty() || r.strategy.pending_finalizers(&obj);
            if has_finalizers {
                let mut marked = obj.clone();
                if finalizers.is_empty() {
                    if let Some(meta) = marked["metadata"].as_object_mut() {
                        meta.remove("finalizers");
                    }
                } else {
                    marked["metadata"]["finalizers"] = json!(finalizers);
                }
                if deleting
                    && marked["metadata"]["deletionGracePeriodSeconds"]
                        .as_i64()
                        .is_some_and(|g| g > 0)
                {
                    // The grace period ends now; the finalizers alone still hold the object.
                    marked["metadata"]["deletionGracePeriodSeconds"] = json!(0);
                    marked["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
                }
                if deleting && marked == obj {
                    return Ok((obj, false));
                }
                if !deleting {
                    marked["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
                    marked["metadata"]["deletionGracePeriodSeconds"] = json!(0);
                    if let Some(g) = marked["metadata"]["generation"].as_i64() {
                        marked["metadata"]["generation"] = json!(g + 1);
                    }
                    r.strategy.prepare_for_delete(&mut marked);
                }
                match self
                    .store_mark(r, name, &key, kv.mod_revision, marked, dry_run)
                    .await?
                {
                    Some(marked) => return Ok((marked, false)),
                    None => continue,
                }
            }
            if dry_run {
                return Ok((obj, true));
            }
            match self.storage.delete(&key, Some(kv.mod_revision)).await {
                Ok(_) => return Ok((obj, true)),
                Err(StorageError::Conflict { .. }) => continue,
                Err(e) => return Err(ApiError::from_storage(e, r.plural, r.group, name)),
            }
        }
        Err(retries_exhausted(r, name))
    }

    /// Watches a resource from `from` (exclusive); `None` first sends the current state as
    /// ADDED events. Objects that start or stop matching the selectors arrive as ADDED/DELETED.
    pub async fn watch(
        &self,
        r: &'static ResourceDef,
        namespace: Option<String>,
        from: Option<Revision>,
        labels: LabelSelector,
        fields: FieldSelector,
    ) -> Result<BoxStream<'static, WatchItem>, ApiError> {
        let events = self
            .watch_stored(r, namespace, from, labels, fields)
            .await?;
        Ok(match &r.conversion {
            Some(c) => {
                let from_storage = c.from_storage;
                events
                    .map(move |item| item.map_object(from_storage))
                    .boxed()
            }
            None => events,
        })
    }

    async fn watch_stored(
        &self,
        r: &'static ResourceDef,
        namespace: Option<String>,
        from: Option<Revision>,
        labels: LabelSelector,
        fields: FieldSelector,
    ) -> Result<BoxStream<'static, WatchItem>, ApiError> {
        let prefix = match namespace.as_deref().filter(|_| r.namespaced) {
            Some(ns) => format!("{}{ns}/", r.key_prefix()),
            None => r.key_prefix(),
        };
        // The initial state must hold every acknowledged write, as a consistent list does.
        let cache_ready = match (&self.cache, from) {
            (Some(cache), None) => cache.wait_for(self.storage.current_revision()).await,
            (Some(_), Some(_)) => true,
            (None, _) => false,
        };
        if cache_ready
            && let Some(cache) = &self.cache
            && let Some(resource) = cache.resource(&r.key_prefix())
        {
            let applied = cache.applied();
            let (labels, fields) = (labels.clone(), fields.clone());
            let matches =
                move |obj: &Value| labels.matches(obj) && fields.matches(obj, r.strategy.as_ref());
            let compacted = self.storage.compacted_revision();
            if let Some(stream) = resource.watch(prefix.clone(), from, applied, compacted, matches)
            {
                return Ok(stream);
            }
        }
        let (initial, start) = match from {
            Some(rv) => (Vec::new(), rv),
            None => {
                let page = self
                    .list(
                        r,
                        namespace.as_deref(),
                        &ListOptions {
                            labels: labels.clone(),
                            fields: fields.clone(),
                            ..Default::default()
                        },
                    )
                    .await?;
                let revision = page.resource_version;
                let mut items: Vec<WatchItem> =
                    page.items.into_iter().map(WatchItem::Added).collect();
                items.push(WatchItem::InitialEnd(revision));
                (items, revision)
            }
        };
        let events = match self.storage.watch(&prefix, start).await {
            Ok(events) => events,
            Err(StorageError::Compacted {
                requested,
                compacted,
            }) => {
                let err = ApiError::expired(format!(
                    "too old resource version: {requested} ({compacted})"
                ));
                return Ok(futures::stream::iter(vec![WatchItem::Error(err)]).boxed());
            }
            Err(e) => return Err(ApiError::from_storage(e, r.plural, r.group, "")),
        };
        let matches =
            move |obj: &Value| labels.matches(obj) && fields.matches(obj, r.strategy.as_ref());
        let live = events
            .map(move |event| match event {
                Ok(event) => convert_event(&event, &matches),
                Err(StorageError::Compacted {
                    requested,
                    compacted,
                }) => Some(WatchItem::Error(ApiError::expired(format!(
                    "too old resource version: {requested} ({compacted})"
                )))),
                Err(e) => Some(WatchItem::Error(ApiError::internal(format!(
                    "watch ended: {e}"
                )))),
            })
            .filter_map(futures::future::ready)
            .scan(false, |ended, item| {
                // Nothing follows an error.
                if *ended {
                    return futures::future::ready(None);
                }
                *ended = matches!(item, WatchItem::Error(_));
                futures::future::ready(Some(item))
            });
        Ok(futures::stream::iter(initial).chain(live).boxed())
    }

    pub fn current_revision(&self) -> Revision {
        self.storage.current_revision()
    }
}

fn convert_event(event: &Event, matches: &impl Fn(&Value) -> bool) -> Option<WatchItem> {
    let obj = match decode_stored(&event.kv) {
        Ok(obj) => obj,
        Err(e) => return Some(WatchItem::Error(e)),
    };
    let prev_matched = event
        .prev
        .as_ref()
        .and_then(|p| decode_stored(p).ok())
        .is_some_and(|p| matches(&p));
    match event.kind {
        EventKind::Delete => prev_matched.then_some(WatchItem::Deleted(obj)),
        EventKind::Put => match (prev_matched, matches(&obj)) {
            (false, true) => Some(WatchItem::Added(obj)),
            (true, true) => Some(WatchItem::Modified(obj)),
            (true, false) => Some(WatchItem::Deleted(obj)),
            (false, false) => None,
        },
    }
}

/// Five characters from the alphabet the real server uses for generated names.
fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..5)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Gives an object the name on the URL; a different name in the object is a 400.
fn name_from_url(obj: &mut Value, name: &str) -> Result<(), ApiError> {
    match meta_str(obj, "name") {
        Some(n) if n != name => Err(ApiError::bad_request(format!(
            "the name of the object ({n}) does not match the name on the URL ({name})"
        ))),
        _ => {
            obj["metadata"]["name"] = json!(name);
            Ok(())
        }
    }
}

/// `old` with only `path` taken from `new` (and, for a server-side apply, the managed fields
/// the apply computed): what a subresource write may change.
fn old_with(old: &Value, new: &Value, path: &[&str], opts: &WriteOptions) -> Value {
    let mut kept = old.clone();
    copy_field(&mut kept, new, path);
    if opts.ownership == Ownership::Applied {
        copy_field(&mut kept, new, &["metadata", "managedFields"]);
    }
    kept
}

/// The garbage collector's finalizers a delete asks for: `orphan` for the Orphan policy (or
/// `orphanDependents: true`), `foregroundDeletion` for Foreground; a Background delete clears
/// both. Other finalizers stay. Returns the object's finalizers after the delete.
fn finalizers_on_delete(
    r: &ResourceDef,
    obj: &Value,
    options: &Value,
) -> Result<Vec<String>, ApiError> {
    const ORPHAN: &str = "orphan";
    const FOREGROUND: &str = "foregroundDeletion";
    let mut finalizers: Vec<String> = obj["metadata"]["finalizers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f.as_str().map(str::to_owned))
        .collect();
    let policy = options["propagationPolicy"].as_str();
    let orphan_dependents = options["orphanDependents"].as_bool();
    if policy.is_some() && orphan_dependents.is_some() {
        return Err(ApiError::invalid(
            "DeleteOptions",
            "meta.k8s.io",
            "",
            &[FieldError::invalid(
                "propagationPolicy",
                &json!(policy),
                "orphanDependents and deletionPropagation cannot be both set",
            )],
        ));
    }
    let policy = match (policy, orphan_dependents) {
        (Some(p), _) => p,
        (None, Some(true)) => "Orphan",
        (None, Some(false)) => "Background",
        // An object already being deleted keeps the policy it was deleted with.
        (None, None) if !obj["metadata"]["deletionTimestamp"].is_null() => return Ok(finalizers),
        (None, None) if r.strategy.orphans_by_default() => "Orphan",
        (None, None) => "Background",
    };
    finalizers.retain(|f| f != ORPHAN && f != FOREGROUND);
    match policy {
        "Orphan" => finalizers.push(ORPHAN.into()),
        "Foreground" => finalizers.push(FOREGROUND.into()),
        _ => {}
    }
    Ok(finalizers)
}

/// Sets `path` in `into` to its value in `from`, or removes it there when `from` has none.
fn copy_field(into: &mut Value, from: &Value, path: &[&str]) {
    match path.iter().try_fold(from, |v, key| v.get(*key)) {
        Some(value) => set_path(into, path, value.clone()),
        None => {
            let (last, parents) = path.split_last().expect("a non-empty path");
            if let Some(parent) = parents
                .iter()
                .try_fold(&mut *into, |v, key| v.get_mut(*key))
                .and_then(Value::as_object_mut)
            {
                parent.remove(*last);
            }
        }
    }
}

/// Sets a field on a JSON object, creating the object if needed.
pub fn set_path(obj: &mut Value, path: &[&str], value: Value) {
    let mut cur = obj;
    for (i, key) in path.iter().enumerate() {
        if !cur.is_object() {
            *cur = Value::Object(Map::new());
        }
        if i + 1 == path.len() {
            cur[*key] = value;
            return;
        }
        cur = &mut cur[*key];
    }
}

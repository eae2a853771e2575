//! Field ownership: `metadata.managedFields` on every write, and server-side apply.
//!
//! Every create, update and patch records the fields it set or changed under its field
//! manager (operation `Update`) and takes them from whoever owned them before. An apply
//! (operation `Apply`) merges the applied configuration into the live object, removes the
//! fields the same manager applied last time and no longer does (unless someone else owns
//! them), and fails with a `FieldManagerConflict` 409 when it would change a field another
//! manager owns, unless forced. Clients may rewrite `managedFields` themselves (kubectl's
//! client-side to server-side apply upgrade does).
//!
//! [`field_set`] holds paths and sets in the `FieldsV1` form, [`typed`] the schema-directed
//! walks; this module owns the managers and the two operations.

pub mod field_set;
pub mod typed;

use jiff::Timestamp;
use kube_core::response::{StatusCause, StatusDetails};
use serde_json::{Map, Value, json};

use crate::catalog;
use crate::endpoints::status_error::ApiError;
use crate::registry::resource_table::ResourceDef;
use field_set::{FieldSet, Path};
use typed::Type;

/// The annotation client-side apply keeps its last configuration in.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// `Apply` or `Update`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Operation {
    Apply,
    Update,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// One entry of `metadata.managedFields`.
#[derive(Debug, Clone, PartialEq)]
pub struct Manager {
    pub manager: String,
    pub operation: Operation,
    pub api_version: String,
    pub time: Option<String>,
    pub subresource: String,
    pub fields: FieldSet,
}

impl Manager {
    /// Whether two entries belong to the same manager. Update entries are kept per API
    /// version; an applier has one entry whatever version it applies in.
    fn same_as(&self, other: &Manager) -> bool {
        self.manager == other.manager
            && self.operation == other.operation
            && self.subresource == other.subresource
            && (self.operation == Operation::Apply || self.api_version == other.api_version)
    }

    /// How conflict messages name the manager.
    fn describe(&self) -> String {
        let mut out = format!("{:?}", self.manager);
        if !self.subresource.is_empty() {
            out.push_str(&format!(" with subresource {:?}", self.subresource));
        }
        if self.operation == Operation::Update {
            out.push_str(&format!(" using {}", self.api_version));
            if let Some(time) = &self.time {
                out.push_str(&format!(" at {time}"));
            }
        }
        out
    }
}

/// Who is writing: the field manager, the subresource written through and the API version
/// of the request.
#[derive(Debug, Clone)]
pub struct Writer {
    pub manager: String,
    pub subresource: &'static str,
    pub api_version: String,
}

impl Writer {
    fn entry(&self, operation: Operation, fields: FieldSet) -> Manager {
        Manager {
            manager: self.manager.clone(),
            operation,
            api_version: self.api_version.clone(),
            time: Some(now()),
            subresource: self.subresource.to_owned(),
            fields,
        }
    }
}

fn now() -> String {
    Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The schema root for a resource's objects.
pub fn root_type(r: &ResourceDef) -> Type {
    match catalog::message(&(r.types.schema_name)()) {
        Some(m) => Type::root(m),
        None => Type::Untyped,
    }
}

/// Paths no manager ever owns: identity and system metadata.
fn stripped() -> FieldSet {
    let mut set = FieldSet::new();
    for path in [
        &["f:apiVersion"][..],
        &["f:kind"],
        &["f:metadata"],
        &["f:metadata", "f:name"],
        &["f:metadata", "f:namespace"],
        &["f:metadata", "f:creationTimestamp"],
        &["f:metadata", "f:selfLink"],
        &["f:metadata", "f:uid"],
        &["f:metadata", "f:clusterName"],
        &["f:metadata", "f:generation"],
        &["f:metadata", "f:managedFields"],
        &["f:metadata", "f:resourceVersion"],
    ] {
        let path: Path = path.iter().map(|e| (*e).to_owned()).collect();
        set.insert(&path);
    }
    set
}

/// Which part of the object a write may own: the main resource never owns status, the status
/// subresource owns nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Main { has_status: bool },
    Status,
}

fn within_scope(set: FieldSet, scope: Scope) -> FieldSet {
    let status: Path = vec![field_set::field("status")];
    match scope {
        Scope::Main { has_status: true } => {
            let mut ignored = FieldSet::new();
            ignored.insert(&status);
            set.recursive_difference(&ignored)
        }
        Scope::Main { has_status: false } => set,
        Scope::Status => set.restricted_to(&status),
    }
    .difference(&stripped())
}

/// Reads `metadata.managedFields`. `Ok(None)` is the "reset" form, a list of one empty entry.
pub fn decode(object: &Value) -> Result<Option<Vec<Manager>>, String> {
    let Some(entries) = object["metadata"].get("managedFields") else {
        return Ok(Some(Vec::new()));
    };
    let entries = match entries {
        Value::Null => return Ok(Some(Vec::new())),
        Value::Array(a) => a,
        other => return Err(format!("managedFields must be a list, found {other}")),
    };
    if entries.len() == 1 && entries[0].as_object().is_some_and(Map::is_empty) {
        return Ok(None);
    }
    let mut out: Vec<Manager> = Vec::with_capacity(entries.len());
    for entry in entries {
        let text = |field: &str| entry[field].as_str().unwrap_or("").to_owned();
        let operation = match entry["operation"].as_str() {
            Some("Apply") => Operation::Apply,
            Some("Update") => Operation::Update,
            other => {
                return Err(format!(
                    "operation must be Apply or Update, found {other:?}"
                ));
            }
        };
        match entry["fieldsType"].as_str() {
            None | Some("FieldsV1") => {}
            Some(other) => return Err(format!("fieldsType must be FieldsV1, found {other:?}")),
        }
        let fields = match entry.get("fieldsV1") {
            None | Some(Value::Null) => FieldSet::new(),
            Some(v) => FieldSet::from_fields_v1(v)?,
        };
        let manager = Manager {
            manager: text("manager"),
            operation,
            api_version: text("apiVersion"),
            time: entry["time"].as_str().map(str::to_owned),
            subresource: text("subresource"),
            fields,
        };
        if out.iter().any(|m| m.same_as(&manager)) {
            return Err(format!(
                "duplicate entry for manager {}",
                manager.describe()
            ));
        }
        out.push(manager);
    }
    Ok(Some(out))
}

/// Writes `metadata.managedFields`, ordered as Kubernetes orders them (Apply before Update,
/// then by time, manager, version and subresource); none at all removes the field.
pub fn encode(object: &mut Value, mut managers: Vec<Manager>) {
    managers.retain(|m| !m.fields.is_empty());
    managers.sort_by(|a, b| {
        (
            a.operation,
            &a.time,
            &a.manager,
            &a.api_version,
            &a.subresource,
        )
            .cmp(&(
                b.operation,
                &b.time,
                &b.manager,
                &b.api_version,
                &b.subresource,
            ))
    });
    let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    if managers.is_empty() {
        meta.remove("managedFields");
        return;
    }
    let entries: Vec<Value> = managers
        .into_iter()
        .map(|m| {
            let mut entry = json!({
                "manager": m.manager,
                "operation": m.operation.as_str(),
                "apiVersion": m.api_version,
                "fieldsType": "FieldsV1",
                "fieldsV1": m.fields.to_fields_v1(),
            });
            if let Some(time) = m.time {
                entry["time"] = json!(time);
            }
            if !m.subresource.is_empty() {
                entry["subresource"] = json!(m.subresource);
            }
            entry
        })
        .collect();
    meta.insert("managedFields".into(), Value::Array(entries));
}

fn without_managed_fields(object: &Value) -> Value {
    let mut out = object.clone();
    if let Some(meta) = out.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    out
}

/// Records an `Update`-operation write (create, update or non-apply patch) of `new` over
/// `old` (absent for a create). Managed fields the client wrote into `new` are taken as they
/// are (unless written through a subresource); otherwise the old ones carry over.
pub fn track_update(
    root: Type,
    old: Option<&Value>,
    new: &mut Value,
    writer: &Writer,
    scope: Scope,
) {
    let from_client = if scope == Scope::Status {
        Err(String::new())
    } else {
        decode(new)
    };
    let mut managers = match from_client {
        Ok(None) => Vec::new(),
        Ok(Some(m)) if !m.is_empty() => m,
        _ => old
            .and_then(|o| decode(o).ok().flatten())
            .unwrap_or_default(),
    };
    let old_plain = old.map(without_managed_fields);
    let new_plain = without_managed_fields(new);
    let comparison = match typed::compare(old_plain.as_ref(), Some(&new_plain), root) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "managed fields not updated: objects do not fit the schema");
            encode(new, managers);
            return;
        }
    };
    let changed = within_scope(comparison.changed(), scope);
    let removed = comparison.removed;
    for m in &mut managers {
        m.fields = m.fields.difference(&changed).difference(&removed);
    }
    if !changed.is_empty() {
        let entry = writer.entry(Operation::Update, changed);
        match managers.iter_mut().find(|m| m.same_as(&entry)) {
            Some(previous) => {
                previous.fields = previous.fields.union(&entry.fields);
                previous.time = entry.time;
            }
            None => managers.push(entry),
        }
        cap_update_managers(&mut managers);
    }
    encode(new, managers);
}

/// Most Update entries an object keeps; older ones are folded into one, as the real server
/// does, so writers that each touch an object once cannot grow it without bound.
const MAX_UPDATE_MANAGERS: usize = 10;

/// The entry older Update entries are folded into.
const ANCIENT_CHANGES: &str = "ancient-changes";

fn cap_update_managers(managers: &mut Vec<Manager>) {
    let is_ancient = |m: &Manager| m.manager == ANCIENT_CHANGES && m.operation == Operation::Update;
    while managers
        .iter()
        .filter(|m| m.operation == Operation::Update)
        .count()
        > MAX_UPDATE_MANAGERS
    {
        // The oldest other Update entry (no time counts as oldest) goes into the fold.
        let Some(oldest) = (0..managers.len())
            .filter(|i| managers[*i].operation == Operation::Update && !is_ancient(&managers[*i]))
            .min_by(|a, b| managers[*a].time.cmp(&managers[*b].time))
        else {
            return;
        };
        let oldest = managers.remove(oldest);
        match managers.iter_mut().find(|m| is_ancient(m)) {
            Some(ancient) => {
                ancient.fields = ancient.fields.union(&oldest.fields);
                ancient.time = ancient.time.clone().max(oldest.time);
            }
            None => managers.push(Manager {
                manager: ANCIENT_CHANGES.into(),
                operation: Operation::Update,
                api_version: oldest.api_version,
                time: oldest.time,
                subresource: String::new(),
                fields: oldest.fields,
            }),
        }
    }
}

/// A server-side apply of `config` (already decoded) onto `live` (absent: the apply creates).
/// Returns the new object with its managed fields.
pub fn apply(
    r: &ResourceDef,
    live: Option<&Value>,
    config: &Value,
    writer: &Writer,
    force: bool,
    scope: Scope,
) -> Result<Value, ApiError> {
    check_config(r, config)?;
    let root = root_type(r);
    let mut managers = match live.map(decode) {
        Some(Ok(Some(m))) => m,
        _ => Vec::new(),
    };
    let live_plain = live.map(without_managed_fields);
    if let Some(live) = &live_plain
        && managers.is_empty()
    {
        // An object nobody has managed yet: its fields belong to a stand-in manager, so an
        // apply that changes them reports a conflict instead of silently taking them.
        if let Ok(all) = typed::compare(None, Some(live), root) {
            let fields = within_scope(all.added, scope);
            managers.push(Manager {
                manager: "before-first-apply".into(),
                operation: Operation::Update,
                api_version: writer.api_version.clone(),
                time: None,
                subresource: String::new(),
                fields,
            });
        }
    }
    let typed_error = |e: String| {
        ApiError::bad_request(format!(
            "failed to create typed patch object ({}, Kind={}): {e}",
            r.api_version(),
            r.kind
        ))
    };
    let applied = within_scope(typed::field_set(config, root).map_err(typed_error)?, scope);
    let empty = json!({});
    let mut merged = typed::merge(Some(live_plain.as_ref().unwrap_or(&empty)), config, root)
        .map_err(typed_error)?;
    let entry = writer.entry(Operation::Apply, applied.clone());
    let position = managers.iter().position(|m| m.same_as(&entry));
    let (last, previous_time) = match position {
        Some(i) => {
            let old = std::mem::replace(&mut managers[i], entry);
            (old.fields, old.time)
        }
        None => {
            managers.push(entry);
            (FieldSet::new(), None)
        }
    };
    let applier = position.unwrap_or(managers.len() - 1);
    let kept = managers
        .iter()
        .fold(FieldSet::new(), |all, m| all.union(&m.fields));
    typed::prune(&mut merged, &last, &kept, root);
    let comparison =
        typed::compare(live_plain.as_ref(), Some(&merged), root).map_err(typed_error)?;
    let changed = within_scope(comparison.changed(), scope);
    let conflicts: Vec<(usize, Vec<Path>)> = managers
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != applier)
        .map(|(i, m)| (i, m.fields.intersection(&changed).members()))
        .filter(|(_, paths)| !paths.is_empty())
        .collect();
    if !force && !conflicts.is_empty() {
        let allowed = live_plain
            .as_ref()
            .filter(|_| writer.manager.starts_with("kubectl"))
            .and_then(|live| last_applied_unchanged(live, root));
        let all_allowed = allowed.as_ref().is_some_and(|allowed| {
            conflicts
                .iter()
                .all(|(_, paths)| paths.iter().all(|p| allowed.contains(p)))
        });
        if !all_allowed {
            return Err(conflict_error(&managers, &conflicts));
        }
    }
    for (i, m) in managers.iter_mut().enumerate() {
        if i != applier {
            m.fields = m
                .fields
                .difference(&changed)
                .difference(&comparison.removed);
        }
    }
    if writer.manager == "kubectl"
        && let Some(live) = &live_plain
        && live["metadata"]["annotations"].get(LAST_APPLIED).is_some()
    {
        // Keep client-side apply's record in step, so a later `kubectl apply` diffs against
        // what was applied last.
        let mut record = config.clone();
        if let Some(annotations) = record["metadata"]
            .get_mut("annotations")
            .and_then(Value::as_object_mut)
        {
            annotations.remove(LAST_APPLIED);
        }
        merged["metadata"]["annotations"][LAST_APPLIED] = json!(record.to_string());
    }
    if live_plain.as_ref() == Some(&merged) && managers[applier].fields == last {
        managers[applier].time = previous_time;
    }
    encode(&mut merged, managers);
    Ok(merged)
}

/// The fields of the client-side apply record whose live values still equal it: conflicts on
/// those are the client-side to server-side apply upgrade, not a real disagreement.
fn last_applied_unchanged(live: &Value, root: Type) -> Option<FieldSet> {
    let text = live["metadata"]["annotations"][LAST_APPLIED].as_str()?;
    let record: Value = serde_json::from_str(text).ok()?;
    let fields = typed::field_set(&record, root).ok()?;
    let comparison = typed::compare(Some(&record), Some(live), root).ok()?;
    Some(fields.difference(&comparison.modified))
}

fn check_config(r: &ResourceDef, config: &Value) -> Result<(), ApiError> {
    if !config.is_object() {
        return Err(ApiError::bad_request(
            "error decoding YAML: an apply configuration must be an object",
        ));
    }
    let api_version = r.api_version();
    let given = config["apiVersion"].as_str().unwrap_or("");
    if given != api_version {
        return Err(ApiError::bad_request(format!(
            "Incorrect version specified in apply patch. Specified patch version: {given}, expected: {api_version}"
        )));
    }
    let kind = config["kind"].as_str().unwrap_or("");
    if kind != r.kind {
        return Err(ApiError::bad_request(format!(
            "Incorrect kind specified in apply patch. Specified patch kind: {kind}, expected: {}",
            r.kind
        )));
    }
    if config["metadata"].get("managedFields").is_some() {
        return Err(ApiError::bad_request("metadata.managedFields must be nil"));
    }
    Ok(())
}

fn conflict_error(managers: &[Manager], conflicts: &[(usize, Vec<Path>)]) -> ApiError {
    let mut by_manager: Vec<(String, Vec<String>)> = conflicts
        .iter()
        .map(|(i, paths)| {
            (
                managers[*i].describe(),
                paths.iter().map(|p| field_set::display(p)).collect(),
            )
        })
        .collect();
    by_manager.sort();
    let total: usize = by_manager.iter().map(|(_, p)| p.len()).sum();
    let message = if total == 1 {
        let (who, paths) = &by_manager[0];
        format!(
            "Apply failed with 1 conflict: conflict with {who}: {}",
            paths[0]
        )
    } else {
        let mut lines = Vec::new();
        for (who, paths) in &by_manager {
            lines.push(format!("conflicts with {who}:"));
            lines.extend(paths.iter().map(|p| format!("- {p}")));
        }
        format!("Apply failed with {total} conflicts: {}", lines.join("\n"))
    };
    let causes = by_manager
        .iter()
        .flat_map(|(who, paths)| {
            paths.iter().map(move |p| StatusCause {
                reason: "FieldManagerConflict".into(),
                message: format!("conflict with {who}"),
                field: p.clone(),
            })
        })
        .collect();
    let mut err = ApiError::new(409, "Conflict", message);
    err.details = Some(Box::new(StatusDetails {
        name: String::new(),
        group: String::new(),
        kind: String::new(),
        uid: String::new(),
        causes,
        retry_after_seconds: 0,
    }));
    err
}

#[cfg(test)]
mod tests;

//! The Priority admission plugin. A new pod's `spec.priority` and `spec.preemptionPolicy` come
//! from the PriorityClass it names; a pod naming none gets the global default class (and its
//! name), or priority 0 and PreemptLowerPriority when no class is the default. A class that
//! does not exist, or a priority or preemption policy the pod sets that disagrees with its
//! class, refuses the pod. Updates keep what creation set. Only one PriorityClass may be the
//! global default.

use serde_json::{Map, Value, json};

use super::{Attributes, Operation};
use crate::endpoints::status_error::ApiError;
use crate::registry::generic_store::{GenericStore, ListOptions};
use crate::registry::resource_table::{self, ResourceDef};

/// A pod's priority when it names no class and no class is the global default.
const DEFAULT_PRIORITY: i64 = 0;

const PREEMPT_LOWER_PRIORITY: &str = "PreemptLowerPriority";

fn priority_classes() -> &'static ResourceDef {
    resource_table::lookup("scheduling.k8s.io", "v1", "priorityclasses")
        .expect("priority classes are served")
}

/// What a pod's class gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Resolved {
    /// The class the pod ends up naming; empty for none.
    class_name: String,
    priority: i64,
    preemption_policy: Option<String>,
}

impl Resolved {
    fn from_class(class: &Value) -> Resolved {
        Resolved {
            class_name: class["metadata"]["name"].as_str().unwrap_or("").to_owned(),
            priority: class["value"].as_i64().unwrap_or(DEFAULT_PRIORITY),
            preemption_policy: class["preemptionPolicy"].as_str().map(str::to_owned),
        }
    }

    /// Neither a named class nor a global default.
    fn no_class() -> Resolved {
        Resolved {
            class_name: String::new(),
            priority: DEFAULT_PRIORITY,
            preemption_policy: Some(PREEMPT_LOWER_PRIORITY.to_owned()),
        }
    }
}

/// The global default class; of several (written concurrently), the one of lowest value.
fn global_default(classes: &[Value]) -> Option<&Value> {
    classes
        .iter()
        .filter(|c| c["globalDefault"] == json!(true))
        .min_by_key(|c| c["value"].as_i64().unwrap_or(DEFAULT_PRIORITY))
}

async fn list_classes(store: &GenericStore) -> Result<Vec<Value>, ApiError> {
    let page = store
        .list(priority_classes(), None, &ListOptions::default())
        .await
        .map_err(|e| {
            ApiError::internal(format!(
                "failed to get default priority class: {}",
                e.message
            ))
        })?;
    Ok(page.items)
}

/// Looks up the class a new pod names, or the global default when it names none.
async fn resolve(
    store: &GenericStore,
    attrs: &Attributes<'_>,
    class_name: &str,
) -> Result<Resolved, ApiError> {
    if class_name.is_empty() {
        let classes = list_classes(store).await?;
        return Ok(global_default(&classes).map_or_else(Resolved::no_class, Resolved::from_class));
    }
    match store.get(priority_classes(), None, class_name).await {
        Ok(class) => Ok(Resolved::from_class(&class)),
        // A name no object can have (400) is not found either.
        Err(e) if matches!(e.code, 400 | 404) => Err(attrs.forbidden(&format!(
            "no PriorityClass with name {class_name} was found"
        ))),
        Err(e) => Err(ApiError::internal(format!(
            "failed to get PriorityClass with name {class_name}: {}",
            e.message
        ))),
    }
}

/// Gives a new pod's spec what its class resolved to, refusing a priority or preemption
/// policy of the pod's own that disagrees.
fn assign(
    attrs: &Attributes<'_>,
    spec: &mut Map<String, Value>,
    resolved: Resolved,
) -> Result<(), ApiError> {
    let given = |field: &str| spec.get(field).filter(|v| !v.is_null()).cloned();
    if let Some(priority) = given("priority")
        && priority.as_i64() != Some(resolved.priority)
    {
        return Err(attrs.forbidden(&format!(
            "the integer value of priority ({priority}) must not be provided in pod spec; priority admission controller computed {} from the given PriorityClass name",
            resolved.priority
        )));
    }
    if let Some(policy) = &resolved.preemption_policy
        && let Some(own) = given("preemptionPolicy")
        && own.as_str() != Some(policy)
    {
        let own = own.as_str().map_or_else(|| own.to_string(), str::to_owned);
        return Err(attrs.forbidden(&format!(
            "the string value of PreemptionPolicy ({own}) must not be provided in pod spec; priority admission controller computed {policy} from the given PriorityClass name"
        )));
    }
    if !resolved.class_name.is_empty() {
        spec.insert("priorityClassName".into(), json!(resolved.class_name));
    }
    spec.insert("priority".into(), json!(resolved.priority));
    if let Some(policy) = resolved.preemption_policy {
        spec.insert("preemptionPolicy".into(), json!(policy));
    }
    Ok(())
}

/// An update that leaves out the priority or preemption policy keeps the pod's.
fn keep_on_update(spec: &mut Map<String, Value>, old_spec: &Value) {
    for field in ["priority", "preemptionPolicy"] {
        let old = &old_spec[field];
        if spec.get(field).is_none_or(Value::is_null) && !old.is_null() {
            spec.insert(field.into(), old.clone());
        }
    }
}

/// Resolves a new pod's priority from its class; keeps it on updates.
pub async fn admit_pod(
    store: &GenericStore,
    attrs: &Attributes<'_>,
    pod: &mut Value,
) -> Result<(), ApiError> {
    // A pod without a spec fails validation; there is nothing to resolve.
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    match attrs.operation {
        Operation::Update { old } => {
            keep_on_update(spec, &old["spec"]);
            Ok(())
        }
        Operation::Create => {
            let class_name = spec
                .get("priorityClassName")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            let resolved = resolve(store, attrs, &class_name).await?;
            assign(attrs, spec, resolved)
        }
    }
}

/// The default class a write of `class` would join as a second default, if any: creating a
/// default while one exists, or making a class the default while another is.
fn default_conflict<'a>(
    operation: &Operation<'_>,
    class: &Value,
    classes: &'a [Value],
) -> Option<&'a str> {
    if class["globalDefault"] != json!(true) {
        return None;
    }
    let current = global_default(classes)?["metadata"]["name"]
        .as_str()
        .unwrap_or("");
    match operation {
        Operation::Create => Some(current),
        Operation::Update { .. } => (current != class["metadata"]["name"]).then_some(current),
    }
}

/// Refuses a second global default class.
pub async fn validate_priority_class(
    store: &GenericStore,
    attrs: &Attributes<'_>,
    class: &Value,
) -> Result<(), ApiError> {
    if class["globalDefault"] != json!(true) {
        return Ok(());
    }
    let classes = list_classes(store).await?;
    match default_conflict(&attrs.operation, class, &classes) {
        Some(current) => Err(attrs.forbidden(&format!(
            "PriorityClass {current} is already marked as default. Only one default can exist"
        ))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use apiserver_storage::embedded::EmbeddedStorage;

    use super::*;
    use crate::registry::generic_store::WriteOptions;

    fn pods() -> &'static ResourceDef {
        resource_table::lookup("", "v1", "pods").unwrap()
    }

    fn create_pod(name: &str) -> Attributes<'_> {
        Attributes {
            resource: pods(),
            name,
            operation: Operation::Create,
        }
    }

    fn class(name: &str, value: i64, global_default: bool) -> Value {
        json!({"metadata": {"name": name}, "value": value, "globalDefault": global_default,
               "preemptionPolicy": "PreemptLowerPriority"})
    }

    fn spec(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn the_default_class_is_the_lowest_of_the_defaults() {
        let classes = [
            class("a", 10, false),
            class("b", 7, true),
            class("c", 5, true),
        ];
        assert_eq!(global_default(&classes).unwrap()["metadata"]["name"], "c");
        assert!(global_default(&classes[..1]).is_none());
    }

    #[test]
    fn a_pod_gets_its_class_priority_and_policy() {
        let attrs = create_pod("p");
        let mut s = spec(json!({"priorityClassName": "high"}));
        let mut never = class("high", 1000, false);
        never["preemptionPolicy"] = json!("Never");
        assign(&attrs, &mut s, Resolved::from_class(&never)).unwrap();
        assert_eq!(
            Value::Object(s),
            json!({"priorityClassName": "high", "priority": 1000, "preemptionPolicy": "Never"})
        );

        let mut none = spec(json!({}));
        assign(&attrs, &mut none, Resolved::no_class()).unwrap();
        assert_eq!(
            Value::Object(none),
            json!({"priority": 0, "preemptionPolicy": "PreemptLowerPriority"})
        );
    }

    #[test]
    fn a_pod_may_only_repeat_what_its_class_gives() {
        let attrs = create_pod("p");
        let high = Resolved::from_class(&class("high", 1000, false));
        let mut same = spec(json!({"priority": 1000, "preemptionPolicy": "PreemptLowerPriority"}));
        assert!(assign(&attrs, &mut same, high.clone()).is_ok());

        let mut other = spec(json!({"priority": 5}));
        let err = assign(&attrs, &mut other, high.clone()).unwrap_err();
        assert_eq!(err.code, 403);
        assert_eq!(
            err.message,
            "pods \"p\" is forbidden: the integer value of priority (5) must not be provided in pod spec; priority admission controller computed 1000 from the given PriorityClass name"
        );

        let mut never = spec(json!({"preemptionPolicy": "Never"}));
        let err = assign(&attrs, &mut never, high).unwrap_err();
        assert_eq!(
            err.message,
            "pods \"p\" is forbidden: the string value of PreemptionPolicy (Never) must not be provided in pod spec; priority admission controller computed PreemptLowerPriority from the given PriorityClass name"
        );
    }

    #[test]
    fn updates_keep_the_priority_creation_set() {
        let old = json!({"priority": 1000, "preemptionPolicy": "Never"});
        let mut s = spec(json!({"priorityClassName": "high"}));
        keep_on_update(&mut s, &old);
        assert_eq!(s["priority"], 1000);
        assert_eq!(s["preemptionPolicy"], "Never");
        let mut changed = spec(json!({"priority": 7}));
        keep_on_update(&mut changed, &old);
        assert_eq!(changed["priority"], 7, "validation refuses the change");
    }

    #[test]
    fn only_one_class_is_the_global_default() {
        let classes = [class("first", 5, true), class("other", 1, false)];
        let create = Operation::Create;
        assert_eq!(
            default_conflict(&create, &class("second", 1, true), &classes),
            Some("first")
        );
        assert_eq!(
            default_conflict(&create, &class("second", 1, false), &classes),
            None
        );
        let old = class("first", 5, true);
        let update = Operation::Update { old: &old };
        assert_eq!(
            default_conflict(&update, &class("first", 5, true), &classes),
            None
        );
        assert_eq!(
            default_conflict(&update, &class("other", 1, true), &classes),
            Some("first")
        );
        assert_eq!(
            default_conflict(&create, &class("x", 1, true), &classes[1..]),
            None
        );
    }

    /// Through the generic store's create, on real storage.
    #[tokio::test]
    async fn pods_created_through_the_store_are_admitted() {
        let dir = tempfile::tempdir().unwrap();
        let store = GenericStore::new(Arc::new(EmbeddedStorage::open(dir.path()).unwrap()));
        let opts = WriteOptions::default();
        let pod = |meta: Value, spec: Value| {
            let mut spec = spec;
            spec["containers"] = json!([{"name": "c", "image": "busybox"}]);
            json!({"metadata": meta, "spec": spec})
        };
        let create = |body: Value| store.create(pods(), Some("default"), body, &opts);

        let plain = create(pod(json!({"name": "plain"}), json!({})))
            .await
            .unwrap()
            .object;
        assert_eq!(plain["spec"]["priority"], 0);
        assert_eq!(plain["spec"]["preemptionPolicy"], "PreemptLowerPriority");
        assert!(plain["spec"].get("priorityClassName").is_none());
        assert_eq!(plain["spec"]["tolerations"].as_array().unwrap().len(), 2);

        let err = create(pod(
            json!({"generateName": "web-"}),
            json!({"priorityClassName": "foo"}),
        ))
        .await
        .unwrap_err();
        assert_eq!(
            err.message,
            "pods \"web-\" is forbidden: no PriorityClass with name foo was found"
        );

        let pcs = priority_classes();
        for c in [class("high", 1000, false), class("low", 10, true)] {
            store.create(pcs, None, c, &opts).await.unwrap();
        }
        let err = store
            .create(pcs, None, class("second", 1, true), &opts)
            .await
            .unwrap_err();
        assert_eq!(
            err.message,
            "priorityclasses.scheduling.k8s.io \"second\" is forbidden: PriorityClass low is already marked as default. Only one default can exist"
        );
        let high = create(pod(
            json!({"name": "high"}),
            json!({"priorityClassName": "high"}),
        ))
        .await
        .unwrap()
        .object;
        assert_eq!(high["spec"]["priority"], 1000);
        let defaulted = create(pod(json!({"name": "defaulted"}), json!({})))
            .await
            .unwrap()
            .object;
        assert_eq!(defaulted["spec"]["priorityClassName"], "low");
        assert_eq!(defaulted["spec"]["priority"], 10);
    }
}

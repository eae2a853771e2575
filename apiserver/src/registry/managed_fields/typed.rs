//! Schema-directed walks over JSON objects for server-side apply: which fields an object sets
//! ([`field_set`]), merging an applied configuration into a live object ([`merge`]), what
//! changed between two objects ([`compare`]) and removing fields an applier gave up
//! ([`prune`]).
//!
//! The schema is the build-time catalog of the built-in types. A field's shape follows the
//! upstream OpenAPI rules: `x-kubernetes-list-type` (`atomic`, `set`, `map` with
//! `x-kubernetes-list-map-keys`); without it a `merge` patch strategy makes a list keyed by its
//! patch merge key (or a set, for scalars) and anything else is atomic; `+structType=atomic` /
//! `+mapType=atomic` make a struct or map a single value. Types whose JSON form is a scalar
//! (quantities, times, int-or-string) are leaves; raw extensions are deduced from the value.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::{Map, Value};

use super::field_set::{self, Element, FieldSet, Path};
use crate::catalog::{self, CatalogField, CatalogMessage};

/// Where a value sits in the schema.
#[derive(Debug, Clone, Copy)]
pub enum Type {
    /// A whole message, e.g. the root object.
    Message(&'static CatalogMessage),
    /// A declared field of a message.
    Field(&'static CatalogField),
    /// An item of a repeated field or a value of a map field.
    Item(&'static CatalogField),
    /// A leaf with no schema of its own.
    Scalar,
    /// No schema: objects are granular maps, everything else a leaf.
    Untyped,
}

/// How a list's items are identified.
#[derive(Debug, Clone, Copy)]
enum ListKeys {
    /// Scalars identified by their value.
    Set,
    /// Objects identified by these fields.
    Map(&'static [&'static str]),
}

/// The shape a value has under its type.
#[derive(Debug, Clone, Copy)]
enum Shape {
    /// Replaced as a whole: scalars, atomic lists, atomic structs and maps.
    Leaf,
    Struct(&'static CatalogMessage),
    Map(Type),
    List(ListKeys, Type),
    Untyped,
}

impl Type {
    pub fn root(message: &'static CatalogMessage) -> Type {
        Type::Message(message)
    }

    fn shape(self) -> Shape {
        match self {
            Type::Scalar => Shape::Leaf,
            Type::Untyped => Shape::Untyped,
            Type::Message(m) => message_shape(m),
            Type::Field(f) => {
                if f.repeated {
                    let keys = match f.list_type {
                        "atomic" => return Shape::Leaf,
                        "set" => ListKeys::Set,
                        "map" if !f.list_map_keys.is_empty() => ListKeys::Map(f.list_map_keys),
                        _ if f.patch_strategy.split(',').any(|s| s == "merge") => {
                            if f.patch_merge_key.is_empty() {
                                ListKeys::Set
                            } else {
                                ListKeys::Map(std::slice::from_ref(&f.patch_merge_key))
                            }
                        }
                        _ => return Shape::Leaf,
                    };
                    Shape::List(keys, Type::Item(f))
                } else if f.kind.starts_with("map:") {
                    if f.map_type == "atomic" {
                        Shape::Leaf
                    } else {
                        Shape::Map(Type::Item(f))
                    }
                } else if f.kind == "message" {
                    if f.struct_type == "atomic" || f.map_type == "atomic" {
                        Shape::Leaf
                    } else {
                        field_message(f).map_or(Shape::Untyped, message_shape)
                    }
                } else {
                    Shape::Leaf
                }
            }
            Type::Item(f) => {
                if f.kind == "message" || f.kind.ends_with(",message") {
                    field_message(f).map_or(Shape::Untyped, message_shape)
                } else {
                    Shape::Leaf
                }
            }
        }
    }
}

fn field_message(f: &CatalogField) -> Option<&'static CatalogMessage> {
    catalog::message(f.message)
}

fn message_shape(m: &'static CatalogMessage) -> Shape {
    let short = m.name.rsplit('.').next().unwrap_or("");
    match short {
        "intorstring" | "quantity" | "quantityvalue" | "time" | "microtime" | "duration"
        | "extravalue" | "verbs" => Shape::Leaf,
        "rawextension"
        | "fieldsv1"
        | "json"
        | "jsonschemapropsorarray"
        | "jsonschemapropsorbool"
        | "jsonschemapropsorstringarray" => Shape::Untyped,
        _ if m.atomic => Shape::Leaf,
        _ => Shape::Struct(m),
    }
}

/// The declared field of `m` for a JSON property name, also for names the protobuf form
/// spells differently (`x-kubernetes-list-type`, `$ref`).
fn struct_field(m: &'static CatalogMessage, name: &str) -> Option<&'static CatalogField> {
    m.field(name).or_else(|| {
        let plain: String = name.chars().filter(|c| *c != '-' && *c != '$').collect();
        m.field(&plain)
    })
}

/// The type of a child of a granular object, or `None` for an undeclared struct field.
fn child_type(shape: Shape, name: &str) -> Option<(Type, bool)> {
    match shape {
        Shape::Struct(m) => match struct_field(m, name) {
            Some(f) => Some((Type::Field(f), true)),
            // Every object carries these, though the protobuf messages do not declare them.
            None if matches!(name, "apiVersion" | "kind") => Some((Type::Scalar, true)),
            None => None,
        },
        Shape::Map(item) => Some((item, false)),
        _ => Some((Type::Untyped, false)),
    }
}

/// Whether a granular object walk applies to this value under this shape.
fn granular(shape: Shape, value: &Value) -> bool {
    match shape {
        Shape::Struct(_) | Shape::Map(_) => true,
        Shape::Untyped => value.is_object(),
        _ => false,
    }
}

fn render(path: &[Element]) -> String {
    if path.is_empty() {
        ".".to_owned()
    } else {
        field_set::display(path)
    }
}

/// The element naming a list item.
fn item_element(keys: ListKeys, item: &Value, path: &[Element]) -> Result<Element, String> {
    let names: &[&str] = match keys {
        ListKeys::Set => return Ok(field_set::set_value(item)),
        ListKeys::Map(names) => names,
    };
    let object = item.as_object().ok_or_else(|| {
        format!(
            "{}: expected an object in a keyed list, found {item}",
            render(path)
        )
    })?;
    let mut keys = Map::new();
    for name in names {
        match object.get(*name) {
            Some(v) if !v.is_null() => {
                keys.insert((*name).to_owned(), v.clone());
            }
            // The one key field with a schema default: ports' protocol.
            _ if *name == "protocol" => {
                keys.insert("protocol".into(), Value::String("TCP".into()));
            }
            _ => {
                return Err(format!(
                    "{}: associative list with keys has an element that omits key field {name:?} (and doesn't have default value)",
                    render(path)
                ));
            }
        }
    }
    Ok(field_set::key(&keys))
}

/// The items of a list with their elements; `unique` refuses duplicate keys.
fn index_items<'a>(
    keys: ListKeys,
    list: &'a [Value],
    path: &[Element],
    unique: bool,
) -> Result<Vec<(Element, &'a Value)>, String> {
    let mut out: Vec<(Element, &Value)> = Vec::with_capacity(list.len());
    let mut seen = HashSet::with_capacity(list.len());
    for item in list {
        let element = item_element(keys, item, path)?;
        if !seen.insert(element.clone()) {
            if unique {
                let mut at = path.to_vec();
                at.push(element);
                return Err(format!("{}: duplicate entries for key", render(&at)));
            }
            continue;
        }
        out.push((element, item));
    }
    Ok(out)
}

/// The fields an applied configuration sets: every leaf, list item and map entry, and struct
/// fields given as null or `{}`.
pub fn field_set(value: &Value, ty: Type) -> Result<FieldSet, String> {
    let mut out = FieldSet::new();
    walk_set(value, ty, &mut Vec::new(), &mut out)?;
    Ok(out)
}

fn walk_set(value: &Value, ty: Type, path: &mut Path, out: &mut FieldSet) -> Result<(), String> {
    let shape = ty.shape();
    if value.is_null() {
        out.insert(path);
        return Ok(());
    }
    match shape {
        Shape::Leaf => out.insert(path),
        Shape::Untyped if !value.is_object() => out.insert(path),
        Shape::Struct(_) | Shape::Map(_) | Shape::Untyped => {
            let object = value
                .as_object()
                .ok_or_else(|| format!("{}: expected an object, found {value}", render(path)))?;
            for (name, child) in object {
                path.push(field_set::field(name));
                let (child_ty, declared) = child_type(shape, name)
                    .ok_or_else(|| format!("{}: field not declared in schema", render(path)))?;
                walk_set(child, child_ty, path, out)?;
                let empty_object = child.as_object().is_some_and(Map::is_empty);
                if !declared || empty_object {
                    out.insert(path);
                }
                path.pop();
            }
        }
        Shape::List(keys, item_ty) => {
            let list = value
                .as_array()
                .ok_or_else(|| format!("{}: expected a list, found {value}", render(path)))?;
            for (element, item) in index_items(keys, list, path, true)? {
                path.push(element);
                walk_set(item, item_ty, path, out)?;
                out.insert(path);
                path.pop();
            }
        }
    }
    Ok(())
}

/// Merges an applied configuration into the live object. Nulls in the configuration remove.
pub fn merge(live: Option<&Value>, config: &Value, ty: Type) -> Result<Value, String> {
    merge_at(live, config, ty, &mut Vec::new())
}

fn merge_at(
    live: Option<&Value>,
    config: &Value,
    ty: Type,
    path: &mut Path,
) -> Result<Value, String> {
    let shape = ty.shape();
    if config.is_null() {
        return Ok(Value::Null);
    }
    if granular(shape, config) {
        let Some(object) = config.as_object() else {
            return Err(format!(
                "{}: expected an object, found {config}",
                render(path)
            ));
        };
        let mut out = live.and_then(Value::as_object).cloned().unwrap_or_default();
        for (name, child) in object {
            path.push(field_set::field(name));
            let (child_ty, _) = child_type(shape, name)
                .ok_or_else(|| format!("{}: field not declared in schema", render(path)))?;
            if child.is_null() {
                out.remove(name);
            } else {
                let merged = merge_at(out.get(name), child, child_ty, path)?;
                out.insert(name.clone(), merged);
            }
            path.pop();
        }
        return Ok(Value::Object(out));
    }
    let Shape::List(keys, item_ty) = shape else {
        return Ok(config.clone());
    };
    let config_items = config
        .as_array()
        .ok_or_else(|| format!("{}: expected a list, found {config}", render(path)))?;
    let empty = Vec::new();
    let live_items = live.and_then(Value::as_array).unwrap_or(&empty);
    let live_index = index_items(keys, live_items, path, false)?;
    let config_index = index_items(keys, config_items, path, true)?;
    let live_by_element: HashMap<&Element, &Value> =
        live_index.iter().map(|(e, v)| (e, *v)).collect();
    let find_live = |element: &Element| live_by_element.get(element).copied();
    let configured: HashSet<&Element> = config_index.iter().map(|(e, _)| e).collect();
    let in_config = |element: &Element| configured.contains(element);
    // Live items the configuration does not name keep their places; the configuration's items
    // come in its own order, each one no later than the live item it matches.
    let mut out = Vec::with_capacity(live_index.len().max(config_index.len()));
    let mut emitted = vec![false; config_index.len()];
    let mut next = 0;
    let merge_item = |i: usize, out: &mut Vec<Value>, path: &mut Path| {
        let (element, item) = &config_index[i];
        path.push(element.clone());
        let merged = merge_at(find_live(element), item, item_ty, path);
        path.pop();
        out.push(merged?);
        Ok::<(), String>(())
    };
    for (element, item) in &live_index {
        if !in_config(element) {
            out.push((*item).clone());
            continue;
        }
        while next < config_index.len() {
            let i = next;
            next += 1;
            if emitted[i] {
                continue;
            }
            emitted[i] = true;
            merge_item(i, &mut out, path)?;
            if config_index[i].0 == *element {
                break;
            }
        }
    }
    for (i, done) in emitted.iter().enumerate() {
        if !done {
            merge_item(i, &mut out, path)?;
        }
    }
    Ok(Value::Array(out))
}

/// What changed from one object to another, as field sets.
#[derive(Debug, Default, Clone)]
pub struct Comparison {
    pub added: FieldSet,
    pub modified: FieldSet,
    pub removed: FieldSet,
}

impl Comparison {
    /// Added or modified: the fields a write takes ownership of.
    pub fn changed(&self) -> FieldSet {
        self.added.union(&self.modified)
    }
}

/// Compares two versions of an object. A path present on only one side is added or removed
/// along with everything under it; a leaf present on both with different values is modified.
pub fn compare(old: Option<&Value>, new: Option<&Value>, ty: Type) -> Result<Comparison, String> {
    let mut out = Comparison::default();
    compare_at(old, new, ty, &mut Vec::new(), &mut out)?;
    Ok(out)
}

fn compare_at(
    old: Option<&Value>,
    new: Option<&Value>,
    ty: Type,
    path: &mut Path,
    out: &mut Comparison,
) -> Result<(), String> {
    let (old, new) = match (old.filter(|v| !v.is_null()), new.filter(|v| !v.is_null())) {
        (None, None) => return Ok(()),
        pair => pair,
    };
    match (old, new) {
        (None, Some(_)) => out.added.insert(path),
        (Some(_), None) => out.removed.insert(path),
        _ => {}
    }
    let shape = ty.shape();
    let present = old.or(new).expect("one side is present");
    if granular(shape, present) {
        let empty = Map::new();
        let (Some(a), Some(b)) = (
            old.map_or(Some(&empty), Value::as_object),
            new.map_or(Some(&empty), Value::as_object),
        ) else {
            if old.is_some() && new.is_some() && old != new {
                out.modified.insert(path);
            }
            return Ok(());
        };
        let mut names: Vec<&String> = a.keys().chain(b.keys()).collect();
        names.sort();
        names.dedup();
        for name in names {
            path.push(field_set::field(name));
            let (child_ty, _) = child_type(shape, name).unwrap_or((Type::Untyped, false));
            compare_at(a.get(name), b.get(name), child_ty, path, out)?;
            path.pop();
        }
        return Ok(());
    }
    if let Shape::List(keys, item_ty) = shape {
        let empty = Vec::new();
        let (Some(a), Some(b)) = (
            old.map_or(Some(&empty), Value::as_array),
            new.map_or(Some(&empty), Value::as_array),
        ) else {
            if old.is_some() && new.is_some() && old != new {
                out.modified.insert(path);
            }
            return Ok(());
        };
        let a = index_items(keys, a, path, false)?;
        let b = index_items(keys, b, path, false)?;
        // Each element with its item on either side, in element order.
        let mut pairs: BTreeMap<&Element, (Option<&Value>, Option<&Value>)> = BTreeMap::new();
        for (element, item) in &a {
            pairs.entry(element).or_default().0 = Some(*item);
        }
        for (element, item) in &b {
            pairs.entry(element).or_default().1 = Some(*item);
        }
        for (element, (x, y)) in pairs {
            path.push(element.clone());
            compare_at(x, y, item_ty, path, out)?;
            path.pop();
        }
        return Ok(());
    }
    if let (Some(a), Some(b)) = (old, new)
        && a != b
    {
        out.modified.insert(path);
    }
    Ok(())
}

/// Removes from `object` what the applier owned last time (`last`) and owns no more: every
/// member of `last` that no manager in `kept` owns. A struct field stays while anything under
/// it is owned; list items and map entries go as a whole. Maps and lists left empty go too.
pub fn prune(object: &mut Value, last: &FieldSet, kept: &FieldSet, ty: Type) {
    prune_at(object, last, kept, ty, &mut Vec::new());
}

/// Returns whether the value is now an empty map or list that pruning emptied.
fn prune_at(
    value: &mut Value,
    last: &FieldSet,
    kept: &FieldSet,
    ty: Type,
    path: &mut Path,
) -> bool {
    let shape = ty.shape();
    let Some(last_here) = last.node(path) else {
        return false;
    };
    if last_here.is_empty() {
        return false;
    }
    if granular(shape, value) {
        let Some(object) = value.as_object_mut() else {
            return false;
        };
        let before = object.len();
        let names: Vec<String> = object.keys().cloned().collect();
        for name in names {
            path.push(field_set::field(&name));
            let (child_ty, declared) = child_type(shape, &name).unwrap_or((Type::Untyped, false));
            let owned_still = if declared {
                kept.has_prefix(path)
            } else {
                kept.contains(path)
            };
            if last.contains(path) && !owned_still {
                object.remove(&name);
            } else if let Some(child) = object.get_mut(&name)
                && prune_at(child, last, kept, child_ty, path)
            {
                object.remove(&name);
            }
            path.pop();
        }
        return matches!(shape, Shape::Map(_) | Shape::Untyped) && before > 0 && object.is_empty();
    }
    if let Shape::List(keys, item_ty) = shape {
        let Some(items) = value.as_array_mut() else {
            return false;
        };
        let before = items.len();
        let mut kept_items = Vec::with_capacity(items.len());
        for mut item in std::mem::take(items) {
            let Ok(element) = item_element(keys, &item, path) else {
                kept_items.push(item);
                continue;
            };
            path.push(element);
            let gone = last.contains(path) && !kept.contains(path);
            if !gone {
                // An item emptied inside is still an item.
                prune_at(&mut item, last, kept, item_ty, path);
                kept_items.push(item);
            }
            path.pop();
        }
        *items = kept_items;
        return before > 0 && items.is_empty();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment() -> Type {
        Type::root(catalog::message("io.k8s.api.apps.v1.Deployment").unwrap())
    }

    fn p(elements: &[&str]) -> Path {
        elements.iter().map(|e| (*e).to_owned()).collect()
    }

    #[test]
    fn applied_set_matches_kubernetes_shape() {
        let config = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "nginx",
                        "ports": [{"containerPort": 80}]}]}
                }
            }
        });
        let set = field_set(&config, deployment()).unwrap();
        let wire = set.to_fields_v1();
        assert_eq!(
            wire["f:spec"]["f:selector"],
            json!({}),
            "LabelSelector is atomic"
        );
        assert_eq!(wire["f:metadata"]["f:labels"], json!({"f:app": {}}));
        let container =
            &wire["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"web\"}"];
        assert_eq!(container["."], json!({}));
        assert_eq!(
            container["f:ports"]["k:{\"containerPort\":80,\"protocol\":\"TCP\"}"]["f:containerPort"],
            json!({})
        );
    }

    #[test]
    fn undeclared_fields_and_duplicate_keys_are_refused() {
        let err = field_set(&json!({"spec": {"replicaz": 1}}), deployment()).unwrap_err();
        assert_eq!(err, ".spec.replicaz: field not declared in schema");
        let dup = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "a", "image": "x"}, {"name": "a", "image": "y"}]}}}});
        assert!(
            field_set(&dup, deployment())
                .unwrap_err()
                .contains("duplicate entries")
        );
    }

    #[test]
    fn merge_keeps_live_items_and_orders_by_config() {
        let live = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "a", "image": "a1"}, {"name": "sidecar", "image": "s"}, {"name": "b", "image": "b1"}]}}}});
        let config = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "b", "image": "b2"}, {"name": "a", "image": "a2"}, {"name": "c", "image": "c"}]}}}});
        let merged = merge(Some(&live), &config, deployment()).unwrap();
        let names: Vec<&str> = merged["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["b", "a", "sidecar", "c"]);
        assert_eq!(
            merged["spec"]["template"]["spec"]["containers"][0]["image"],
            "b2"
        );
        let nulled = merge(
            Some(&json!({"spec": {"replicas": 3, "paused": true}})),
            &json!({"spec": {"replicas": null}}),
            deployment(),
        )
        .unwrap();
        assert_eq!(nulled, json!({"spec": {"paused": true}}));
    }

    #[test]
    fn compare_reports_added_modified_removed() {
        let old = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"replicas": 1}});
        let new =
            json!({"metadata": {"labels": {"a": "2"}, "annotations": {"x": "y"}}, "spec": {}});
        let c = compare(Some(&old), Some(&new), deployment()).unwrap();
        assert!(c.modified.contains(&p(&["f:metadata", "f:labels", "f:a"])));
        assert!(c.added.contains(&p(&["f:metadata", "f:annotations"])));
        assert!(
            c.added
                .contains(&p(&["f:metadata", "f:annotations", "f:x"]))
        );
        assert!(c.removed.contains(&p(&["f:spec", "f:replicas"])));
        assert!(!c.added.contains(&p(&["f:metadata"])));
    }

    #[test]
    fn prune_removes_only_what_nobody_owns() {
        let mut object =
            json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"replicas": 3}});
        let mut last = FieldSet::new();
        last.insert(&p(&["f:metadata", "f:labels", "f:a"]));
        last.insert(&p(&["f:metadata", "f:labels", "f:b"]));
        last.insert(&p(&["f:spec", "f:replicas"]));
        let mut kept = FieldSet::new();
        kept.insert(&p(&["f:spec", "f:replicas"]));
        kept.insert(&p(&["f:metadata", "f:labels", "f:b"]));
        prune(&mut object, &last, &kept, deployment());
        assert_eq!(
            object,
            json!({"metadata": {"labels": {"b": "2"}}, "spec": {"replicas": 3}})
        );
        let mut none = FieldSet::new();
        none.insert(&p(&["f:spec", "f:replicas"]));
        prune(&mut object, &last, &none, deployment());
        assert_eq!(object, json!({"metadata": {}, "spec": {"replicas": 3}}));
    }
}

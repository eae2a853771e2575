//! Field paths and sets of them, in the `FieldsV1` wire form of `metadata.managedFields`.
//!
//! A path element is kept in its encoded form, which is also its key in `FieldsV1`:
//! `f:<name>` (a struct field or map key), `k:<json object>` (an item of a list keyed by
//! `x-kubernetes-list-map-keys`, key fields sorted by name), `v:<json value>` (an item of a set
//! list) and `i:<index>` (a list position). A set is a trie of elements; a node is a *member*
//! when the path ending there is in the set, and in `FieldsV1` a member with children says so
//! with a `"."` entry.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{Map, Value};

/// One path element in its encoded form.
pub type Element = String;

/// The element of a struct field or map key.
pub fn field(name: &str) -> Element {
    format!("f:{name}")
}

/// The element of a keyed list item; `keys` are the item's key fields.
pub fn key(keys: &Map<String, Value>) -> Element {
    // serde_json's map is ordered by key, so this is the canonical form.
    format!("k:{}", Value::Object(keys.clone()))
}

/// The element of a set item.
pub fn set_value(value: &Value) -> Element {
    format!("v:{value}")
}

/// A path, as its elements.
pub type Path = Vec<Element>;

/// Renders a path the way conflict messages show it: `.spec.containers[name="web"].image`.
pub fn display(path: &[Element]) -> String {
    let mut out = String::new();
    for element in path {
        let (kind, rest) = element.split_at(2.min(element.len()));
        match kind {
            "f:" => {
                out.push('.');
                out.push_str(rest);
            }
            "k:" => {
                let keys: Map<String, Value> = serde_json::from_str(rest).unwrap_or_default();
                let parts: Vec<String> = keys.iter().map(|(k, v)| format!("{k}={v}")).collect();
                let _ = write!(out, "[{}]", parts.join(","));
            }
            "v:" => {
                let _ = write!(out, "[={rest}]");
            }
            "i:" => {
                let _ = write!(out, "[{rest}]");
            }
            _ => out.push_str(element),
        }
    }
    out
}

/// A set of field paths.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSet {
    /// Whether the path ending at this node is in the set (never true for the root).
    member: bool,
    children: BTreeMap<Element, FieldSet>,
}

impl FieldSet {
    pub fn new() -> FieldSet {
        FieldSet::default()
    }

    pub fn is_empty(&self) -> bool {
        !self.member && self.children.is_empty()
    }

    /// Adds `path` as a member.
    pub fn insert(&mut self, path: &[Element]) {
        let mut node = self;
        for element in path {
            node = node.children.entry(element.clone()).or_default();
        }
        if !path.is_empty() {
            node.member = true;
        }
    }

    /// Whether `path` is a member.
    pub fn contains(&self, path: &[Element]) -> bool {
        self.node(path)
            .is_some_and(|n| n.member && !path.is_empty())
    }

    /// Whether `path` or anything under it is a member.
    pub fn has_prefix(&self, path: &[Element]) -> bool {
        self.node(path).is_some_and(|n| !n.is_empty())
    }

    /// The subtree at `path`, if any.
    pub fn node(&self, path: &[Element]) -> Option<&FieldSet> {
        let mut node = self;
        for element in path {
            node = node.children.get(element)?;
        }
        Some(node)
    }

    pub fn union(&self, other: &FieldSet) -> FieldSet {
        let mut out = self.clone();
        out.union_in_place(other);
        out
    }

    fn union_in_place(&mut self, other: &FieldSet) {
        self.member |= other.member;
        for (element, child) in &other.children {
            self.children
                .entry(element.clone())
                .or_default()
                .union_in_place(child);
        }
    }

    /// The members of `self` that are also members of `other`.
    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet {
            member: self.member && other.member,
            children: BTreeMap::new(),
        };
        for (element, child) in &self.children {
            if let Some(theirs) = other.children.get(element) {
                let both = child.intersection(theirs);
                if !both.is_empty() {
                    out.children.insert(element.clone(), both);
                }
            }
        }
        out
    }

    /// The members of `self` that are not members of `other` (children of a removed member
    /// stay unless they are in `other` too).
    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet {
            member: self.member && !other.member,
            children: BTreeMap::new(),
        };
        for (element, child) in &self.children {
            let rest = match other.children.get(element) {
                Some(theirs) => child.difference(theirs),
                None => child.clone(),
            };
            if !rest.is_empty() {
                out.children.insert(element.clone(), rest);
            }
        }
        out
    }

    /// `self` without every member of `other` and everything under those members.
    pub fn recursive_difference(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet {
            member: self.member && !other.member,
            children: BTreeMap::new(),
        };
        for (element, child) in &self.children {
            let rest = match other.children.get(element) {
                Some(theirs) if theirs.member => continue,
                Some(theirs) => child.recursive_difference(theirs),
                None => child.clone(),
            };
            if !rest.is_empty() {
                out.children.insert(element.clone(), rest);
            }
        }
        out
    }

    /// Only the parts of `self` under `path` (kept at their full paths).
    pub fn restricted_to(&self, path: &[Element]) -> FieldSet {
        let mut out = FieldSet::new();
        if let Some(node) = self.node(path) {
            let mut built = node.clone();
            for element in path.iter().rev() {
                let mut parent = FieldSet::new();
                parent.children.insert(element.clone(), built);
                built = parent;
            }
            out = built;
        }
        out
    }

    /// Every member path, in order.
    pub fn members(&self) -> Vec<Path> {
        let mut out = Vec::new();
        self.collect_members(&mut Vec::new(), &mut out);
        out
    }

    fn collect_members(&self, prefix: &mut Path, out: &mut Vec<Path>) {
        if self.member {
            out.push(prefix.clone());
        }
        for (element, child) in &self.children {
            prefix.push(element.clone());
            child.collect_members(prefix, out);
            prefix.pop();
        }
    }

    /// The `FieldsV1` JSON form.
    pub fn to_fields_v1(&self) -> Value {
        let mut map = Map::new();
        if self.member && !self.children.is_empty() {
            map.insert(".".into(), Value::Object(Map::new()));
        }
        for (element, child) in &self.children {
            map.insert(element.clone(), child.to_fields_v1());
        }
        Value::Object(map)
    }

    /// Reads the `FieldsV1` JSON form.
    pub fn from_fields_v1(value: &Value) -> Result<FieldSet, String> {
        let mut set = FieldSet::from_node(value)?;
        set.member = false;
        Ok(set)
    }

    fn from_node(value: &Value) -> Result<FieldSet, String> {
        let map = value
            .as_object()
            .ok_or_else(|| format!("expected an object in FieldsV1, found {value}"))?;
        let mut set = FieldSet {
            member: map.is_empty(),
            children: BTreeMap::new(),
        };
        for (element, child) in map {
            if element == "." {
                set.member = true;
                continue;
            }
            validate_element(element)?;
            let child = FieldSet::from_node(child)?;
            set.children.insert(element.clone(), child);
        }
        Ok(set)
    }
}

fn validate_element(element: &str) -> Result<(), String> {
    let (kind, rest) = element.split_at(2.min(element.len()));
    let ok = match kind {
        "f:" => true,
        "k:" => serde_json::from_str::<Map<String, Value>>(rest).is_ok(),
        "v:" => serde_json::from_str::<Value>(rest).is_ok(),
        "i:" => rest.parse::<usize>().is_ok(),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("invalid path element {element:?} in FieldsV1"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn path(elements: &[&str]) -> Path {
        elements.iter().map(|e| (*e).to_owned()).collect()
    }

    #[test]
    fn fields_v1_round_trips_members_with_children() {
        let wire = json!({
            "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
            "f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {".": {}, "f:image": {}, "f:name": {}}}}
        });
        let set = FieldSet::from_fields_v1(&wire).unwrap();
        assert!(set.contains(&path(&["f:metadata", "f:labels"])));
        assert!(set.contains(&path(&["f:metadata", "f:labels", "f:app"])));
        assert!(!set.contains(&path(&["f:metadata"])));
        assert!(set.contains(&path(&["f:spec", "f:containers", "k:{\"name\":\"web\"}"])));
        assert_eq!(set.to_fields_v1(), wire);
    }

    #[test]
    fn bad_elements_are_refused() {
        assert!(FieldSet::from_fields_v1(&json!({"x:y": {}})).is_err());
        assert!(FieldSet::from_fields_v1(&json!({"k:notjson": {}})).is_err());
        assert!(FieldSet::from_fields_v1(&json!({"f:a": 3})).is_err());
    }

    #[test]
    fn set_algebra() {
        let mut a = FieldSet::new();
        a.insert(&path(&["f:spec", "f:replicas"]));
        a.insert(&path(&["f:spec", "f:paused"]));
        let mut b = FieldSet::new();
        b.insert(&path(&["f:spec", "f:replicas"]));
        assert_eq!(a.intersection(&b), b);
        let d = a.difference(&b);
        assert_eq!(d.members(), vec![path(&["f:spec", "f:paused"])]);
        assert_eq!(d.union(&b), a);
        let mut spec = FieldSet::new();
        spec.insert(&path(&["f:spec"]));
        assert!(a.recursive_difference(&spec).is_empty());
        assert_eq!(a.difference(&spec), a);
        assert_eq!(a.restricted_to(&path(&["f:spec"])), a);
        assert!(a.restricted_to(&path(&["f:status"])).is_empty());
    }

    #[test]
    fn paths_display_like_kubernetes() {
        let keys = json!({"name": "web"});
        let p = vec![
            field("spec"),
            field("containers"),
            key(keys.as_object().unwrap()),
            field("image"),
        ];
        assert_eq!(display(&p), ".spec.containers[name=\"web\"].image");
        let ports = json!({"containerPort": 80, "protocol": "TCP"});
        assert_eq!(
            display(&[field("ports"), key(ports.as_object().unwrap())]),
            ".ports[containerPort=80,protocol=\"TCP\"]"
        );
        assert_eq!(
            display(&[field("finalizers"), set_value(&json!("a"))]),
            ".finalizers[=\"a\"]"
        );
    }
}

//! Printers of `rbac.authorization.k8s.io`: roles and cluster roles show when they were made;
//! bindings show their role and, wide, their subjects.

use serde_json::{Value, json};

use super::{AGE, Column, NAME, Printer, age, col, name, s};

const CREATED_AT: Column = col(
    "Created At",
    "date",
    "CreationTimestamp is a timestamp representing the server time when this object was created.",
    0,
);

fn created_at(o: &Value) -> Value {
    o["metadata"]["creationTimestamp"].clone()
}

pub static ROLES: Printer = Printer {
    columns: &[NAME, CREATED_AT],
    cells: |o, _| vec![name(o), created_at(o)],
};

fn subjects(o: &Value, kind: &str) -> String {
    o["subjects"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|x| s(&x["kind"]) == kind)
        .map(|x| match (kind, s(&x["namespace"])) {
            ("ServiceAccount", ns) => format!("{ns}/{}", s(&x["name"])),
            _ => s(&x["name"]).to_owned(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

const BINDING_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Role",
        "string",
        "RoleRef can reference a Role in the current namespace or a ClusterRole in the global namespace.",
        0,
    ),
    AGE,
    col("Users", "string", "Users in the roleBinding", 1),
    col("Groups", "string", "Groups in the roleBinding", 1),
    col(
        "ServiceAccounts",
        "string",
        "ServiceAccounts in the roleBinding",
        1,
    ),
];

fn binding_cells(o: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let role = format!("{}/{}", s(&o["roleRef"]["kind"]), s(&o["roleRef"]["name"]));
    vec![
        name(o),
        json!(role),
        age(o, now),
        json!(subjects(o, "User")),
        json!(subjects(o, "Group")),
        json!(subjects(o, "ServiceAccount")),
    ]
}

pub static BINDINGS: Printer = Printer {
    columns: BINDING_COLUMNS,
    cells: binding_cells,
};

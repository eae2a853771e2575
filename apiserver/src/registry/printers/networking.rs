//! Printers of `networking.k8s.io`: Ingresses, IngressClasses, NetworkPolicies.

use serde_json::{Value, json};

use super::{AGE, NAME, Printer, age, col, format_selector, load_balancer_addresses, name, s};

pub static INGRESSES: Printer = Printer {
    columns: &[
        NAME,
        col(
            "Class",
            "string",
            "ingressClassName is the name of an IngressClass cluster resource.",
            0,
        ),
        col(
            "Hosts",
            "string",
            "Hosts that incoming requests are matched against before the ingress rule",
            0,
        ),
        col(
            "Address",
            "string",
            "Address is a list containing ingress points for the load-balancer",
            0,
        ),
        col(
            "Ports",
            "string",
            "Ports of TLS configurations that open",
            0,
        ),
        AGE,
    ],
    cells: |o, now| {
        let spec = &o["spec"];
        let class = spec["ingressClassName"].as_str().unwrap_or("<none>");
        let hosts: Vec<&str> = spec["rules"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| r["host"].as_str().unwrap_or("*"))
            .collect();
        let hosts = if hosts.is_empty() {
            "*".to_owned()
        } else {
            hosts.join(",")
        };
        let address = load_balancer_addresses(&o["status"]);
        let ports = if spec["tls"].as_array().is_some_and(|t| !t.is_empty()) {
            "80, 443"
        } else {
            "80"
        };
        vec![
            name(o),
            json!(class),
            json!(hosts),
            json!(address.join(",")),
            json!(ports),
            age(o, now),
        ]
    },
};

pub static INGRESSCLASSES: Printer = Printer {
    columns: &[
        NAME,
        col(
            "Controller",
            "string",
            "Controller that is responsible for handling this class",
            0,
        ),
        col(
            "Parameters",
            "string",
            "A reference to a resource with additional parameters",
            0,
        ),
        AGE,
    ],
    cells: |o, now| {
        let p = &o["spec"]["parameters"];
        let params = if p.is_object() {
            let group = p["apiGroup"]
                .as_str()
                .map(|g| format!(".{g}"))
                .unwrap_or_default();
            format!("{}{group}/{}", s(&p["kind"]), s(&p["name"]))
        } else {
            "<none>".into()
        };
        vec![
            name(o),
            o["spec"]["controller"].clone(),
            json!(params),
            age(o, now),
        ]
    },
};

pub static NETWORKPOLICIES: Printer = Printer {
    columns: &[
        NAME,
        col(
            "Pod-Selector",
            "string",
            "A label selector is a label query over a set of resources.",
            0,
        ),
        AGE,
    ],
    cells: |o, now| {
        vec![
            name(o),
            json!(format_selector(&o["spec"]["podSelector"])),
            age(o, now),
        ]
    },
};

/// The ServiceCIDR and IPAddress objects of the service IP allocator.
pub static SERVICECIDRS: Printer = Printer {
    columns: &[
        NAME,
        col(
            "CIDRs",
            "string",
            "cidrs defines the IP blocks in CIDR notation",
            0,
        ),
        AGE,
    ],
    cells: |o, now| {
        let cidrs: Vec<&str> = o["spec"]["cidrs"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|v: &Value| s(v))
            .collect();
        vec![name(o), json!(cidrs.join(",")), age(o, now)]
    },
};

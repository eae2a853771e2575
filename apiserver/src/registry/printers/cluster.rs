//! Printers of cluster policy and machinery: quotas, limit ranges, pod templates, controller
//! revisions, disruption budgets, priority classes, CSRs, runtime classes, CRDs, webhook and
//! flow-control configurations.

use serde_json::{Value, json};

use super::{
    AGE, Column, NAME, Printer, age, col, containers_and_images, format_labels, human_duration,
    int, name, s,
};

const CREATED_AT: Column = col(
    "Created At",
    "date",
    "CreationTimestamp is a timestamp representing the server time when this object was created.",
    0,
);

pub static CREATED: Printer = Printer {
    columns: &[NAME, CREATED_AT],
    cells: |o, _| vec![name(o), o["metadata"]["creationTimestamp"].clone()],
};

/// `cpu: 0/1, pods: 2/10` for the hard limits selected by `want`.
fn quota_usage(o: &Value, want: impl Fn(&str) -> bool) -> String {
    let hard = o["status"]["hard"]
        .as_object()
        .or(o["spec"]["hard"].as_object());
    let mut keys: Vec<&String> = hard
        .into_iter()
        .flatten()
        .map(|(k, _)| k)
        .filter(|k| want(k))
        .collect();
    keys.sort();
    keys.iter()
        .map(|k| {
            let used = o["status"]["used"][k.as_str()].as_str().unwrap_or("0");
            let limit = hard.and_then(|h| h.get(k.as_str())).map(s).unwrap_or("");
            format!("{k}: {used}/{limit}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub static RESOURCEQUOTAS: Printer = Printer {
    columns: &[
        NAME,
        AGE,
        col(
            "Request",
            "string",
            "Request represents a minimum amount of cpu/memory that a container may consume.",
            0,
        ),
        col(
            "Limit",
            "string",
            "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node.",
            0,
        ),
    ],
    cells: |o, now| {
        vec![
            name(o),
            age(o, now),
            json!(quota_usage(o, |k| !k.starts_with("limits."))),
            json!(quota_usage(o, |k| k.starts_with("limits."))),
        ]
    },
};

pub static PODTEMPLATES: Printer = Printer {
    columns: &[
        col("Template", "string", "The name of the pod template.", 0),
        col(
            "Containers",
            "string",
            "Names of each container in the template.",
            0,
        ),
        col(
            "Images",
            "string",
            "Images referenced by each container in the template.",
            0,
        ),
        col("Pod Labels", "string", "Labels of the pod template.", 0),
    ],
    cells: |o, _| {
        let (names, images) = containers_and_images(&o["template"]["spec"]);
        vec![
            name(o),
            names,
            images,
            json!(format_labels(&o["template"]["metadata"]["labels"])),
        ]
    },
};

pub static CONTROLLERREVISIONS: Printer = Printer {
    columns: &[
        NAME,
        col("Controller", "string", "Controller of the object.", 0),
        col(
            "Revision",
            "integer",
            "Revision indicates the revision of the state represented by Data.",
            0,
        ),
        AGE,
    ],
    cells: |o, now| {
        let owner = o["metadata"]["ownerReferences"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["controller"] == json!(true))
            .map(|r| {
                let group = s(&r["apiVersion"])
                    .split('/')
                    .next()
                    .filter(|_| s(&r["apiVersion"]).contains('/'))
                    .unwrap_or("");
                let kind = s(&r["kind"]).to_lowercase();
                let kind = if group.is_empty() {
                    kind
                } else {
                    format!("{kind}.{group}")
                };
                format!("{kind}/{}", s(&r["name"]))
            })
            .unwrap_or_else(|| "<none>".into());
        vec![
            name(o),
            json!(owner),
            json!(int(&o["revision"])),
            age(o, now),
        ]
    },
};

fn int_or_string(v: &Value) -> String {
    match v {
        Value::Null => "N/A".into(),
        Value::String(t) => t.clone(),
        other => other.to_string(),
    }
}

pub static PODDISRUPTIONBUDGETS: Printer = Printer {
    columns: &[
        NAME,
        col(
            "Min Available",
            "string",
            "The minimum number of pods that must be available simultaneously.  This can be either an integer or a string specifying a percentage, e.g. \"28%\".",
            0,
        ),
        col(
            "Max Unavailable",
            "string",
            "The maximum number of pods that may be unavailable simultaneously.  This can be either an integer or a string specifying a percentage, e.g. \"28%\".",
            0,
        ),
        col(
            "Allowed Disruptions",
            "integer",
            "Number of pod disruptions that are currently allowed.",
            0,
        ),
        AGE,
    ],
    cells: |o, now| {
        vec![
            name(o),
            json!(int_or_string(&o["spec"]["minAvailable"])),
            json!(int_or_string(&o["spec"]["maxUnavailable"])),
            json!(int(&o["status"]["disruptionsAllowed"])),
            age(o, now),
        ]
    },
};

pub static PRIORITYCLASSES: Printer = Printer {
    columns: &[
        NAME,
        col("Value", "integer", "The value of this priority class.", 0),
        col(
            "Global-Default",
            "boolean",
            "globalDefault specifies whether this PriorityClass should be considered as the default priority.",
            0,
        ),
        AGE,
        col(
            "PreemptionPolicy",
            "string",
            "PreemptionPolicy is the Policy for preempting pods with lower priority.",
            0,
        ),
    ],
    cells: |o, now| {
        vec![
            name(o),
            json!(int(&o["value"])),
            json!(o["globalDefault"].as_bool().unwrap_or(false)),
            age(o, now),
            json!(s(&o["preemptionPolicy"])),
        ]
    },
};

pub static CERTIFICATESIGNINGREQUESTS: Printer = Printer {
    columns: &[
        NAME,
        AGE,
        col(
            "SignerName",
            "string",
            "Only one signer name is supported.",
            0,
        ),
        col(
            "Requestor",
            "string",
            "Name of the user that requested the certificate.",
            0,
        ),
        col(
            "RequestedDuration",
            "string",
            "Requested duration of validity of the certificate.",
            0,
        ),
        col(
            "Condition",
            "string",
            "Status of the certificate signing request.",
            0,
        ),
    ],
    cells: |o, now| {
        let mut conditions: Vec<&str> = o["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| s(&c["type"]))
            .collect();
        if !o["status"]["certificate"].is_null() {
            conditions.push("Issued");
        }
        let condition = if conditions.is_empty() {
            "Pending".to_owned()
        } else {
            conditions.join(",")
        };
        let duration = o["spec"]["expirationSeconds"]
            .as_i64()
            .map(human_duration)
            .unwrap_or_else(|| "<none>".into());
        vec![
            name(o),
            age(o, now),
            o["spec"]["signerName"].clone(),
            json!(s(&o["spec"]["username"])),
            json!(duration),
            json!(condition),
        ]
    },
};

pub static RUNTIMECLASSES: Printer = Printer {
    columns: &[
        NAME,
        col(
            "Handler",
            "string",
            "Handler specifies the underlying runtime and configuration that the CRI implementation will use to handle pods of this class.",
            0,
        ),
        AGE,
    ],
    cells: |o, now| vec![name(o), o["handler"].clone(), age(o, now)],
};

pub static WEBHOOKCONFIGURATIONS: Printer = Printer {
    columns: &[
        NAME,
        col(
            "Webhooks",
            "integer",
            "Webhooks is a list of webhooks and the affected resources and operations.",
            0,
        ),
        AGE,
    ],
    cells: |o, now| {
        vec![
            name(o),
            json!(o["webhooks"].as_array().map(Vec::len).unwrap_or(0)),
            age(o, now),
        ]
    },
};

pub static FLOWSCHEMAS: Printer = Printer {
    columns: &[
        NAME,
        col(
            "PriorityLevel",
            "string",
            "priorityLevelConfiguration should reference a PriorityLevelConfiguration in the cluster.",
            0,
        ),
        col(
            "MatchingPrecedence",
            "string",
            "matchingPrecedence is used to choose among the FlowSchemas that match a given request.",
            0,
        ),
        col(
            "DistinguisherMethod",
            "string",
            "distinguisherMethod defines how to compute the flow distinguisher for requests that match this schema.",
            0,
        ),
        AGE,
        col(
            "MissingPL",
            "string",
            "references a broken or non-existent PriorityLevelConfiguration",
            0,
        ),
    ],
    cells: |o, now| {
        let method = o["spec"]["distinguisherMethod"]["type"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| "<none>".into());
        let missing = o["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| s(&c["type"]) == "Dangling")
            .map(|c| s(&c["status"]).to_owned())
            .unwrap_or_else(|| "?".into());
        vec![
            name(o),
            json!(s(&o["spec"]["priorityLevelConfiguration"]["name"])),
            json!(int(&o["spec"]["matchingPrecedence"]).to_string()),
            json!(method),
            age(o, now),
            json!(missing),
        ]
    },
};

pub static PRIORITYLEVELCONFIGURATIONS: Printer = Printer {
    columns: &[
        NAME,
        col(
            "Type",
            "string",
            "type indicates whether this priority level is subject to limitation on request execution.",
            0,
        ),
        col(
            "NominalConcurrencyShares",
            "string",
            "nominalConcurrencyShares contributes to the computation of the NominalConcurrencyLimit.",
            0,
        ),
        col(
            "Queues",
            "string",
            "queues is the number of queues for this priority level.",
            0,
        ),
        col(
            "HandSize",
            "string",
            "handSize is a small positive number that configures the shuffle sharding of requests into queues.",
            0,
        ),
        col(
            "QueueLengthLimit",
            "string",
            "queueLengthLimit is the maximum number of requests allowed to be waiting in a given queue of this priority level at a time.",
            0,
        ),
        AGE,
    ],
    cells: |o, now| {
        let limited = &o["spec"]["limited"];
        let queuing = &limited["limitResponse"]["queuing"];
        let or_dash = |v: &Value| {
            v.as_i64()
                .map(|n| n.to_string())
                .unwrap_or_else(|| "<none>".into())
        };
        vec![
            name(o),
            json!(s(&o["spec"]["type"])),
            json!(or_dash(&limited["nominalConcurrencyShares"])),
            json!(or_dash(&queuing["queues"])),
            json!(or_dash(&queuing["handSize"])),
            json!(or_dash(&queuing["queueLengthLimit"])),
            age(o, now),
        ]
    },
};

pub static VALIDATINGADMISSIONPOLICIES: Printer = Printer {
    columns: &[
        NAME,
        col(
            "Validations",
            "integer",
            "Validations contain CEL expressions which is used to apply the validation.",
            0,
        ),
        col(
            "ParamKind",
            "string",
            "ParamKind specifies the kind of resources used to parameterize this policy",
            0,
        ),
        AGE,
    ],
    cells: |o, now| {
        let pk = &o["spec"]["paramKind"];
        let param = if pk.is_object() {
            format!("{}/{}", s(&pk["apiVersion"]), s(&pk["kind"]))
        } else {
            "<unset>".into()
        };
        vec![
            name(o),
            json!(
                o["spec"]["validations"]
                    .as_array()
                    .map(Vec::len)
                    .unwrap_or(0)
            ),
            json!(param),
            age(o, now),
        ]
    },
};

/// One metric target as kubectl shows it, e.g. `cpu: <unknown>/80%`.
fn hpa_target(metric: &Value, current: &[Value]) -> String {
    let resource = &metric["resource"];
    let name = s(&resource["name"]);
    let now = current
        .iter()
        .find(|c| s(&c["resource"]["name"]) == name)
        .map(|c| &c["resource"]["current"]);
    match s(&resource["target"]["type"]) {
        "Utilization" => {
            let current = now
                .and_then(|c| c["averageUtilization"].as_i64())
                .map(|u| format!("{u}%"))
                .unwrap_or_else(|| "<unknown>".into());
            format!(
                "{name}: {current}/{}%",
                int(&resource["target"]["averageUtilization"])
            )
        }
        _ => {
            let target = resource["target"]["averageValue"]
                .as_str()
                .or(resource["target"]["value"].as_str())
                .unwrap_or("");
            let current = now
                .and_then(|c| c["averageValue"].as_str())
                .unwrap_or("<unknown>");
            format!("{name}: {current}/{target}")
        }
    }
}

fn hpa_cells(o: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let spec = &o["spec"];
    let reference = format!(
        "{}/{}",
        s(&spec["scaleTargetRef"]["kind"]),
        s(&spec["scaleTargetRef"]["name"])
    );
    let current: Vec<Value> = o["status"]["currentMetrics"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    // autoscaling/v2 lists metrics; autoscaling/v1 has one CPU target.
    let targets: Vec<String> = match spec["metrics"].as_array() {
        Some(metrics) => metrics.iter().map(|m| hpa_target(m, &current)).collect(),
        None => spec["targetCPUUtilizationPercentage"]
            .as_i64()
            .map(|t| {
                let current = o["status"]["currentCPUUtilizationPercentage"]
                    .as_i64()
                    .map(|u| format!("{u}%"))
                    .unwrap_or_else(|| "<unknown>".into());
                vec![format!("cpu: {current}/{t}%")]
            })
            .unwrap_or_default(),
    };
    let targets = if targets.is_empty() {
        "<none>".to_owned()
    } else {
        targets.join(", ")
    };
    let min = spec["minReplicas"]
        .as_i64()
        .map(|m| m.to_string())
        .unwrap_or_else(|| "<unset>".into());
    vec![
        name(o),
        json!(reference),
        json!(targets),
        json!(min),
        json!(int(&spec["maxReplicas"])),
        json!(int(&o["status"]["currentReplicas"])),
        age(o, now),
    ]
}

pub static HORIZONTALPODAUTOSCALERS: Printer = Printer {
    columns: &[
        NAME,
        col(
            "Reference",
            "string",
            "reference to scaled resource; horizontal pod autoscaler will learn the current resource consumption and will set the desired number of pods by using its Scale subresource.",
            0,
        ),
        col(
            "Targets",
            "string",
            "metrics contains the specifications for which to use to calculate the desired replica count.",
            0,
        ),
        col(
            "MinPods",
            "string",
            "minReplicas is the lower limit for the number of replicas to which the autoscaler can scale down.",
            0,
        ),
        col(
            "MaxPods",
            "integer",
            "maxReplicas is the upper limit for the number of replicas to which the autoscaler can scale up.",
            0,
        ),
        col(
            "Replicas",
            "integer",
            "currentReplicas is current number of replicas of pods managed by this autoscaler, as last seen by the autoscaler.",
            0,
        ),
        AGE,
    ],
    cells: hpa_cells,
};

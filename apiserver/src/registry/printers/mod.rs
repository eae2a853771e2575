//! Server-side printing: the Table columns and cells of each resource, as the real API
//! server's printers compute them (`kubectl get` shows these). Core and workload kinds live
//! here; other API groups have a file each.

pub mod cluster;
pub mod networking;
pub mod rbac;
pub mod storage;

use jiff::Timestamp;
use serde_json::{Value, json};

/// One Table column.
pub struct Column {
    pub name: &'static str,
    pub ty: &'static str,
    pub format: &'static str,
    pub description: &'static str,
    pub priority: u8,
}

impl Column {
    pub fn to_json(&self) -> Value {
        json!({"name": self.name, "type": self.ty, "format": self.format,
               "description": self.description, "priority": self.priority})
    }
}

/// The columns of a resource and the function computing a row's cells.
pub struct Printer {
    pub columns: &'static [Column],
    pub cells: fn(&Value, Timestamp) -> Vec<Value>,
}

pub(crate) const D_NAME: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
pub(crate) const D_AGE: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";
const D_CONTAINERS: &str = "Names of each container in the template.";
const D_IMAGES: &str = "Images referenced by each container in the template.";

pub(crate) const fn col(
    name: &'static str,
    ty: &'static str,
    description: &'static str,
    priority: u8,
) -> Column {
    Column {
        name,
        ty,
        format: "",
        description,
        priority,
    }
}
pub(crate) const NAME: Column = Column {
    name: "Name",
    ty: "string",
    format: "name",
    description: D_NAME,
    priority: 0,
};
pub(crate) const AGE: Column = col("Age", "string", D_AGE, 0);
pub(crate) const CONTAINERS: Column = col("Containers", "string", D_CONTAINERS, 1);
pub(crate) const IMAGES: Column = col("Images", "string", D_IMAGES, 1);

/// `HumanDuration` of apimachinery: "5m10s", "3h5m", "2d3h", "<invalid>".
pub fn human_duration(seconds: i64) -> String {
    let s = seconds;
    if s < -1 {
        return "<invalid>".into();
    }
    if s < 0 {
        return "0s".into();
    }
    if s < 120 {
        return format!("{s}s");
    }
    let m = s / 60;
    if m < 10 {
        let sec = s % 60;
        return if sec == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{sec}s")
        };
    }
    if m < 180 {
        return format!("{m}m");
    }
    let h = s / 3600;
    if h < 8 {
        let mm = m % 60;
        return if mm == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{mm}m")
        };
    }
    if h < 48 {
        return format!("{h}h");
    }
    if h < 192 {
        let hh = h % 24;
        return if hh == 0 {
            format!("{}d", h / 24)
        } else {
            format!("{}d{hh}h", h / 24)
        };
    }
    if h < 24 * 365 * 2 {
        return format!("{}d", h / 24);
    }
    if h < 24 * 365 * 8 {
        let dy = (h / 24) % 365;
        let y = h / 24 / 365;
        return if dy == 0 {
            format!("{y}y")
        } else {
            format!("{y}y{dy}d")
        };
    }
    format!("{}y", h / 24 / 365)
}

/// Time since an RFC 3339 timestamp, or `<unknown>`.
pub(crate) fn since(value: &Value, now: Timestamp) -> String {
    match value.as_str().and_then(|s| s.parse::<Timestamp>().ok()) {
        Some(t) => human_duration(now.duration_since(t).as_secs()),
        None => "<unknown>".into(),
    }
}

pub(crate) fn age(obj: &Value, now: Timestamp) -> Value {
    json!(since(&obj["metadata"]["creationTimestamp"], now))
}

pub(crate) fn name(obj: &Value) -> Value {
    obj["metadata"]["name"].clone()
}

pub(crate) fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

pub(crate) fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

pub(crate) fn or_none(v: &str) -> String {
    if v.is_empty() {
        "<none>".into()
    } else {
        v.into()
    }
}

/// A label map as a selector string: `k=v,k2=v2` sorted (`""` for empty).
pub fn label_map_string(map: &Value) -> String {
    let mut parts: Vec<String> = map
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", s(v)))
        .collect();
    parts.sort();
    parts.join(",")
}

/// `k=v,k2=v2` sorted, or `<none>`.
pub(crate) fn format_labels(map: &Value) -> String {
    or_none(&label_map_string(map))
}

/// The IPs (else host names) of `status.loadBalancer.ingress`.
pub(crate) fn load_balancer_addresses(status: &Value) -> Vec<&str> {
    status["loadBalancer"]["ingress"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| {
            i["ip"]
                .as_str()
                .filter(|x| !x.is_empty())
                .unwrap_or(s(&i["hostname"]))
        })
        .collect()
}

/// A LabelSelector as a selector string (`""` for empty).
pub fn selector_string(sel: &Value) -> String {
    let mut reqs: Vec<(String, String)> = Vec::new();
    for (k, v) in sel["matchLabels"].as_object().into_iter().flatten() {
        reqs.push((k.clone(), format!("{k}={}", s(v))));
    }
    for e in sel["matchExpressions"].as_array().into_iter().flatten() {
        let key = s(&e["key"]).to_owned();
        let mut values: Vec<&str> = e["values"]
            .as_array()
            .into_iter()
            .flatten()
            .map(s)
            .collect();
        values.sort();
        let text = match s(&e["operator"]) {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.clone(),
            "DoesNotExist" => format!("!{key}"),
            _ => return "<error>".into(),
        };
        reqs.push((key, text));
    }
    reqs.sort_by(|a, b| a.0.cmp(&b.0));
    reqs.into_iter()
        .map(|(_, t)| t)
        .collect::<Vec<_>>()
        .join(",")
}

pub(crate) fn format_selector(sel: &Value) -> String {
    or_none(&selector_string(sel))
}

pub(crate) fn containers_and_images(pod_spec: &Value) -> (Value, Value) {
    let cs: Vec<&Value> = pod_spec["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    let names: Vec<&str> = cs.iter().map(|c| s(&c["name"])).collect();
    let images: Vec<&str> = cs.iter().map(|c| s(&c["image"])).collect();
    (json!(names.join(",")), json!(images.join(",")))
}

fn replicas(obj: &Value) -> i64 {
    obj["spec"]["replicas"].as_i64().unwrap_or(1)
}

/// The default printer: NAME, AGE.
pub static DEFAULT: Printer = Printer {
    columns: &[NAME, AGE],
    cells: |o, now| vec![name(o), age(o, now)],
};

pub static PODS: Printer = Printer {
    columns: &[
        NAME,
        col(
            "Ready",
            "string",
            "The aggregate readiness state of this pod for accepting traffic.",
            0,
        ),
        col(
            "Status",
            "string",
            "The aggregate status of the containers in this pod.",
            0,
        ),
        col(
            "Restarts",
            "string",
            "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
            0,
        ),
        AGE,
        col(
            "IP",
            "string",
            "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.",
            1,
        ),
        col(
            "Node",
            "string",
            "NodeName indicates in which node this pod is scheduled. If empty, this pod is a candidate for scheduling by the scheduler defined in schedulerName. Once this field is set, the kubelet for this node becomes responsible for the lifecycle of this pod. This field should not be used to express a desire for the pod to be scheduled on a specific node. https://kubernetes.io/docs/concepts/scheduling-eviction/assign-pod-node/#nodename",
            1,
        ),
        col(
            "Nominated Node",
            "string",
            "nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot be scheduled right away as preemption victims receive their graceful termination periods. This field does not guarantee that the pod will be scheduled on this node. Scheduler may decide to place the pod elsewhere if other nodes become available sooner. Scheduler may also decide to give the resources on this node to a higher priority pod that is created after preemption. As a result, this field may be different than PodSpec.nodeName when the pod is scheduled.",
            1,
        ),
        col(
            "Readiness Gates",
            "string",
            "If specified, all readiness gates will be evaluated for pod readiness. A pod is ready when all its containers are ready AND all conditions specified in the readiness gates have status equal to \"True\" More info: https://git.k8s.io/enhancements/keps/sig-network/580-pod-readiness-gates",
            1,
        ),
    ],
    cells: pod_cells,
};

fn latest(a: Option<Timestamp>, b: &Value) -> Option<Timestamp> {
    let t = b.as_str().and_then(|s| s.parse::<Timestamp>().ok());
    match (a, t) {
        (Some(a), Some(t)) => Some(a.max(t)),
        (a, t) => a.or(t),
    }
}

fn pod_cells(pod: &Value, now: Timestamp) -> Vec<Value> {
    let spec = &pod["spec"];
    let status = &pod["status"];
    let inits: Vec<&Value> = spec["initContainers"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    let is_sidecar = |name: &str| {
        inits
            .iter()
            .any(|c| s(&c["name"]) == name && s(&c["restartPolicy"]) == "Always")
    };
    let mut total = spec["containers"].as_array().map(Vec::len).unwrap_or(0);
    total += inits
        .iter()
        .filter(|c| s(&c["restartPolicy"]) == "Always")
        .count();
    let mut ready = 0;
    let mut restarts = 0;
    let mut sidecar_restarts = 0;
    let mut last_restart: Option<Timestamp> = None;
    let mut last_sidecar_restart: Option<Timestamp> = None;
    let mut reason = s(&status["phase"]).to_owned();
    if !s(&status["reason"]).is_empty() {
        reason = s(&status["reason"]).to_owned();
    }
    let conditions: Vec<&Value> = status["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    if conditions
        .iter()
        .any(|c| s(&c["type"]) == "PodScheduled" && s(&c["reason"]) == "SchedulingGated")
    {
        reason = "SchedulingGated".into();
    }
    let mut initializing = false;
    for (i, cs) in status["initContainerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        restarts += int(&cs["restartCount"]);
        let finished = &cs["lastState"]["terminated"]["finishedAt"];
        last_restart = latest(last_restart, finished);
        let sidecar = is_sidecar(s(&cs["name"]));
        if sidecar {
            sidecar_restarts += int(&cs["restartCount"]);
            last_sidecar_restart = latest(last_sidecar_restart, finished);
        }
        let term = &cs["state"]["terminated"];
        let waiting = &cs["state"]["waiting"];
        if term.is_object() && int(&term["exitCode"]) == 0 {
            continue;
        } else if sidecar && cs["started"] == json!(true) {
            if cs["ready"] == json!(true) {
                ready += 1;
            }
            continue;
        } else if term.is_object() {
            reason = if s(&term["reason"]).is_empty() {
                if int(&term["signal"]) != 0 {
                    format!("Init:Signal:{}", int(&term["signal"]))
                } else {
                    format!("Init:ExitCode:{}", int(&term["exitCode"]))
                }
            } else {
                format!("Init:{}", s(&term["reason"]))
            };
        } else if waiting.is_object()
            && !s(&waiting["reason"]).is_empty()
            && s(&waiting["reason"]) != "PodInitializing"
        {
            reason = format!("Init:{}", s(&waiting["reason"]));
        } else {
            reason = format!("Init:{i}/{}", inits.len());
        }
        initializing = true;
        break;
    }
    let initialized = conditions
        .iter()
        .find(|c| s(&c["type"]) == "Initialized")
        .is_some_and(|c| s(&c["status"]) == "True");
    if !initializing || initialized {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        let statuses: Vec<&Value> = status["containerStatuses"]
            .as_array()
            .into_iter()
            .flatten()
            .collect();
        for cs in statuses.iter().rev() {
            restarts += int(&cs["restartCount"]);
            last_restart = latest(last_restart, &cs["lastState"]["terminated"]["finishedAt"]);
            let waiting = &cs["state"]["waiting"];
            let term = &cs["state"]["terminated"];
            if waiting.is_object() && !s(&waiting["reason"]).is_empty() {
                reason = s(&waiting["reason"]).to_owned();
            } else if term.is_object() && !s(&term["reason"]).is_empty() {
                reason = s(&term["reason"]).to_owned();
            } else if term.is_object() {
                reason = if int(&term["signal"]) != 0 {
                    format!("Signal:{}", int(&term["signal"]))
                } else {
                    format!("ExitCode:{}", int(&term["exitCode"]))
                };
            } else if cs["ready"] == json!(true) && cs["state"]["running"].is_object() {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            let pod_ready = conditions
                .iter()
                .any(|c| s(&c["type"]) == "Ready" && s(&c["status"]) == "True");
            reason = if pod_ready {
                "Running".into()
            } else {
                "NotReady".into()
            };
        }
    }
    let deleting = !pod["metadata"]["deletionTimestamp"].is_null();
    if deleting && s(&status["reason"]) == "NodeLost" {
        reason = "Unknown".into();
    } else if deleting && !["Succeeded", "Failed"].contains(&s(&status["phase"])) {
        reason = "Terminating".into();
    }
    let mut restarts_text = restarts.to_string();
    if restarts != 0
        && let Some(t) = last_restart
    {
        restarts_text = format!(
            "{restarts} ({} ago)",
            human_duration(now.duration_since(t).as_secs())
        );
    }
    let ip = status["podIPs"][0]["ip"]
        .as_str()
        .or(status["podIP"].as_str())
        .unwrap_or("");
    let gates: Vec<&Value> = spec["readinessGates"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    let gates_text = if gates.is_empty() {
        "<none>".to_owned()
    } else {
        let passing = gates
            .iter()
            .filter(|g| {
                conditions
                    .iter()
                    .find(|c| c["type"] == g["conditionType"])
                    .is_some_and(|c| s(&c["status"]) == "True")
            })
            .count();
        format!("{passing}/{}", gates.len())
    };
    vec![
        name(pod),
        json!(format!("{ready}/{total}")),
        json!(reason),
        json!(restarts_text),
        age(pod, now),
        json!(or_none(ip)),
        json!(or_none(s(&spec["nodeName"]))),
        json!(or_none(s(&status["nominatedNodeName"]))),
        json!(gates_text),
    ]
}

pub static NAMESPACES: Printer = Printer {
    columns: &[
        NAME,
        col("Status", "string", "The status of the namespace", 0),
        AGE,
    ],
    cells: |o, now| vec![name(o), o["status"]["phase"].clone(), age(o, now)],
};

pub static SERVICES: Printer = Printer {
    columns: &[
        NAME,
        col(
            "Type",
            "string",
            "type determines how the Service is exposed. Defaults to ClusterIP. Valid options are ExternalName, ClusterIP, NodePort, and LoadBalancer.",
            0,
        ),
        col(
            "Cluster-IP",
            "string",
            "clusterIP is the IP address of the service and is usually assigned randomly.",
            0,
        ),
        col(
            "External-IP",
            "string",
            "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.  These IPs are not managed by Kubernetes.  The user is responsible for ensuring that traffic arrives at a node with this IP.  A common example is external load-balancers that are not part of the Kubernetes system.",
            0,
        ),
        col(
            "Port(s)",
            "string",
            "The list of ports that are exposed by this service. More info: https://kubernetes.io/docs/concepts/services-networking/service/#virtual-ips-and-service-proxies",
            0,
        ),
        AGE,
        col(
            "Selector",
            "string",
            "Route service traffic to pods with label keys and values matching this selector. If empty or not present, the service is assumed to have an external process managing its endpoints, which Kubernetes will not modify. Only applies to types ClusterIP, NodePort, and LoadBalancer. Ignored if type is ExternalName. More info: https://kubernetes.io/docs/concepts/services-networking/service/",
            1,
        ),
    ],
    cells: service_cells,
};

fn service_cells(o: &Value, now: Timestamp) -> Vec<Value> {
    let spec = &o["spec"];
    let ty = s(&spec["type"]);
    let cluster_ip = spec["clusterIPs"][0]
        .as_str()
        .or(spec["clusterIP"].as_str())
        .unwrap_or("");
    let cluster_ip = if ty == "ExternalName" {
        "<none>".to_owned()
    } else {
        or_none(cluster_ip)
    };
    let external: Vec<&str> = spec["externalIPs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(s)
        .collect();
    let external_ip = match ty {
        "ClusterIP" | "NodePort" => or_none(&external.join(",")),
        "LoadBalancer" => {
            let mut lb = load_balancer_addresses(&o["status"]);
            lb.sort();
            lb.dedup();
            let mut all: Vec<&str> = lb.clone();
            all.extend(external.iter());
            if all.is_empty() {
                "<pending>".into()
            } else {
                all.join(",")
            }
        }
        "ExternalName" => s(&spec["externalName"]).to_owned(),
        _ => "<unknown>".into(),
    };
    let ports: Vec<String> = spec["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let proto = p["protocol"].as_str().unwrap_or("TCP");
            match p["nodePort"].as_i64().filter(|n| *n > 0) {
                Some(np) => format!("{}:{np}/{proto}", int(&p["port"])),
                None => format!("{}/{proto}", int(&p["port"])),
            }
        })
        .collect();
    vec![
        name(o),
        json!(ty),
        json!(cluster_ip),
        json!(external_ip),
        json!(or_none(&ports.join(","))),
        age(o, now),
        json!(format_labels(&spec["selector"])),
    ]
}

pub static CONFIGMAPS: Printer = Printer {
    columns: &[
        NAME,
        col(
            "Data",
            "string",
            "Data contains the configuration data. Each key must consist of alphanumeric characters, '-', '_' or '.'. Values with non-UTF-8 byte sequences must use the BinaryData field. The keys stored in Data must not overlap with the keys in the BinaryData field, this is enforced during validation process.",
            0,
        ),
        AGE,
    ],
    cells: |o, now| {
        let n = o["data"].as_object().map(|m| m.len()).unwrap_or(0)
            + o["binaryData"].as_object().map(|m| m.len()).unwrap_or(0);
        vec![name(o), json!(n), age(o, now)]
    },
};

pub static SECRETS: Printer = Printer {
    columns: &[
        NAME,
        col(
            "Type",
            "string",
            "Used to facilitate programmatic handling of secret data. More info: https://kubernetes.io/docs/concepts/configuration/secret/#secret-types",
            0,
        ),
        col(
            "Data",
            "string",
            "Data contains the secret data. Each key must consist of alphanumeric characters, '-', '_' or '.'. The serialized form of the secret data is a base64 encoded string, representing the arbitrary (possibly non-string) data value here. Described in https://tools.ietf.org/html/rfc4648#section-4",
            0,
        ),
        AGE,
    ],
    cells: |o, now| {
        let n = o["data"].as_object().map(|m| m.len()).unwrap_or(0);
        vec![name(o), o["type"].clone(), json!(n), age(o, now)]
    },
};

pub static SERVICEACCOUNTS: Printer = Printer {
    columns: &[
        NAME,
        col(
            "Secrets",
            "string",
            "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use.",
            0,
        ),
        AGE,
    ],
    cells: |o, now| {
        vec![
            name(o),
            json!(o["secrets"].as_array().map(Vec::len).unwrap_or(0)),
            age(o, now),
        ]
    },
};

pub static EVENTS: Printer = Printer {
    columns: &[
        col(
            "Last Seen",
            "string",
            "The time at which the most recent occurrence of this event was recorded.",
            0,
        ),
        col(
            "Type",
            "string",
            "Type of this event (Normal, Warning), new types could be added in the future",
            0,
        ),
        col(
            "Reason",
            "string",
            "This should be a short, machine understandable string that gives the reason for the transition into the object's current status.",
            0,
        ),
        col(
            "Object",
            "string",
            "The object that this event is about.",
            0,
        ),
        col(
            "Subobject",
            "string",
            "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement, such as desiredState.manifest.containers[2].",
            1,
        ),
        col(
            "Source",
            "string",
            "The component reporting this event. Should be a short machine understandable string.",
            1,
        ),
        col(
            "Message",
            "string",
            "A human-readable description of the status of this operation.",
            0,
        ),
        col(
            "First Seen",
            "string",
            "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)",
            1,
        ),
        col(
            "Count",
            "string",
            "The number of times this event has occurred.",
            1,
        ),
        Column {
            name: "Name",
            ty: "string",
            format: "name",
            description: D_NAME,
            priority: 1,
        },
    ],
    cells: |e, now| {
        // events.k8s.io/v1 rows print like core ones.
        let core;
        let e = if e["apiVersion"] == "events.k8s.io/v1" {
            core = crate::registry::conversion::event_to_core(e.clone());
            &core
        } else {
            e
        };
        let mut first = since(&e["firstTimestamp"], now);
        if e["firstTimestamp"].is_null() {
            first = since(&e["eventTime"], now);
        }
        let mut last = if e["lastTimestamp"].is_null() {
            first.clone()
        } else {
            since(&e["lastTimestamp"], now)
        };
        let mut count = int(&e["count"]);
        if e["series"].is_object() {
            last = since(&e["series"]["lastObservedTime"], now);
            count = int(&e["series"]["count"]);
        } else if count == 0 {
            count = 1;
        }
        let kind = s(&e["involvedObject"]["kind"]).to_lowercase();
        let target = match s(&e["involvedObject"]["name"]) {
            "" => kind,
            n => format!("{kind}/{n}"),
        };
        let component = e["source"]["component"]
            .as_str()
            .filter(|c| !c.is_empty())
            .unwrap_or(s(&e["reportingComponent"]));
        let instance = e["source"]["host"]
            .as_str()
            .filter(|c| !c.is_empty())
            .unwrap_or(s(&e["reportingInstance"]));
        let source = if instance.is_empty() {
            component.to_owned()
        } else {
            format!("{component}, {instance}")
        };
        vec![
            json!(last),
            e["type"].clone(),
            e["reason"].clone(),
            json!(target),
            json!(s(&e["involvedObject"]["fieldPath"])),
            json!(source),
            json!(s(&e["message"]).trim()),
            json!(first),
            json!(count),
            name(e),
        ]
    },
};

pub static NODES: Printer = Printer {
    columns: &[
        NAME,
        col("Status", "string", "The status of the node", 0),
        col("Roles", "string", "The roles of the node", 0),
        AGE,
        col(
            "Version",
            "string",
            "Kubelet Version reported by the node.",
            0,
        ),
        col(
            "Internal-IP",
            "string",
            "List of addresses reachable to the node.",
            1,
        ),
        col(
            "External-IP",
            "string",
            "List of addresses reachable to the node.",
            1,
        ),
        col(
            "OS-Image",
            "string",
            "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
            1,
        ),
        col(
            "Kernel-Version",
            "string",
            "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
            1,
        ),
        col(
            "Container-Runtime",
            "string",
            "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).",
            1,
        ),
    ],
    cells: |n, now| {
        let mut status: Vec<&str> = Vec::new();
        let ready = n["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .rfind(|c| s(&c["type"]) == "Ready");
        if let Some(c) = ready {
            status.push(if s(&c["status"]) == "True" {
                "Ready"
            } else {
                "NotReady"
            });
        }
        if status.is_empty() {
            status.push("Unknown");
        }
        if n["spec"]["unschedulable"] == json!(true) {
            status.push("SchedulingDisabled");
        }
        let mut roles: Vec<String> = n["metadata"]["labels"]
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| match k.strip_prefix("node-role.kubernetes.io/") {
                Some(role) if !role.is_empty() => Some(role.to_owned()),
                _ if k == "kubernetes.io/role" && !s(v).is_empty() => Some(s(v).to_owned()),
                _ => None,
            })
            .collect();
        roles.sort();
        roles.dedup();
        let address = |ty: &str| {
            or_none(
                n["status"]["addresses"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|a| s(&a["type"]) == ty)
                    .map(|a| s(&a["address"]))
                    .unwrap_or(""),
            )
        };
        let info = &n["status"]["nodeInfo"];
        let unknown = |v: &Value| {
            if s(v).is_empty() {
                "<unknown>".to_owned()
            } else {
                s(v).to_owned()
            }
        };
        vec![
            name(n),
            json!(status.join(",")),
            json!(or_none(&roles.join(","))),
            age(n, now),
            json!(s(&info["kubeletVersion"])),
            json!(address("InternalIP")),
            json!(address("ExternalIP")),
            json!(unknown(&info["osImage"])),
            json!(unknown(&info["kernelVersion"])),
            json!(unknown(&info["containerRuntimeVersion"])),
        ]
    },
};

pub static REPLICATIONCONTROLLERS: Printer = Printer {
    columns: &[
        NAME,
        col(
            "Desired",
            "integer",
            "Replicas is the number of desired replicas.",
            0,
        ),
        col(
            "Current",
            "integer",
            "Replicas is the most recently observed number of replicas.",
            0,
        ),
        col(
            "Ready",
            "integer",
            "The number of ready replicas for this replication controller.",
            0,
        ),
        AGE,
        CONTAINERS,
        IMAGES,
        col(
            "Selector",
            "string",
            "Selector is a label query over pods that should match the Replicas count.",
            1,
        ),
    ],
    cells: |o, now| {
        let (names, images) = containers_and_images(&o["spec"]["template"]["spec"]);
        vec![
            name(o),
            json!(replicas(o)),
            json!(int(&o["status"]["replicas"])),
            json!(int(&o["status"]["readyReplicas"])),
            age(o, now),
            names,
            images,
            json!(format_labels(&o["spec"]["selector"])),
        ]
    },
};

pub static LEASES: Printer = Printer {
    columns: &[
        NAME,
        col(
            "Holder",
            "string",
            "holderIdentity contains the identity of the holder of a current lease.",
            0,
        ),
        AGE,
    ],
    cells: |o, now| vec![name(o), json!(s(&o["spec"]["holderIdentity"])), age(o, now)],
};

pub static DEPLOYMENTS: Printer = Printer {
    columns: &[
        NAME,
        col("Ready", "string", "Number of the pod with ready state", 0),
        col(
            "Up-to-date",
            "string",
            "Total number of non-terminating pods targeted by this deployment that have the desired template spec.",
            0,
        ),
        col(
            "Available",
            "string",
            "Total number of available non-terminating pods (ready for at least minReadySeconds) targeted by this deployment.",
            0,
        ),
        AGE,
        CONTAINERS,
        IMAGES,
        col(
            "Selector",
            "string",
            "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment.",
            1,
        ),
    ],
    cells: |o, now| {
        let (names, images) = containers_and_images(&o["spec"]["template"]["spec"]);
        let st = &o["status"];
        vec![
            name(o),
            json!(format!("{}/{}", int(&st["readyReplicas"]), replicas(o))),
            json!(int(&st["updatedReplicas"])),
            json!(int(&st["availableReplicas"])),
            age(o, now),
            names,
            images,
            json!(selector_string(&o["spec"]["selector"])),
        ]
    },
};

pub static REPLICASETS: Printer = Printer {
    columns: &[
        NAME,
        col(
            "Desired",
            "integer",
            "Replicas is the number of desired pods.",
            0,
        ),
        col(
            "Current",
            "integer",
            "Replicas is the most recently observed number of non-terminating pods.",
            0,
        ),
        col(
            "Ready",
            "integer",
            "The number of non-terminating pods targeted by this ReplicaSet with a Ready Condition.",
            0,
        ),
        AGE,
        CONTAINERS,
        IMAGES,
        col(
            "Selector",
            "string",
            "Selector is a label query over pods that should match the replica count.",
            1,
        ),
    ],
    cells: |o, now| {
        let (names, images) = containers_and_images(&o["spec"]["template"]["spec"]);
        vec![
            name(o),
            json!(replicas(o)),
            json!(int(&o["status"]["replicas"])),
            json!(int(&o["status"]["readyReplicas"])),
            age(o, now),
            names,
            images,
            json!(format_selector(&o["spec"]["selector"])),
        ]
    },
};

pub static DAEMONSETS: Printer = Printer {
    columns: &[
        NAME,
        col(
            "Desired",
            "integer",
            "The total number of nodes that should be running the daemon pod (including nodes correctly running the daemon pod).",
            0,
        ),
        col(
            "Current",
            "integer",
            "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod.",
            0,
        ),
        col(
            "Ready",
            "integer",
            "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready.",
            0,
        ),
        col(
            "Up-to-date",
            "integer",
            "The total number of nodes that are running updated daemon pod",
            0,
        ),
        col(
            "Available",
            "integer",
            "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available (ready for at least spec.minReadySeconds)",
            0,
        ),
        col(
            "Node Selector",
            "string",
            "NodeSelector is a selector which must be true for the pod to fit on a node.",
            0,
        ),
        AGE,
        CONTAINERS,
        IMAGES,
        col(
            "Selector",
            "string",
            "A label query over pods that are managed by the daemon set.",
            1,
        ),
    ],
    cells: |o, now| {
        let (names, images) = containers_and_images(&o["spec"]["template"]["spec"]);
        let st = &o["status"];
        vec![
            name(o),
            json!(int(&st["desiredNumberScheduled"])),
            json!(int(&st["currentNumberScheduled"])),
            json!(int(&st["numberReady"])),
            json!(int(&st["updatedNumberScheduled"])),
            json!(int(&st["numberAvailable"])),
            json!(format_labels(
                &o["spec"]["template"]["spec"]["nodeSelector"]
            )),
            age(o, now),
            names,
            images,
            json!(format_selector(&o["spec"]["selector"])),
        ]
    },
};

pub static STATEFULSETS: Printer = Printer {
    columns: &[
        NAME,
        col("Ready", "string", "Number of the pod with ready state", 0),
        AGE,
        CONTAINERS,
        IMAGES,
    ],
    cells: |o, now| {
        let (names, images) = containers_and_images(&o["spec"]["template"]["spec"]);
        vec![
            name(o),
            json!(format!(
                "{}/{}",
                int(&o["status"]["readyReplicas"]),
                replicas(o)
            )),
            age(o, now),
            names,
            images,
        ]
    },
};

pub static JOBS: Printer = Printer {
    columns: &[
        NAME,
        col("Status", "string", "Status of the job.", 0),
        col(
            "Completions",
            "string",
            "The number of pods which reached phase Succeeded.",
            0,
        ),
        col(
            "Duration",
            "string",
            "Time required to complete the job.",
            0,
        ),
        AGE,
        CONTAINERS,
        IMAGES,
        col(
            "Selector",
            "string",
            "A label query over pods that should match the pod count.",
            1,
        ),
    ],
    cells: |o, now| {
        let spec = &o["spec"];
        let st = &o["status"];
        let succeeded = int(&st["succeeded"]);
        let completions = match spec["completions"].as_i64() {
            Some(c) => format!("{succeeded}/{c}"),
            None => match int(&spec["parallelism"]) {
                p if p > 1 => format!("{succeeded}/1 of {p}"),
                _ => format!("{succeeded}/1"),
            },
        };
        let parse = |v: &Value| v.as_str().and_then(|t| t.parse::<Timestamp>().ok());
        let duration = match (parse(&st["startTime"]), parse(&st["completionTime"])) {
            (None, _) => String::new(),
            (Some(start), None) => human_duration(now.duration_since(start).as_secs()),
            (Some(start), Some(end)) => human_duration(end.duration_since(start).as_secs()),
        };
        let cond = |t: &str| {
            st["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| s(&c["type"]) == t)
                .is_some_and(|c| s(&c["status"]) == "True")
        };
        let status = if cond("Complete") {
            "Complete"
        } else if cond("Failed") {
            "Failed"
        } else if !o["metadata"]["deletionTimestamp"].is_null() {
            "Terminating"
        } else if cond("Suspended") {
            "Suspended"
        } else if cond("FailureTarget") {
            "FailureTarget"
        } else {
            "Running"
        };
        let (names, images) = containers_and_images(&spec["template"]["spec"]);
        vec![
            name(o),
            json!(status),
            json!(completions),
            json!(duration),
            age(o, now),
            names,
            images,
            json!(format_selector(&spec["selector"])),
        ]
    },
};

pub static CRONJOBS: Printer = Printer {
    columns: &[
        NAME,
        col(
            "Schedule",
            "string",
            "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron.",
            0,
        ),
        col(
            "Timezone",
            "string",
            "The time zone name for the given schedule, see https://en.wikipedia.org/wiki/List_of_tz_database_time_zones.",
            0,
        ),
        col(
            "Suspend",
            "boolean",
            "This flag tells the controller to suspend subsequent executions, it does not apply to already started executions.  Defaults to false.",
            0,
        ),
        col(
            "Active",
            "integer",
            "A list of pointers to currently running jobs.",
            0,
        ),
        col(
            "Last Schedule",
            "string",
            "Information when was the last time the job was successfully scheduled.",
            0,
        ),
        AGE,
        CONTAINERS,
        IMAGES,
        col(
            "Selector",
            "string",
            "A label query over pods that should match the pod count.",
            1,
        ),
    ],
    cells: |o, now| {
        let spec = &o["spec"];
        let suspend = match spec["suspend"].as_bool() {
            None => "<unset>",
            Some(true) => "True",
            Some(false) => "False",
        };
        let last = if o["status"]["lastScheduleTime"].is_null() {
            "<none>".to_owned()
        } else {
            since(&o["status"]["lastScheduleTime"], now)
        };
        let job = &spec["jobTemplate"]["spec"];
        let (names, images) = containers_and_images(&job["template"]["spec"]);
        vec![
            name(o),
            spec["schedule"].clone(),
            json!(or_none(s(&spec["timeZone"]))),
            json!(suspend),
            json!(o["status"]["active"].as_array().map(Vec::len).unwrap_or(0)),
            json!(last),
            age(o, now),
            names,
            images,
            json!(format_selector(&job["selector"])),
        ]
    },
};

pub static ENDPOINTS: Printer = Printer {
    columns: &[
        NAME,
        col(
            "Endpoints",
            "string",
            "The set of all endpoints is the union of all subsets.",
            0,
        ),
        AGE,
    ],
    cells: |o, now| {
        let subsets: Vec<&Value> = o["subsets"].as_array().into_iter().flatten().collect();
        let text = if subsets.is_empty() {
            "<none>".to_owned()
        } else {
            let mut list: Vec<String> = Vec::new();
            let mut count = 0;
            for ss in subsets {
                let addrs: Vec<&str> = ss["addresses"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|a| s(&a["ip"]))
                    .collect();
                let ports: Vec<i64> = ss["ports"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| int(&p["port"]))
                    .collect();
                if ports.is_empty() {
                    count += addrs.len();
                    list.extend(addrs.iter().map(|a| a.to_string()));
                } else {
                    for p in ports {
                        count += addrs.len();
                        list.extend(addrs.iter().map(|a| {
                            if a.contains(':') {
                                format!("[{a}]:{p}")
                            } else {
                                format!("{a}:{p}")
                            }
                        }));
                    }
                }
            }
            let more = list.len() > 3;
            list.truncate(3);
            if more {
                format!("{} + {} more...", list.join(","), count - 3)
            } else {
                list.join(",")
            }
        };
        vec![name(o), json!(text), age(o, now)]
    },
};

pub static ENDPOINTSLICES: Printer = Printer {
    columns: &[
        NAME,
        col(
            "AddressType",
            "string",
            "addressType specifies the type of address carried by this EndpointSlice.",
            0,
        ),
        col(
            "Ports",
            "string",
            "ports specifies the list of network ports exposed by each endpoint in this slice.",
            0,
        ),
        col(
            "Endpoints",
            "string",
            "endpoints is a list of unique endpoints in this slice.",
            0,
        ),
        AGE,
    ],
    cells: |o, now| {
        let with_more = |items: Vec<String>| {
            let count = items.len();
            if count == 0 {
                return "<unset>".to_owned();
            }
            let shown = items[..count.min(3)].join(",");
            if count > 3 {
                format!("{shown} + {} more...", count - 3)
            } else {
                shown
            }
        };
        let ports: Vec<String> = o["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| match p["port"].as_i64() {
                Some(n) => n.to_string(),
                None => p["name"].as_str().unwrap_or("*").to_owned(),
            })
            .collect();
        let addrs: Vec<String> = o["endpoints"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|e| {
                e["addresses"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|a| s(a).to_owned())
            })
            .collect();
        vec![
            name(o),
            o["addressType"].clone(),
            json!(with_more(ports)),
            json!(with_more(addrs)),
            age(o, now),
        ]
    },
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_duration_matches_apimachinery() {
        let cases = [
            (5, "5s"),
            (119, "119s"),
            (130, "2m10s"),
            (600, "10m"),
            (3 * 3600 + 300, "3h5m"),
            (50 * 3600, "2d2h"),
            (10 * 86400, "10d"),
            (-5, "<invalid>"),
        ];
        for (secs, want) in cases {
            assert_eq!(human_duration(secs), want, "{secs}s");
        }
    }

    #[test]
    fn running_pod_row() {
        let pod = json!({
            "metadata": {"name": "web", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"nodeName": "n1", "containers": [{"name": "a"}, {"name": "b"}]},
            "status": {"phase": "Running", "podIP": "10.0.0.5", "containerStatuses": [
                {"name": "a", "ready": true, "restartCount": 2, "state": {"running": {}},
                 "lastState": {"terminated": {"finishedAt": "2026-01-01T00:55:00Z"}}},
                {"name": "b", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}
        });
        let now: Timestamp = "2026-01-01T01:00:00Z".parse().unwrap();
        let cells = (PODS.cells)(&pod, now);
        assert_eq!(
            cells,
            vec![
                json!("web"),
                json!("1/2"),
                json!("CrashLoopBackOff"),
                json!("2 (5m ago)"),
                json!("60m"),
                json!("10.0.0.5"),
                json!("n1"),
                json!("<none>"),
                json!("<none>")
            ]
        );
    }

    #[test]
    fn deployment_and_service_rows() {
        let now: Timestamp = "2026-01-01T00:00:30Z".parse().unwrap();
        let d = json!({"metadata": {"name": "d", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "d"}}, "template": {"spec": {"containers": [{"name": "c", "image": "nginx"}]}}},
            "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}});
        assert_eq!(
            (DEPLOYMENTS.cells)(&d, now),
            vec![
                json!("d"),
                json!("2/3"),
                json!(3),
                json!(2),
                json!("30s"),
                json!("c"),
                json!("nginx"),
                json!("app=d")
            ]
        );
        let svc = json!({"metadata": {"name": "s", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"type": "NodePort", "clusterIP": "10.96.0.10", "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}], "selector": {"b": "2", "a": "1"}}});
        assert_eq!(
            (SERVICES.cells)(&svc, now),
            vec![
                json!("s"),
                json!("NodePort"),
                json!("10.96.0.10"),
                json!("<none>"),
                json!("80:30080/TCP,53/UDP"),
                json!("30s"),
                json!("a=1,b=2")
            ]
        );
    }
}

//! `kubectl get -o wide` of each common kind, compared with checked-in expected text (ages and
//! generated values blanked). `UPDATE_GOLDEN=1` rewrites the files and fails, so a change to
//! them is always a reviewed diff.

use std::path::PathBuf;

use compat_tests::TestCluster;

const MANIFESTS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: golden}
---
apiVersion: v1
kind: Pod
metadata: {name: web-0, namespace: golden, labels: {app: web}}
spec:
  nodeName: node-1
  containers: [{name: web, image: nginx:1.27}, {name: side, image: busybox}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: golden}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: nginx:1.27}]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: golden}
spec:
  type: NodePort
  clusterIP: 10.96.0.50
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080, nodePort: 30080}, {name: dns, port: 53, protocol: UDP, nodePort: 30053}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: cfg, namespace: golden}
data: {a: "1", b: "2"}
---
apiVersion: v1
kind: Secret
metadata: {name: creds, namespace: golden}
type: kubernetes.io/basic-auth
stringData: {username: admin, password: hunter2}
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly, namespace: golden}
spec:
  schedule: "0 3 * * *"
  jobTemplate:
    spec:
      template:
        spec: {restartPolicy: OnFailure, containers: [{name: job, image: busybox}]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: readers, namespace: golden}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}
subjects:
- {kind: User, name: alice}
- {kind: Group, name: devs}
- {kind: ServiceAccount, name: bot, namespace: golden}
---
apiVersion: v1
kind: ResourceQuota
metadata: {name: quota, namespace: golden}
spec: {hard: {pods: "10", requests.cpu: "2", limits.memory: 4Gi}}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: web, namespace: golden}
spec: {maxUnavailable: 25%, selector: {matchLabels: {app: web}}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web, namespace: golden}
spec:
  ingressClassName: nginx
  tls: [{hosts: [web.example.com]}]
  rules:
  - host: web.example.com
    http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}]}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: web, namespace: golden}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  minReplicas: 2
  maxReplicas: 10
  metrics:
  - {type: Resource, resource: {name: cpu, target: {type: Utilization, averageUtilization: 60}}}
  - {type: Resource, resource: {name: memory, target: {type: AverageValue, averageValue: 500Mi}}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data, namespace: golden}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: fast
  resources: {requests: {storage: 1Gi}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: builder, namespace: golden}
---
apiVersion: v1
kind: Endpoints
metadata: {name: web, namespace: golden}
subsets: [{addresses: [{ip: 10.1.0.5}, {ip: 10.1.0.6}], ports: [{port: 8080}]}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-abc, namespace: golden, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
endpoints: [{addresses: [10.1.0.5]}]
ports: [{name: http, port: 8080, protocol: TCP}]
---
apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: web-rs, namespace: golden}
spec:
  replicas: 2
  selector: {matchLabels: {app: rs}}
  template:
    metadata: {labels: {app: rs}}
    spec: {containers: [{name: web, image: nginx:1.27}]}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: golden}
spec:
  replicas: 3
  serviceName: db
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec: {containers: [{name: db, image: postgres:16}]}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent, namespace: golden}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec: {nodeSelector: {kubernetes.io/os: linux}, containers: [{name: agent, image: busybox}]}
---
apiVersion: batch/v1
kind: Job
metadata: {name: once, namespace: golden}
spec:
  template:
    spec: {restartPolicy: Never, containers: [{name: job, image: busybox}]}
---
apiVersion: v1
kind: ReplicationController
metadata: {name: legacy, namespace: golden}
spec:
  replicas: 1
  selector: {app: legacy}
  template:
    metadata: {labels: {app: legacy}}
    spec: {containers: [{name: c, image: busybox}]}
---
apiVersion: v1
kind: LimitRange
metadata: {name: limits, namespace: golden}
spec: {limits: [{type: Container, default: {cpu: 200m}}]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: reader, namespace: golden}
rules: [{apiGroups: [""], resources: [pods], verbs: [get, list]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all, namespace: golden}
spec: {podSelector: {}, policyTypes: [Ingress]}
---
apiVersion: coordination.k8s.io/v1
kind: Lease
metadata: {name: leader, namespace: golden}
spec: {holderIdentity: node-1, leaseDurationSeconds: 40}
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: golden-pv}
spec:
  capacity: {storage: 5Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: fast
  hostPath: {path: /tmp/golden}
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: fast}
provisioner: example.com/fast
reclaimPolicy: Delete
volumeBindingMode: WaitForFirstConsumer
allowVolumeExpansion: true
---
apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata: {name: important}
value: 1000000
description: golden
---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: nginx}
spec: {controller: k8s.io/ingress-nginx}
---
apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata: {name: gvisor}
handler: runsc
---
apiVersion: v1
kind: Node
metadata: {name: node-1, labels: {kubernetes.io/os: linux}}
spec: {podCIDR: 10.244.1.0/24}
"#;

/// Kinds compared, each `kubectl -n golden get <kind> -o wide`.
const KINDS: &[&str] = &[
    "pods",
    "deployments",
    "services",
    "configmaps",
    "secrets",
    "cronjobs",
    "rolebindings",
    "resourcequotas",
    "poddisruptionbudgets",
    "ingresses",
    "horizontalpodautoscalers",
    "persistentvolumeclaims",
    "serviceaccounts",
    "endpoints",
    "endpointslices",
    "replicasets",
    "statefulsets",
    "daemonsets",
    "jobs",
    "replicationcontrollers",
    "limitranges",
    "roles",
    "networkpolicies",
    "leases",
    // Cluster-scoped: the namespace flag does not narrow these.
    "namespaces",
    "persistentvolumes",
    "storageclasses",
    "priorityclasses",
    "ingressclasses",
    "runtimeclasses",
    "nodes",
];

/// Generated values in a cell: a uid becomes `<uid>`, an RFC 3339 time `<time>`.
fn blank_generated(cell: &str) -> String {
    let bytes = cell.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    let uid_at = |i: usize| {
        let part = |from: usize, len: usize| {
            bytes
                .get(from..from + len)
                .is_some_and(|p| p.iter().all(u8::is_ascii_hexdigit))
        };
        part(i, 8)
            && bytes.get(i + 8) == Some(&b'-')
            && part(i + 9, 4)
            && part(i + 14, 4)
            && part(i + 19, 4)
            && part(i + 24, 12)
    };
    let time_at = |i: usize| {
        bytes.get(i..i + 20).is_some_and(|t| {
            t.iter().enumerate().all(|(k, c)| match k {
                4 | 7 => *c == b'-',
                10 => *c == b'T',
                13 | 16 => *c == b':',
                19 => *c == b'Z',
                _ => c.is_ascii_digit(),
            })
        })
    };
    while i < bytes.len() {
        if uid_at(i) {
            out.push_str("<uid>");
            i += 36;
        } else if time_at(i) {
            out.push_str("<time>");
            i += 20;
        } else {
            let c = cell[i..].chars().next().expect("in bounds");
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// One line per row with cells joined by ` | ` (kubectl separates columns by two or more
/// spaces, and their widths move with the age text), ages such as `5s` or `2d3h` as `<age>`.
fn normalize(text: &str) -> String {
    let is_age = |cell: &str| {
        cell.chars().next().is_some_and(|c| c.is_ascii_digit())
            && cell.ends_with(['s', 'm', 'h', 'd', 'y'])
            && cell
                .chars()
                .all(|c| c.is_ascii_digit() || "smhdy".contains(c))
    };
    text.lines()
        .map(|line| {
            line.split("  ")
                .map(str::trim)
                .filter(|cell| !cell.is_empty())
                .map(|cell| {
                    if is_age(cell) {
                        "<age>".to_owned()
                    } else {
                        blank_generated(cell)
                    }
                })
                .collect::<Vec<_>>()
                .join(" | ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn get_wide_tables_match_the_expected_text_for_each_kind() {
    let cluster = TestCluster::start().unwrap();
    let file = cluster.data_dir.path().join("golden.yaml");
    std::fs::write(&file, MANIFESTS).unwrap();
    cluster
        .kubectl("1.33", &["create", "-f", file.to_str().unwrap()])
        .ok();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("golden");
    let update = std::env::var("UPDATE_GOLDEN").is_ok();
    let mut mismatches = Vec::new();
    for kind in KINDS {
        let got = normalize(
            &cluster
                .kubectl("1.33", &["-n", "golden", "get", kind, "-o", "wide"])
                .ok(),
        );
        let path = dir.join(format!("{kind}.txt"));
        if update {
            std::fs::write(&path, format!("{got}\n")).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&path)
            .unwrap_or_else(|_| panic!("{} is missing", path.display()));
        if want.trim_end() != got {
            mismatches.push(format!("--- {kind}: expected\n{want}--- got\n{got}\n"));
        }
    }
    assert!(
        !update,
        "golden files rewritten; review the diff and run again without UPDATE_GOLDEN"
    );
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

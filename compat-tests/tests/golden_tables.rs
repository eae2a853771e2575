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
];

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
                .map(|cell| if is_age(cell) { "<age>" } else { cell })
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

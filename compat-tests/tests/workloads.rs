//! The workload and service controllers beyond Deployments, driven by the stock kubectl:
//! Services get Endpoints and EndpointSlices from ready pods; Jobs run to completion or fail
//! at their backoff limit; CronJobs start Jobs on schedule; DaemonSets put one pod on each
//! eligible node and roll; StatefulSets create ordered pods with their claims and roll; a
//! node whose heartbeats stop turns Unknown, is tainted, and loses the pods that do not
//! tolerate it.
//!
//! Nodes are registered and kept alive by a heartbeat double and bound pods are started by a
//! pod status double, in place of the node agent.

use std::time::Duration;

use compat_tests::node_heartbeat_double::{NodeHeartbeatDouble, TestNode};
use compat_tests::{TestCluster, eventually};
use serde_json::Value;

const V: &str = "1.33";

fn json(out: &str) -> Value {
    serde_json::from_str(out).unwrap()
}

fn items(v: &Value) -> Vec<Value> {
    v["items"].as_array().cloned().unwrap_or_default()
}

fn pod_field(pod: &Value, pointer: &str) -> String {
    pod.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_list_their_ready_pods_in_endpoints_and_endpoint_slices() {
    let (cluster, _nodes, _kubelet) =
        TestCluster::start_with_node_doubles(&[TestNode::named("n1"), TestNode::named("n2")], &[])
            .await
            .unwrap();
    let k = |args: &[&str]| cluster.kubectl(V, args).ok();
    k(&[
        "create",
        "deployment",
        "web",
        "--image=nginx:1",
        "--replicas=3",
        "--port=80",
    ]);
    k(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    k(&[
        "expose",
        "deployment",
        "web",
        "--port=8080",
        "--target-port=80",
    ]);

    let pod_ips = |k: &dyn Fn(&[&str]) -> String| -> Vec<String> {
        let mut ips: Vec<String> =
            items(&json(&k(&["get", "pods", "-l", "app=web", "-o", "json"])))
                .iter()
                .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
                .map(|p| pod_field(p, "/status/podIP"))
                .collect();
        ips.sort();
        ips
    };
    let endpoint_ips = |k: &dyn Fn(&[&str]) -> String| -> Vec<String> {
        let ep = json(&k(&["get", "endpoints", "web", "-o", "json"]));
        let mut ips: Vec<String> = ep["subsets"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|s| s["addresses"].as_array().cloned().unwrap_or_default())
            .map(|a| a["ip"].as_str().unwrap_or_default().to_owned())
            .collect();
        ips.sort();
        ips
    };
    let want = pod_ips(&k);
    assert_eq!(want.len(), 3);
    let listed = eventually(Duration::from_secs(30), || {
        let ips = endpoint_ips(&k);
        (ips == want).then_some(ips)
    });
    assert!(
        listed.is_some(),
        "endpoints never listed the pods {want:?}: {}",
        k(&["get", "endpoints", "web", "-o", "yaml"])
    );
    let ep = json(&k(&["get", "endpoints", "web", "-o", "json"]));
    assert_eq!(ep["subsets"][0]["ports"][0]["port"], 80);
    assert_eq!(ep["subsets"][0]["addresses"][0]["targetRef"]["kind"], "Pod");

    let slices = items(&json(&k(&[
        "get",
        "endpointslices",
        "-l",
        "kubernetes.io/service-name=web",
        "-o",
        "json",
    ])));
    assert_eq!(slices.len(), 1, "{slices:?}");
    let slice = &slices[0];
    assert_eq!(slice["addressType"], "IPv4");
    assert_eq!(slice["ports"][0]["port"], 80);
    assert_eq!(slice["metadata"]["ownerReferences"][0]["kind"], "Service");
    assert_eq!(
        slice["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"],
        "endpointslice-controller.k8s.io"
    );
    let mut slice_ips: Vec<String> = slice["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .inspect(|e| assert_eq!(e["conditions"]["ready"], true, "{e}"))
        .map(|e| e["addresses"][0].as_str().unwrap().to_owned())
        .collect();
    slice_ips.sort();
    assert_eq!(slice_ips, want);

    // A deleted pod's replacement takes its place.
    let victim = items(&json(&k(&["get", "pods", "-l", "app=web", "-o", "json"])))[0].clone();
    let victim_name = pod_field(&victim, "/metadata/name");
    let victim_ip = pod_field(&victim, "/status/podIP");
    k(&["delete", "pod", &victim_name]);
    let replaced = eventually(Duration::from_secs(30), || {
        let now = pod_ips(&k);
        let listed = endpoint_ips(&k);
        (now.len() == 3 && !listed.contains(&victim_ip) && listed == now).then_some(listed)
    });
    assert!(
        replaced.is_some(),
        "endpoints kept {victim_ip} or missed the replacement"
    );

    // Scaling down shrinks the list; the kubectl table shows what is left.
    k(&["scale", "deployment", "web", "--replicas=1"]);
    let shrunk = eventually(Duration::from_secs(30), || {
        (endpoint_ips(&k).len() == 1).then_some(())
    });
    assert!(shrunk.is_some(), "endpoints did not shrink");
    let table = k(&["get", "endpoints", "web"]);
    assert!(table.contains(":80"), "{table}");

    // The Endpoints and slices go with the Service.
    k(&["delete", "service", "web"]);
    let gone = eventually(Duration::from_secs(30), || {
        let ep = cluster.kubectl(V, &["get", "endpoints", "web"]);
        let slices = k(&[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=web",
            "-o",
            "json",
        ]);
        (!ep.output.status.success() && items(&json(&slices)).is_empty()).then_some(())
    });
    assert!(gone.is_some(), "endpoints or slices outlived their service");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_run_to_completion_or_fail_at_their_backoff_limit() {
    let (cluster, _nodes, _kubelet) =
        TestCluster::start_with_node_doubles(&[TestNode::named("n1")], &[])
            .await
            .unwrap();
    let k = |args: &[&str]| cluster.kubectl(V, args).ok();

    k(&[
        "create",
        "job",
        "ok",
        "--image=busybox",
        "--",
        "sh",
        "-c",
        "exit 0",
    ]);
    k(&[
        "wait",
        "--for=condition=complete",
        "job/ok",
        "--timeout=60s",
    ]);
    let job = json(&k(&["get", "job", "ok", "-o", "json"]));
    assert_eq!(job["status"]["succeeded"], 1);
    assert!(job["status"]["completionTime"].is_string());
    let table = k(&["get", "job", "ok"]);
    assert!(
        table.contains("1/1") && table.contains("Complete"),
        "{table}"
    );
    let pods = items(&json(&k(&[
        "get",
        "pods",
        "-l",
        "job-name=ok",
        "-o",
        "json",
    ])));
    assert_eq!(pods.len(), 1);
    assert_eq!(pods[0]["status"]["phase"], "Succeeded");
    assert!(
        pods[0]["metadata"]["finalizers"]
            .as_array()
            .is_none_or(|f| f.is_empty()),
        "the tracking finalizer stayed: {}",
        pods[0]["metadata"]
    );
    let described = k(&["describe", "job", "ok"]);
    assert!(described.contains("Created pod: ok-"), "{described}");
    assert!(described.contains("Job completed"), "{described}");

    // Four completions, two at a time, indexed.
    cluster.apply(
        V,
        r#"
apiVersion: batch/v1
kind: Job
metadata: {name: batch}
spec:
  completions: 4
  parallelism: 2
  completionMode: Indexed
  template:
    spec:
      restartPolicy: Never
      containers: [{name: work, image: busybox, command: [sh, -c, "exit 0"]}]
"#,
    );
    k(&[
        "wait",
        "--for=condition=complete",
        "job/batch",
        "--timeout=60s",
    ]);
    let job = json(&k(&["get", "job", "batch", "-o", "json"]));
    assert_eq!(job["status"]["succeeded"], 4);
    assert_eq!(job["status"]["completedIndexes"], "0-3");
    let mut indexes: Vec<String> = items(&json(&k(&[
        "get",
        "pods",
        "-l",
        "job-name=batch",
        "-o",
        "json",
    ])))
    .iter()
    .map(|p| {
        pod_field(
            p,
            "/metadata/annotations/batch.kubernetes.io~1job-completion-index",
        )
    })
    .collect();
    indexes.sort();
    assert_eq!(indexes, ["0", "1", "2", "3"]);

    // A command that fails: one retry (after the backoff), then Failed.
    cluster.apply(
        V,
        r#"
apiVersion: batch/v1
kind: Job
metadata: {name: bad}
spec:
  backoffLimit: 1
  template:
    spec:
      restartPolicy: Never
      containers: [{name: work, image: busybox, command: [sh, -c, "exit 3"]}]
"#,
    );
    k(&["wait", "--for=condition=failed", "job/bad", "--timeout=90s"]);
    let job = json(&k(&["get", "job", "bad", "-o", "json"]));
    assert_eq!(job["status"]["failed"], 2);
    let failed = job["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Failed")
        .cloned()
        .unwrap();
    assert_eq!(failed["reason"], "BackoffLimitExceeded");
    let described = k(&["describe", "job", "bad"]);
    assert!(described.contains("BackoffLimitExceeded"), "{described}");

    // Counts survive the pods.
    k(&["delete", "pods", "-l", "job-name=ok"]);
    let job = json(&k(&["get", "job", "ok", "-o", "json"]));
    assert_eq!(job["status"]["succeeded"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cronjobs_start_jobs_on_their_schedule() {
    let (cluster, _nodes, _kubelet) =
        TestCluster::start_with_node_doubles(&[TestNode::named("n1")], &[])
            .await
            .unwrap();
    let k = |args: &[&str]| cluster.kubectl(V, args).ok();
    k(&[
        "create",
        "cronjob",
        "tick",
        "--image=busybox",
        "--schedule=* * * * *",
        "--",
        "sh",
        "-c",
        "exit 0",
    ]);
    // The next minute boundary starts a Job named after its scheduled minute.
    let job = eventually(Duration::from_secs(90), || {
        items(&json(&k(&["get", "jobs", "-o", "json"])))
            .into_iter()
            .find(|j| j["metadata"]["ownerReferences"][0]["name"] == "tick")
    })
    .expect("no job was started within 90 s");
    let name = pod_field(&job, "/metadata/name");
    let minutes: i64 = name.strip_prefix("tick-").unwrap().parse().unwrap();
    let scheduled = pod_field(
        &job,
        "/metadata/annotations/batch.kubernetes.io~1cronjob-scheduled-timestamp",
    );
    let at: jiff::Timestamp = scheduled.parse().unwrap();
    assert_eq!(at.as_second(), minutes * 60);
    // The first run is the first schedule time after the CronJob was made, not before.
    let cron_job = json(&k(&["get", "cronjob", "tick", "-o", "json"]));
    let created: jiff::Timestamp = pod_field(&cron_job, "/metadata/creationTimestamp")
        .parse()
        .unwrap();
    assert!(at > created, "scheduled {at} precedes creation {created}");
    assert!(at.as_second() - created.as_second() <= 60);
    k(&[
        "wait",
        "--for=condition=complete",
        &format!("job/{name}"),
        "--timeout=60s",
    ]);
    let done = eventually(Duration::from_secs(30), || {
        let cj = json(&k(&["get", "cronjob", "tick", "-o", "json"]));
        (cj["status"]["lastSuccessfulTime"].is_string()
            && cj["status"]["active"]
                .as_array()
                .is_none_or(|a| a.is_empty()))
        .then_some(cj)
    });
    assert!(done.is_some(), "the cronjob never saw its job finish");
    let described = k(&["describe", "cronjob", "tick"]);
    assert!(
        described.contains(&format!("Created job {name}")),
        "{described}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemonsets_run_one_pod_per_eligible_node_and_roll() {
    let nodes = [
        TestNode::named("n1"),
        TestNode::named("n2"),
        TestNode::named("n3").taint("dedicated", "gpu", "NoSchedule"),
    ];
    let (cluster, _nodes, _kubelet) = TestCluster::start_with_node_doubles(&nodes, &[])
        .await
        .unwrap();
    let k = |args: &[&str]| cluster.kubectl(V, args).ok();
    cluster.apply(
        V,
        r#"
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      containers: [{name: agent, image: "agent:1"}]
"#,
    );
    k(&["rollout", "status", "daemonset/agent", "--timeout=60s"]);
    let placed = |k: &dyn Fn(&[&str]) -> String| -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> =
            items(&json(&k(&["get", "pods", "-l", "app=agent", "-o", "json"])))
                .iter()
                .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
                .map(|p| {
                    (
                        pod_field(p, "/spec/nodeName"),
                        pod_field(p, "/spec/containers/0/image"),
                    )
                })
                .collect();
        v.sort();
        v
    };
    assert_eq!(
        placed(&k),
        [
            ("n1".into(), "agent:1".into()),
            ("n2".into(), "agent:1".into())
        ]
    );
    let ds = json(&k(&["get", "daemonset", "agent", "-o", "json"]));
    assert_eq!(ds["status"]["desiredNumberScheduled"], 2);
    assert_eq!(ds["status"]["numberAvailable"], 2);

    k(&["set", "image", "daemonset/agent", "agent=agent:2"]);
    let status = k(&["rollout", "status", "daemonset/agent", "--timeout=60s"]);
    assert!(status.contains("successfully rolled out"), "{status}");
    assert_eq!(
        placed(&k),
        [
            ("n1".into(), "agent:2".into()),
            ("n2".into(), "agent:2".into())
        ]
    );
    let history = k(&["rollout", "history", "daemonset/agent"]);
    assert!(
        history.contains("\n1 ") && history.contains("\n2 "),
        "{history}"
    );
    k(&["rollout", "undo", "daemonset/agent"]);
    k(&["rollout", "status", "daemonset/agent", "--timeout=60s"]);
    let rolled_back = eventually(Duration::from_secs(30), || {
        let p = placed(&k);
        (p.len() == 2 && p.iter().all(|(_, image)| image == "agent:1")).then_some(())
    });
    assert!(
        rolled_back.is_some(),
        "undo did not bring agent:1 back: {:?}",
        placed(&k)
    );

    // A node that joins gets its pod.
    let client = cluster.client().await.unwrap();
    let _more = NodeHeartbeatDouble::register(client, &[TestNode::named("n4")])
        .await
        .unwrap();
    let joined = eventually(Duration::from_secs(30), || {
        placed(&k)
            .iter()
            .any(|(node, _)| node == "n4")
            .then_some(())
    });
    assert!(joined.is_some(), "n4 got no pod: {:?}", placed(&k));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statefulsets_create_ordered_pods_with_claims_and_roll() {
    let (cluster, _nodes, _kubelet) =
        TestCluster::start_with_node_doubles(&[TestNode::named("n1"), TestNode::named("n2")], &[])
            .await
            .unwrap();
    let k = |args: &[&str]| cluster.kubectl(V, args).ok();
    cluster.apply(
        V,
        r#"
apiVersion: v1
kind: Service
metadata: {name: db}
spec:
  clusterIP: None
  selector: {app: db}
  ports: [{port: 5432}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  replicas: 3
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers:
      - name: db
        image: "db:1"
        volumeMounts: [{name: data, mountPath: /data}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 1Gi}}
"#,
    );
    k(&["rollout", "status", "statefulset/db", "--timeout=60s"]);
    let pods = items(&json(&k(&["get", "pods", "-l", "app=db", "-o", "json"])));
    let mut names: Vec<String> = pods
        .iter()
        .map(|p| pod_field(p, "/metadata/name"))
        .collect();
    names.sort();
    assert_eq!(names, ["db-0", "db-1", "db-2"]);
    for p in &pods {
        let name = pod_field(p, "/metadata/name");
        assert_eq!(pod_field(p, "/spec/hostname"), name);
        assert_eq!(pod_field(p, "/spec/subdomain"), "db");
        let claim = p["spec"]["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "data")
            .and_then(|v| v["persistentVolumeClaim"]["claimName"].as_str())
            .unwrap_or_default()
            .to_owned();
        assert_eq!(claim, format!("data-{name}"));
    }
    let claims: Vec<String> = items(&json(&k(&["get", "pvc", "-o", "json"])))
        .iter()
        .map(|c| pod_field(c, "/metadata/name"))
        .collect();
    for n in 0..3 {
        assert!(claims.contains(&format!("data-db-{n}")), "{claims:?}");
    }
    // Ordered: each pod was created only after the one before it was Ready.
    let described = k(&["describe", "statefulset", "db"]);
    let order: Vec<usize> = (0..3)
        .map(|n| {
            described
                .find(&format!("create Pod db-{n} in StatefulSet db successful"))
                .unwrap_or_else(|| panic!("no create event for db-{n}: {described}"))
        })
        .collect();
    assert!(order[0] < order[1] && order[1] < order[2], "{described}");
    assert!(
        described.contains("create Claim data-db-0 Pod db-0 in StatefulSet db success"),
        "{described}"
    );
    // The headless Service's Endpoints carry the pods' hostnames.
    let hostnames = eventually(Duration::from_secs(30), || {
        let ep = json(&k(&["get", "endpoints", "db", "-o", "json"]));
        let mut h: Vec<String> = ep["subsets"][0]["addresses"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| a["hostname"].as_str().unwrap_or_default().to_owned())
            .collect();
        h.sort();
        (h == ["db-0", "db-1", "db-2"]).then_some(h)
    });
    assert!(
        hostnames.is_some(),
        "{}",
        k(&["get", "endpoints", "db", "-o", "yaml"])
    );

    k(&["set", "image", "statefulset/db", "db=db:2"]);
    // The defaulted partition (0) makes kubectl report a partitioned roll out, as upstream.
    let status = k(&["rollout", "status", "statefulset/db", "--timeout=90s"]);
    assert!(
        status.contains("partitioned roll out complete: 3 new pods"),
        "{status}"
    );
    let images: Vec<String> = items(&json(&k(&["get", "pods", "-l", "app=db", "-o", "json"])))
        .iter()
        .map(|p| pod_field(p, "/spec/containers/0/image"))
        .collect();
    assert_eq!(images, ["db:2"; 3]);
    let sts = json(&k(&["get", "statefulset", "db", "-o", "json"]));
    assert_eq!(
        sts["status"]["currentRevision"],
        sts["status"]["updateRevision"]
    );
    let history = k(&["rollout", "history", "statefulset/db"]);
    assert!(
        history.contains("\n1 ") && history.contains("\n2 "),
        "{history}"
    );

    k(&["scale", "statefulset", "db", "--replicas=1"]);
    let scaled = eventually(Duration::from_secs(60), || {
        let names: Vec<String> = items(&json(&k(&["get", "pods", "-l", "app=db", "-o", "json"])))
            .iter()
            .map(|p| pod_field(p, "/metadata/name"))
            .collect();
        (names == ["db-0"]).then_some(())
    });
    assert!(scaled.is_some(), "scale down did not leave db-0 alone");
    // Claims stay (the default retention policy).
    let claims = items(&json(&k(&["get", "pvc", "-o", "json"])));
    assert_eq!(claims.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_node_turns_unknown_is_tainted_and_loses_untolerating_pods() {
    let nodes = [
        TestNode::named("n1").label("topology.kubernetes.io/zone", "a"),
        TestNode::named("n2").label("topology.kubernetes.io/zone", "b"),
    ];
    let (cluster, heartbeats, _kubelet) = TestCluster::start_with_node_doubles(
        &nodes,
        &[
            "--node-monitor-grace-period=2s",
            "--node-monitor-period=200ms",
        ],
    )
    .await
    .unwrap();
    let k = |args: &[&str]| cluster.kubectl(V, args).ok();
    cluster.apply(
        V,
        r#"
apiVersion: v1
kind: Pod
metadata: {name: patient}
spec:
  nodeName: n2
  containers: [{name: app, image: "app:1"}]
---
apiVersion: v1
kind: Pod
metadata: {name: quick}
spec:
  nodeName: n2
  tolerations:
  - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 1}
  containers: [{name: app, image: "app:1"}]
"#,
    );
    // The patient pod got the five-minute default tolerations.
    let patient = json(&k(&["get", "pod", "patient", "-o", "json"]));
    let defaults: Vec<(String, i64)> = patient["spec"]["tolerations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                pod_field(t, "/key"),
                t["tolerationSeconds"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    assert!(
        defaults.contains(&("node.kubernetes.io/unreachable".into(), 300)),
        "{defaults:?}"
    );
    assert!(
        defaults.contains(&("node.kubernetes.io/not-ready".into(), 300)),
        "{defaults:?}"
    );
    k(&[
        "wait",
        "--for=condition=Ready",
        "pod/patient",
        "pod/quick",
        "--timeout=30s",
    ]);

    heartbeats.silence("n2");
    k(&[
        "wait",
        "--for=condition=Ready=Unknown",
        "node/n2",
        "--timeout=30s",
    ]);
    let node = json(&k(&["get", "node", "n2", "-o", "json"]));
    let taints: Vec<String> = node["spec"]["taints"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| format!("{}:{}", pod_field(t, "/key"), pod_field(t, "/effect")))
        .collect();
    assert!(
        taints.contains(&"node.kubernetes.io/unreachable:NoSchedule".to_owned()),
        "{taints:?}"
    );
    let table = k(&["get", "nodes"]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("n2 ") && l.contains("NotReady")),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("n1 ") && l.contains(" Ready")),
        "{table}"
    );
    let described = k(&["describe", "node", "n2"]);
    assert!(
        described.contains("Kubelet stopped posting node status."),
        "{described}"
    );

    // The pod tolerating one second is evicted; the patient one stays, no longer Ready.
    k(&["wait", "--for=delete", "pod/quick", "--timeout=30s"]);
    let patient = json(&k(&["get", "pod", "patient", "-o", "json"]));
    let ready = patient["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .cloned()
        .unwrap();
    assert_eq!(ready["status"], "False");
    let node = json(&k(&["get", "node", "n2", "-o", "json"]));
    assert!(
        node["spec"]["taints"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["key"] == "node.kubernetes.io/unreachable" && t["effect"] == "NoExecute"),
        "{}",
        node["spec"]
    );
    let events = k(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=quick",
    ]);
    assert!(events.contains("TaintManagerEviction"), "{events}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_a_deployment_mid_rollout_spreads_replicas_over_its_replica_sets() {
    let (cluster, _nodes, _kubelet) =
        TestCluster::start_with_node_doubles(&[TestNode::named("n1"), TestNode::named("n2")], &[])
            .await
            .unwrap();
    let k = |args: &[&str]| cluster.kubectl(V, args).ok();
    k(&[
        "create",
        "deployment",
        "web",
        "--image=nginx:1",
        "--replicas=4",
    ]);
    k(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    // The new template asks for a node that does not exist: the rollout stalls with the
    // old set at 3 and the new one at 2 (4 replicas, 25% surge and unavailability).
    k(&[
        "patch",
        "deployment",
        "web",
        "-p",
        r#"{"spec":{"template":{"spec":{"nodeSelector":{"disk":"ssd"}}}}}"#,
    ]);
    let sizes = |k: &dyn Fn(&[&str]) -> String| -> Vec<i64> {
        let sets = items(&json(&k(&["get", "rs", "-l", "app=web", "-o", "json"])));
        let mut by_revision: Vec<(i64, i64)> = sets
            .iter()
            .map(|rs| {
                let revision: i64 = pod_field(
                    rs,
                    "/metadata/annotations/deployment.kubernetes.io~1revision",
                )
                .parse()
                .unwrap_or(0);
                (revision, rs["spec"]["replicas"].as_i64().unwrap_or(0))
            })
            .collect();
        by_revision.sort();
        by_revision.into_iter().map(|(_, n)| n).collect()
    };
    let stalled = eventually(Duration::from_secs(30), || {
        (sizes(&k) == [3, 2]).then_some(())
    });
    assert!(
        stalled.is_some(),
        "rollout did not stall at 3+2: {:?}",
        sizes(&k)
    );
    // 8 replicas: 8 + 2 surge = 10, shared 6 to 4 as the sets stood 3 to 2.
    k(&["scale", "deployment", "web", "--replicas=8"]);
    let spread = eventually(Duration::from_secs(30), || {
        (sizes(&k) == [6, 4]).then_some(())
    });
    assert!(
        spread.is_some(),
        "replicas were not spread 6+4: {:?}",
        sizes(&k)
    );
}

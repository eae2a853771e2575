//! The node agent on the real Docker Engine, driven with the stock kubectl as a user would:
//! pods run as containers with their own addresses; logs, exec, cp and port-forward reach
//! them through the apiserver; Deployments scale containers up and down; crashing
//! containers back off; failed liveness probes restart containers; ConfigMap volumes show
//! their files; images come from a registry; and an agent that is killed and started again
//! leaves exactly the containers the API asks for.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use compat_tests::docker_node::DockerNode;
use compat_tests::{TestCluster, eventually};
use serde_json::Value;

const V: &str = "1.33";

fn cluster() -> TestCluster {
    TestCluster::start_with_controllers().expect("starting the apiserver")
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).expect("JSON output")
}

fn pod_json(c: &TestCluster, name: &str) -> Value {
    json(&c.kubectl(V, &["get", "pod", name, "-o", "json"]).ok())
}

/// A Deployment of busybox sleepers (`IfNotPresent`: there is no registry to ask for `latest`).
fn sleepers(name: &str, replicas: u32) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: sleeper
        image: busybox
        imagePullPolicy: IfNotPresent
        command: ["sleep", "3600"]
"#
    )
}

fn wait_ready(c: &TestCluster, what: &str) {
    c.kubectl(V, &["wait", "--for=condition=Ready", what, "--timeout=90s"])
        .ok();
}

const LOOPING_WEB_POD: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: bb}
spec:
  terminationGracePeriodSeconds: 5
  containers:
  - name: bb
    image: busybox
    imagePullPolicy: IfNotPresent
    ports: [{containerPort: 8080, name: http}]
    # Ready only once the HTTP server answers; alive while its port is open.
    readinessProbe:
      httpGet: {path: /index.html, port: http}
      periodSeconds: 1
    livenessProbe:
      tcpSocket: {port: 8080}
      periodSeconds: 2
    command: ["sh", "-c"]
    args:
    - |
      mkdir -p /www && echo hello-from-pod > /www/index.html && httpd -p 8080 -h /www
      i=0; while true; do echo line $i; i=$((i+1)); sleep 1; done
"#;

#[test]
fn a_busybox_pod_runs_with_logs_exec_cp_and_port_forward_and_goes_on_delete() {
    let c = cluster();
    let node = DockerNode::start(&c, "docker-streams").unwrap();
    eventually(Duration::from_secs(60), || {
        c.kubectl(V, &["get", "node", &node.name])
            .output
            .status
            .success()
            .then_some(())
    })
    .expect("the node registers");
    c.apply(V, LOOPING_WEB_POD);
    wait_ready(&c, "pod/bb");
    let pod = pod_json(&c, "bb");
    assert_eq!(pod["status"]["phase"], "Running");
    let ip = pod["status"]["podIP"].as_str().unwrap().to_owned();
    assert!(
        !ip.is_empty() && ip != "127.0.0.1",
        "a pod address of its own: {ip}"
    );
    assert_eq!(pod["spec"]["nodeName"], node.name.as_str());
    let status = &pod["status"]["containerStatuses"][0];
    assert!(
        status["containerID"]
            .as_str()
            .unwrap()
            .starts_with("docker://")
    );
    assert_eq!(node.running_app_containers("bb").len(), 1);

    // logs, and logs -f that keeps streaming new lines.
    let logs = eventually(Duration::from_secs(20), || {
        let out = c.kubectl(V, &["logs", "bb"]).ok();
        out.contains("line 1").then_some(out)
    })
    .expect("the log has lines");
    assert!(logs.starts_with("line 0\n"), "{logs}");
    let mut follow = c.kubectl_spawn(V, &["logs", "-f", "bb", "--tail=1"]);
    let mut lines = BufReader::new(follow.stdout.take().unwrap()).lines();
    let first: u64 = lines.next().unwrap().unwrap()["line ".len()..]
        .parse()
        .unwrap();
    let later: u64 = lines.next().unwrap().unwrap()["line ".len()..]
        .parse()
        .unwrap();
    assert_eq!(
        later,
        first + 1,
        "logs -f streams lines as they are written"
    );
    let _ = follow.kill();
    let _ = follow.wait();

    // The API server's Service is in the environment, as the kubelet puts it there.
    let api_ip = c
        .kubectl(
            V,
            &[
                "get",
                "svc",
                "kubernetes",
                "-o",
                "jsonpath={.spec.clusterIP}",
            ],
        )
        .ok();
    assert_eq!(
        c.kubectl(
            V,
            &[
                "exec",
                "bb",
                "--",
                "sh",
                "-c",
                "echo $KUBERNETES_SERVICE_HOST"
            ]
        )
        .ok(),
        format!("{api_ip}\n")
    );

    // attach streams the main process's output.
    let mut attach = c.kubectl_spawn(V, &["attach", "bb"]);
    let mut attached = BufReader::new(attach.stdout.take().unwrap()).lines();
    let line = attached.next().unwrap().unwrap();
    assert!(line.starts_with("line "), "{line}");
    let _ = attach.kill();
    let _ = attach.wait();

    // exec, with an exit code, and exec -i with stdin.
    assert_eq!(
        c.kubectl(V, &["exec", "bb", "--", "sh", "-c", "echo hi"])
            .ok(),
        "hi\n"
    );
    let failed = c.kubectl(V, &["exec", "bb", "--", "sh", "-c", "exit 3"]);
    assert_eq!(failed.output.status.code(), Some(3), "{}", failed.stderr());
    let mut exec = Command::new(compat_tests::kubectl_binary(V))
        .args(["exec", "-i", "bb", "--", "sh", "-c", "tr a-z A-Z"])
        .env("KUBECONFIG", &c.kubeconfig)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = exec.stdin.take().unwrap();
        stdin.write_all(b"from stdin\n").unwrap();
    }
    let out = exec.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "FROM STDIN\n");

    // cp in and out.
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("in.txt");
    std::fs::write(&local, "copied in\n").unwrap();
    c.kubectl(V, &["cp", local.to_str().unwrap(), "bb:/tmp/in.txt"])
        .ok();
    assert_eq!(
        c.kubectl(V, &["exec", "bb", "--", "cat", "/tmp/in.txt"])
            .ok(),
        "copied in\n"
    );
    let back = dir.path().join("out.txt");
    c.kubectl(V, &["cp", "bb:/www/index.html", back.to_str().unwrap()])
        .ok();
    assert_eq!(std::fs::read_to_string(&back).unwrap(), "hello-from-pod\n");

    // port-forward to the pod's HTTP server, fetched with curl.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut forward = c.kubectl_spawn(V, &["port-forward", "pod/bb", &format!("{port}:8080")]);
    let mut forwarding = BufReader::new(forward.stdout.take().unwrap()).lines();
    let line = forwarding.next().unwrap().unwrap();
    assert!(line.starts_with("Forwarding from 127.0.0.1"), "{line}");
    for _ in 0..2 {
        let curl = Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "10",
                &format!("http://127.0.0.1:{port}/index.html"),
            ])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&curl.stdout),
            "hello-from-pod\n",
            "{curl:?}"
        );
    }
    let _ = forward.kill();
    let _ = forward.wait();

    // kubectl before 1.30 speaks SPDY: exec (with stdin) and port-forward work there too.
    for old in ["1.27", "1.29"] {
        let out = c.kubectl(old, &["exec", "bb", "--", "sh", "-c", "echo spdy; exit 4"]);
        assert_eq!(out.stdout(), "spdy\n", "{}", out.stderr());
        assert_eq!(out.output.status.code(), Some(4));
        let mut exec = Command::new(compat_tests::kubectl_binary(old))
            .args(["exec", "-i", "bb", "--", "cat"])
            .env("KUBECONFIG", &c.kubeconfig)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        {
            use std::io::Write;
            exec.stdin
                .take()
                .unwrap()
                .write_all(b"over spdy\n")
                .unwrap();
        }
        let out = exec.wait_with_output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "over spdy\n");
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut forward = c.kubectl_spawn("1.27", &["port-forward", "pod/bb", &format!("{port}:8080")]);
    let mut forwarding = BufReader::new(forward.stdout.take().unwrap()).lines();
    assert!(
        forwarding
            .next()
            .unwrap()
            .unwrap()
            .starts_with("Forwarding from")
    );
    let curl = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            &format!("http://127.0.0.1:{port}/index.html"),
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&curl.stdout),
        "hello-from-pod\n",
        "{curl:?}"
    );
    let _ = forward.kill();
    let _ = forward.wait();

    // kubectl debug: an ephemeral container in the pod, sharing the target's processes.
    c.kubectl(
        V,
        &[
            "debug",
            "bb",
            "--image=busybox",
            "--image-pull-policy=IfNotPresent",
            "--target=bb",
            "-c",
            "debugger",
            "--",
            "sleep",
            "3600",
        ],
    )
    .ok();
    eventually(Duration::from_secs(60), || {
        let pod = pod_json(&c, "bb");
        pod["status"]["ephemeralContainerStatuses"][0]["state"]["running"]
            .is_object()
            .then_some(())
    })
    .expect("the debug container runs");
    let processes = c
        .kubectl(V, &["exec", "bb", "-c", "debugger", "--", "ps"])
        .ok();
    assert!(processes.contains("httpd -p 8080"), "{processes}");

    // delete: the container is gone within the pod's 5 s grace period (the shell ignores
    // SIGTERM as PID 1, so it is killed when the grace period ends).
    let started = Instant::now();
    c.kubectl(V, &["delete", "pod", "bb", "--wait=false"]).ok();
    let terminating = pod_json(&c, "bb");
    assert_eq!(terminating["metadata"]["deletionGracePeriodSeconds"], 5);
    assert!(
        c.kubectl(V, &["get", "pod", "bb"])
            .ok()
            .contains("Terminating")
    );
    // kubectl waits until the agent, its containers stopped, deletes the pod for good.
    c.kubectl(V, &["wait", "--for=delete", "pod/bb", "--timeout=60s"])
        .ok();
    eventually(Duration::from_secs(10), || {
        node.containers().is_empty().then_some(())
    })
    .expect("the pod's containers are removed");
    assert!(
        started.elapsed() < Duration::from_secs(5 + 10),
        "removed after {:?}",
        started.elapsed()
    );
}

#[test]
fn deployments_scale_containers_and_crashing_containers_back_off() {
    let c = cluster();
    let node = DockerNode::start(&c, "docker-scale").unwrap();
    c.apply(V, &sleepers("web", 3));
    eventually(Duration::from_secs(90), || {
        (node.running_app_containers("web-").len() == 3).then_some(())
    })
    .expect("3 containers for 3 replicas");
    c.kubectl(V, &["rollout", "status", "deployment/web", "--timeout=60s"])
        .ok();
    c.kubectl(V, &["scale", "deployment/web", "--replicas=1"])
        .ok();
    eventually(Duration::from_secs(60), || {
        (node.running_app_containers("web-").len() == 1).then_some(())
    })
    .expect("scaling to 1 removes 2 containers");

    c.kubectl(
        V,
        &[
            "run",
            "crash",
            "--image=busybox",
            "--image-pull-policy=IfNotPresent",
            "--",
            "sh",
            "-c",
            "exit 1",
        ],
    )
    .ok();
    let mut restarts_seen = Vec::new();
    let mut back_off_seen = false;
    eventually(Duration::from_secs(60), || {
        let pod = pod_json(&c, "crash");
        let status = &pod["status"]["containerStatuses"][0];
        let restarts = status["restartCount"].as_i64().unwrap_or(0);
        if restarts_seen.last() != Some(&restarts) {
            restarts_seen.push(restarts);
        }
        if status["state"]["waiting"]["reason"] == "CrashLoopBackOff" {
            back_off_seen = true;
            assert_eq!(status["lastState"]["terminated"]["exitCode"], 1);
        }
        (back_off_seen && restarts >= 2).then_some(())
    })
    .expect("CrashLoopBackOff with restarts");
    assert!(
        restarts_seen.windows(2).all(|w| w[0] < w[1]),
        "{restarts_seen:?}"
    );
    let table = c.kubectl(V, &["get", "pod", "crash"]).ok();
    assert!(
        table.contains("CrashLoopBackOff") || table.contains("Error"),
        "{table}"
    );
    let events = c.kubectl(V, &["events", "--for", "pod/crash"]).ok();
    assert!(
        events.contains("Back-off restarting failed container crash"),
        "{events}"
    );
}

const LIVENESS_POD: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: live}
spec:
  containers:
  - name: app
    image: busybox
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "touch /tmp/healthy; sleep 3; rm /tmp/healthy; sleep 3600"]
    livenessProbe:
      exec: {command: ["cat", "/tmp/healthy"]}
      periodSeconds: 1
      failureThreshold: 2
    volumeMounts: [{name: config, mountPath: /etc/config}, {name: scratch, mountPath: /scratch}]
  volumes:
  - name: config
    configMap: {name: settings}
  - name: scratch
    emptyDir: {medium: Memory, sizeLimit: 16Mi}
"#;

#[test]
fn liveness_failures_restart_and_config_map_volumes_show_their_files() {
    let c = cluster();
    let node = DockerNode::start(&c, "docker-probes").unwrap();
    c.kubectl(
        V,
        &[
            "create",
            "configmap",
            "settings",
            "--from-literal=greeting=hello",
        ],
    )
    .ok();
    c.apply(V, LIVENESS_POD);
    wait_ready(&c, "pod/live");
    assert_eq!(
        c.kubectl(V, &["exec", "live", "--", "cat", "/etc/config/greeting"])
            .ok(),
        "hello"
    );
    // A memory-backed emptyDir is a tmpfs of its size limit.
    let mounts = c
        .kubectl(
            V,
            &["exec", "live", "--", "grep", " /scratch ", "/proc/mounts"],
        )
        .ok();
    assert!(mounts.starts_with("tmpfs /scratch tmpfs"), "{mounts}");
    assert!(mounts.contains("size=16384k"), "{mounts}");
    // A changed ConfigMap reaches the running container.
    c.kubectl(
        V,
        &[
            "patch",
            "configmap",
            "settings",
            "-p",
            r#"{"data":{"greeting":"changed"}}"#,
        ],
    )
    .ok();
    eventually(Duration::from_secs(40), || {
        let out = c.kubectl(V, &["exec", "live", "--", "cat", "/etc/config/greeting"]);
        (out.stdout() == "changed").then_some(())
    })
    .expect("the volume follows the ConfigMap");
    // The probe fails once /tmp/healthy is gone: the container is restarted.
    eventually(Duration::from_secs(60), || {
        let pod = pod_json(&c, "live");
        (pod["status"]["containerStatuses"][0]["restartCount"].as_i64() >= Some(1)).then_some(())
    })
    .expect("a failed liveness probe restarts the container");
    let events = c.kubectl(V, &["events", "--for", "pod/live"]).ok();
    assert!(
        events.contains("failed liveness probe, will be restarted"),
        "{events}"
    );
    assert_eq!(node.running_app_containers("live").len(), 1);
}

/// A registry on a free loopback port (Debian's docker-registry), stopped when dropped.
struct Registry {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_registry() -> Registry {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog: {{level: error}}\nstorage:\n  filesystem: {{rootdirectory: {}}}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("docker-registry (make test installs Debian's docker-registry)");
    eventually(Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", port))
            .ok()
            .map(|_| ())
    })
    .expect("the registry listens");
    Registry {
        child,
        port,
        _dir: dir,
    }
}

fn docker(args: &[&str]) {
    let status = Command::new("docker")
        .args(args)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "docker {args:?}");
}

#[test]
fn images_are_pulled_from_a_registry_and_missing_ones_back_off() {
    let c = cluster();
    let _node = DockerNode::start(&c, "docker-pull").unwrap();
    let registry = start_registry();
    let image = format!(
        "127.0.0.1:{}/tests/busybox:pull-{}",
        registry.port,
        std::process::id()
    );
    docker(&["tag", "busybox:latest", &image]);
    docker(&["push", &image]);
    docker(&["rmi", &image]);
    c.kubectl(
        V,
        &[
            "run",
            "pulled",
            &format!("--image={image}"),
            "--",
            "sleep",
            "3600",
        ],
    )
    .ok();
    wait_ready(&c, "pod/pulled");
    let events = c.kubectl(V, &["events", "--for", "pod/pulled"]).ok();
    assert!(
        events.contains(&format!("Pulling image \"{image}\"")),
        "{events}"
    );
    assert!(events.contains("Successfully pulled image"), "{events}");
    let pod = pod_json(&c, "pulled");
    assert!(
        pod["status"]["containerStatuses"][0]["imageID"]
            .as_str()
            .unwrap()
            .contains("sha256:"),
        "{pod}"
    );
    let _ = Command::new("docker").args(["rmi", "-f", &image]).output();

    let missing = format!("127.0.0.1:{}/tests/absent:v1", registry.port);
    c.kubectl(V, &["run", "absent", &format!("--image={missing}")])
        .ok();
    let reasons = eventually(Duration::from_secs(60), || {
        let pod = pod_json(&c, "absent");
        let reason = pod["status"]["containerStatuses"][0]["state"]["waiting"]["reason"]
            .as_str()
            .map(str::to_owned);
        reason.filter(|r| r == "ImagePullBackOff")
    });
    assert!(
        reasons.is_some(),
        "ErrImagePull turns into ImagePullBackOff"
    );
}

#[test]
fn a_restarted_agent_leaves_exactly_the_containers_the_api_asks_for() {
    let c = cluster();
    let mut node = DockerNode::start(&c, "docker-restart").unwrap();
    c.apply(V, &sleepers("keep", 2));
    c.kubectl(
        V,
        &["rollout", "status", "deployment/keep", "--timeout=90s"],
    )
    .ok();
    c.kubectl(
        V,
        &[
            "run",
            "gone",
            "--image=busybox",
            "--image-pull-policy=IfNotPresent",
            "--",
            "sleep",
            "3600",
        ],
    )
    .ok();
    wait_ready(&c, "pod/gone");
    let before: Vec<String> = node.running_app_containers("keep-");
    assert_eq!(before.len(), 2);

    node.kill_agent();
    // While the agent is away, one pod is deleted for good.
    c.kubectl(
        V,
        &[
            "delete",
            "pod",
            "gone",
            "--grace-period=0",
            "--force",
            "--wait=false",
        ],
    )
    .ok();
    node.restart_agent().unwrap();
    eventually(Duration::from_secs(60), || {
        (!node.containers().iter().any(|(n, _)| n.contains("_gone_"))).then_some(())
    })
    .expect("the deleted pod's containers, sandbox included, are removed");
    let mut after = node.running_app_containers("keep-");
    let mut before = before;
    after.sort();
    before.sort();
    assert_eq!(
        after, before,
        "the surviving pods keep their containers, none doubled"
    );
    let sandboxes = node
        .containers()
        .into_iter()
        .filter(|(n, s)| n.starts_with("k8s_POD_") && s == "running")
        .count();
    assert_eq!(sandboxes, 2, "{:?}", node.containers());
    let pods = json(
        &c.kubectl(V, &["get", "pods", "-l", "app=keep", "-o", "json"])
            .ok(),
    );
    for pod in pods["items"].as_array().unwrap() {
        assert_eq!(pod["status"]["containerStatuses"][0]["restartCount"], 0);
    }
}

#[test]
fn static_pods_run_from_manifests_with_mirror_pods_and_without_the_api_server() {
    let c = cluster();
    let manifests = tempfile::tempdir().unwrap();
    let manifest = manifests.path().join("web.yaml");
    let write = |marker: &str| {
        std::fs::write(
            &manifest,
            format!(
                "apiVersion: v1\nkind: Pod\nmetadata: {{name: static-web}}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: web\n    image: busybox\n    imagePullPolicy: IfNotPresent\n    command: [sleep, \"{marker}\"]\n"
            ),
        )
        .unwrap();
    };
    write("3601");
    let node =
        DockerNode::start_with_manifests(&c, "docker-static", Some(manifests.path().to_owned()))
            .unwrap();
    let mirror = format!("static-web-{}", node.name);
    eventually(Duration::from_secs(60), || {
        let out = c.kubectl(V, &["get", "pod", &mirror, "-o", "json"]);
        out.output
            .status
            .success()
            .then(|| json(&out.stdout()))
            .filter(|p| p["status"]["phase"] == "Running")
    })
    .expect("the mirror pod shows the static pod Running");
    let pod = pod_json(&c, &mirror);
    assert!(pod["metadata"]["annotations"]["kubernetes.io/config.mirror"].is_string());
    assert_eq!(pod["metadata"]["ownerReferences"][0]["kind"], "Node");
    let running = node.running_app_containers("static-web");
    assert_eq!(running.len(), 1);

    // Deleting the mirror does not stop the static pod; the mirror comes back.
    c.kubectl(V, &["delete", "pod", &mirror, "--wait=false"])
        .ok();
    eventually(Duration::from_secs(60), || {
        let out = c.kubectl(V, &["get", "pod", &mirror, "-o", "json"]);
        out.output
            .status
            .success()
            .then(|| json(&out.stdout()))
            .filter(|p| {
                p["metadata"]["deletionTimestamp"].is_null() && p["status"]["phase"] == "Running"
            })
    })
    .expect("the mirror pod is recreated");
    assert_eq!(node.running_app_containers("static-web"), running);

    // Without the API server, a changed manifest still replaces the pod's container.
    let _data = c.kill();
    write("3602");
    eventually(Duration::from_secs(60), || {
        let now = node.running_app_containers("static-web");
        (now.len() == 1 && now != running).then_some(())
    })
    .expect("the static pod runs from its manifest while the API server is away");
    std::fs::remove_file(&manifest).unwrap();
    eventually(Duration::from_secs(60), || {
        node.containers().is_empty().then_some(())
    })
    .expect("a removed manifest stops its pod");
}

#[test]
fn post_start_and_pre_stop_hooks_run_and_host_path_volumes_reach_the_host() {
    let c = cluster();
    let _node = DockerNode::start(&c, "docker-hooks").unwrap();
    let host = tempfile::tempdir().unwrap();
    c.apply(
        V,
        &format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: hooked}}
spec:
  terminationGracePeriodSeconds: 10
  containers:
  - name: app
    image: busybox
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3600"]
    lifecycle:
      postStart:
        exec: {{command: ["sh", "-c", "echo started > /host/post-start"]}}
      preStop:
        exec: {{command: ["sh", "-c", "echo stopping > /host/pre-stop"]}}
    volumeMounts: [{{name: host, mountPath: /host}}]
  volumes:
  - name: host
    hostPath: {{path: {}, type: Directory}}
"#,
            host.path().display()
        ),
    );
    wait_ready(&c, "pod/hooked");
    assert_eq!(
        std::fs::read_to_string(host.path().join("post-start")).unwrap(),
        "started\n"
    );
    assert!(!host.path().join("pre-stop").exists());
    c.kubectl(V, &["delete", "pod", "hooked", "--timeout=60s"])
        .ok();
    assert_eq!(
        std::fs::read_to_string(host.path().join("pre-stop")).unwrap(),
        "stopping\n"
    );
}

#[test]
fn top_shows_node_and_pod_usage_from_the_summary_api() {
    let c = cluster();
    let node = DockerNode::start(&c, "docker-top").unwrap();
    c.kubectl(
        V,
        &[
            "run",
            "spin",
            "--image=busybox",
            "--image-pull-policy=IfNotPresent",
            "--",
            "sh",
            "-c",
            "while true; do :; done",
        ],
    )
    .ok();
    wait_ready(&c, "pod/spin");
    let nodes = c.kubectl(V, &["top", "node", &node.name]).ok();
    let rows = compat_tests::table_rows(&nodes);
    assert_eq!(rows[0][..3], ["NAME", "CPU(cores)", "CPU(%)"], "{nodes}");
    assert_eq!(rows[1][0], node.name);
    assert!(rows[1][3].ends_with("Mi"), "{nodes}");
    // The spinning shell keeps most of a core busy.
    let busy = eventually(Duration::from_secs(30), || {
        let out = c.kubectl(V, &["top", "pod", "spin", "--containers"]);
        let rows = compat_tests::table_rows(&out.stdout());
        let cpu: u64 = rows.get(1)?.get(2)?.strip_suffix('m')?.parse().ok()?;
        (cpu >= 300).then_some(rows)
    })
    .expect("top pod shows the busy container");
    assert_eq!(busy[0], ["POD", "NAME", "CPU(cores)", "MEMORY(bytes)"]);
    assert_eq!(busy[1][..2], ["spin", "spin"]);
    let raw = json(
        &c.kubectl(
            V,
            &[
                "get",
                "--raw",
                "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/spin",
            ],
        )
        .ok(),
    );
    assert_eq!(raw["kind"], "PodMetrics");
    assert_eq!(raw["containers"][0]["name"], "spin");
    assert!(
        c.kubectl(
            V,
            &[
                "get",
                "--raw",
                "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/absent"
            ]
        )
        .fails()
        .contains("NotFound")
    );
}

#[test]
fn sidecars_run_beside_the_app_and_stop_when_it_completes() {
    let c = cluster();
    let node = DockerNode::start(&c, "docker-sidecar").unwrap();
    c.apply(
        V,
        r#"
apiVersion: v1
kind: Pod
metadata: {name: job-like}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  initContainers:
  - name: proxy
    image: busybox
    imagePullPolicy: IfNotPresent
    restartPolicy: Always
    command: ["sleep", "3600"]
  containers:
  - name: work
    image: busybox
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "sleep 3; echo done"]
"#,
    );
    let running = eventually(Duration::from_secs(60), || {
        let pod = pod_json(&c, "job-like");
        (pod["status"]["phase"] == "Running").then_some(pod)
    })
    .unwrap_or_else(|| {
        let node_json = c
            .kubectl(
                V,
                &[
                    "get",
                    "node",
                    &node.name,
                    "-o",
                    "jsonpath={.spec.taints} {.status.conditions[?(@.type=='Ready')]}",
                ],
            )
            .stdout();
        panic!(
            "the pod never ran: {}\nnode: {node_json}",
            pod_json(&c, "job-like")["status"]
        )
    });
    let sidecar = &running["status"]["initContainerStatuses"][0];
    assert_eq!(sidecar["started"], true, "{running}");
    assert!(sidecar["state"]["running"].is_object(), "{running}");
    assert_eq!(node.running_app_containers("job-like").len(), 2);
    let done = eventually(Duration::from_secs(60), || {
        let pod = pod_json(&c, "job-like");
        (pod["status"]["phase"] == "Succeeded").then_some(pod)
    })
    .expect("the pod completes although its sidecar never ends");
    assert_eq!(
        done["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"],
        0
    );
    eventually(Duration::from_secs(30), || {
        node.running_app_containers("job-like")
            .is_empty()
            .then_some(())
    })
    .expect("the sidecar is stopped once the pod is done");
}

//! Logs, exec, attach and port-forward through the apiserver to a node's streaming server —
//! here the test double of `compat_tests::node_double`, registered as a Node — with the stock
//! kubectl and kube-rs.

use std::io::Write;
use std::process::{Command, Stdio};

use futures::{AsyncBufReadExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, AttachParams, LogParams};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use compat_tests::node_double::NodeDouble;
use compat_tests::{KUBECTL_VERSIONS, TestCluster, kubectl_binary};

/// A cluster with one Node backed by the double and two pods on it.
async fn cluster_with_node() -> (TestCluster, NodeDouble) {
    let cluster = TestCluster::start().unwrap();
    let node = NodeDouble::start(&cluster.data_dir.path().join("pki"))
        .await
        .unwrap();
    let manifests = format!(
        "{}\n---\n{}\n---\n{}\n---\n{}\n",
        node.node_manifest("node-double"),
        r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web"},"spec":{"nodeName":"node-double","containers":[{"name":"app","image":"busybox"}]}}"#,
        r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"pair"},"spec":{"nodeName":"node-double","containers":[{"name":"main","image":"busybox"},{"name":"side","image":"busybox"}]}}"#,
        r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"waiting"},"spec":{"containers":[{"name":"app","image":"busybox"}]}}"#,
    );
    let file = cluster.data_dir.path().join("streams.yaml");
    std::fs::write(&file, manifests).unwrap();
    cluster
        .kubectl("1.33", &["create", "-f", file.to_str().unwrap()])
        .ok();
    (cluster, node)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_logs_exec_and_attach_reach_the_node() {
    let (cluster, node) = cluster_with_node().await;
    for v in KUBECTL_VERSIONS {
        let logs = cluster.kubectl(v, &["logs", "web"]).ok();
        assert_eq!(
            logs,
            (1..=5)
                .map(|i| format!("app line {i}\n"))
                .collect::<String>()
        );
        assert_eq!(
            cluster.kubectl(v, &["logs", "web", "--tail=2"]).ok(),
            "app line 4\napp line 5\n"
        );
        let stamped = cluster
            .kubectl(v, &["logs", "web", "--timestamps", "--tail=1"])
            .ok();
        assert_eq!(stamped, "2026-01-01T00:00:05.000000000Z app line 5\n");
        assert_eq!(
            cluster
                .kubectl(v, &["logs", "pair", "-c", "side", "--tail=1"])
                .ok(),
            "side line 5\n"
        );
        cluster
            .kubectl(v, &["logs", "web", "--previous", "-f"])
            .ok();
        let last = node.seen().last().cloned().unwrap();
        assert!(
            last.starts_with("/containerLogs/default/web/app?"),
            "{last}"
        );
        assert!(
            last.contains("follow=true") && last.contains("previous=true"),
            "{last}"
        );

        let unscheduled = cluster.kubectl(v, &["logs", "waiting"]).fails();
        assert!(
            unscheduled.contains("does not have a host assigned"),
            "{unscheduled}"
        );
        let bad = cluster.kubectl(v, &["logs", "web", "-c", "nope"]).fails();
        assert!(
            bad.contains("container nope is not valid for pod web"),
            "{bad}"
        );
        assert!(
            cluster
                .kubectl(v, &["logs", "ghost"])
                .fails()
                .contains("NotFound")
        );

        let minor: u32 = v.trim_start_matches("1.").parse().unwrap();
        if minor < 30 {
            // These kubectls speak SPDY for exec; the double speaks WebSocket only, and its
            // refusal reaches kubectl as an error rather than a hang.
            let refused = cluster.kubectl(v, &["exec", "web", "--", "echo", "hi"]);
            refused.fails();
            continue;
        }
        // Stdin is attached (and empty) so the double's scripts start only once kubectl has set
        // up its streams; see the node double's notes.
        let echoed = cluster
            .kubectl(v, &["exec", "-i", "web", "--", "echo", "hello", "world"])
            .ok();
        assert_eq!(echoed, "hello world\n");
        let mut cat = Command::new(kubectl_binary(v))
            .args(["--kubeconfig", cluster.kubeconfig.to_str().unwrap()])
            .args(["exec", "-i", "web", "--", "cat"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        cat.stdin
            .take()
            .unwrap()
            .write_all(b"piped through\n")
            .unwrap();
        let out = cat.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), "piped through\n");
        let failed = cluster.kubectl(v, &["exec", "-i", "web", "--", "sh", "-c", "exit 3"]);
        assert_eq!(failed.output.status.code(), Some(3), "{}", failed.stderr());
        let attached = cluster
            .kubectl(v, &["attach", "-i", "pair", "-c", "side"])
            .ok();
        assert!(attached.contains("attached to side"), "{attached}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_rs_logs_exec_and_port_forward_reach_the_node() {
    let (cluster, node) = cluster_with_node().await;
    let client = cluster.client().await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client, "default");

    let logs = pods
        .logs(
            "web",
            &LogParams {
                tail_lines: Some(3),
                ..LogParams::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(logs, "app line 3\napp line 4\napp line 5\n");
    let lines: Vec<String> = pods
        .log_stream(
            "pair",
            &LogParams {
                container: Some("main".into()),
                follow: true,
                ..LogParams::default()
            },
        )
        .await
        .unwrap()
        .lines()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(lines.len(), 5);
    assert_eq!(lines[0], "main line 1");

    let mut echo = pods
        .exec(
            "web",
            ["echo", "from", "kube-rs"],
            &AttachParams::default().stderr(false),
        )
        .await
        .unwrap();
    let mut stdout = String::new();
    echo.stdout()
        .unwrap()
        .read_to_string(&mut stdout)
        .await
        .unwrap();
    let status = echo.take_status().unwrap().await.unwrap();
    assert_eq!(status.status.as_deref(), Some("Success"));
    assert_eq!(stdout, "from kube-rs\n");

    let mut cat = pods
        .exec(
            "web",
            ["cat"],
            &AttachParams::default().stdin(true).stderr(false),
        )
        .await
        .unwrap();
    let mut stdin = cat.stdin().unwrap();
    stdin.write_all(b"round trip").await.unwrap();
    let mut stdout = cat.stdout().unwrap();
    let mut got = vec![0u8; 10];
    stdout.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"round trip");
    // Closing stdin (v5.channel.k8s.io's stream close) ends `cat`.
    stdin.shutdown().await.unwrap();
    drop(stdin);
    let status = cat.take_status().unwrap().await.unwrap();
    assert_eq!(status.status.as_deref(), Some("Success"));
    cat.join().await.unwrap();

    let failed = pods
        .exec("web", ["false"], &AttachParams::default().stderr(false))
        .await
        .unwrap()
        .take_status()
        .unwrap()
        .await
        .unwrap();
    assert_eq!(failed.reason.as_deref(), Some("NonZeroExitCode"));

    let mut forwarder = pods.portforward("web", &[8080, 9090]).await.unwrap();
    for port in [8080u16, 9090] {
        let mut stream = forwarder.take_stream(port).unwrap();
        let message = format!("hello {port}");
        stream.write_all(message.as_bytes()).await.unwrap();
        let mut back = vec![0u8; message.len()];
        stream.read_exact(&mut back).await.unwrap();
        assert_eq!(String::from_utf8(back).unwrap(), message);
    }
    forwarder.abort();
    assert!(
        node.seen()
            .iter()
            .any(|r| r == "/portForward/default/web?ports=8080&ports=9090")
    );

    // Without an upgrade there is no stream to proxy; bad log options never reach the node.
    let client = cluster.client().await.unwrap();
    let plain =
        http::Request::get("/api/v1/namespaces/default/pods/web/exec?command=ls&stdout=true")
            .body(Vec::new())
            .unwrap();
    let err = client.request_text(plain).await.unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 400 && s.message == "Upgrade request required"),
        "{err:?}"
    );
    let before = node.seen().len();
    let err = pods
        .logs(
            "web",
            &LogParams {
                tail_lines: Some(-1),
                ..LogParams::default()
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 422),
        "{err:?}"
    );
    assert_eq!(node.seen().len(), before);

    // A node nobody answers for: the real server's "error dialing backend", not a hang.
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
    let gone = NodeDouble::start(&cluster.data_dir.path().join("pki"))
        .await
        .unwrap();
    let manifest: serde_json::Value =
        serde_json::from_str(&gone.node_manifest("node-gone")).unwrap();
    drop(gone);
    nodes
        .create(
            &Default::default(),
            &serde_json::from_value(manifest).unwrap(),
        )
        .await
        .unwrap();
    let orphan: Pod = serde_json::from_value(serde_json::json!({"metadata": {"name": "orphan"},
        "spec": {"nodeName": "node-gone", "containers": [{"name": "app", "image": "busybox"}]}}))
    .unwrap();
    pods.create(&Default::default(), &orphan).await.unwrap();
    let err = pods
        .logs("orphan", &LogParams::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 500 && s.message.starts_with("error dialing backend") && s.message.contains("node-gone")),
        "{err:?}"
    );
}

/// A plain HTTP server standing in for a pod's port: it answers with what it was asked.
async fn echo_server() -> std::net::SocketAddr {
    use hyper::service::service_fn;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let service = service_fn(|req: http::Request<hyper::body::Incoming>| async move {
                    let line = format!(
                        "{} {} auth={}",
                        req.method(),
                        req.uri(),
                        req.headers().contains_key(http::header::AUTHORIZATION)
                    );
                    Ok::<_, std::convert::Infallible>(http::Response::new(
                        http_body_util::Full::new(bytes::Bytes::from(line)),
                    ))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_services_and_nodes_proxy_http_to_their_targets() {
    let (cluster, _node) = cluster_with_node().await;
    let backend = echo_server().await;
    let port = backend.port().to_string();
    let v = "1.33";
    cluster
        .kubectl(
            v,
            &[
                "patch",
                "pod",
                "web",
                "--subresource=status",
                "--type=merge",
                "-p",
                r#"{"status":{"podIP":"127.0.0.1"}}"#,
            ],
        )
        .ok();
    let via_pod = cluster
        .kubectl(
            v,
            &[
                "get",
                "--raw",
                &format!("/api/v1/namespaces/default/pods/web:{port}/proxy/hello/there?x=1"),
            ],
        )
        .ok();
    assert_eq!(via_pod, "GET /hello/there?x=1 auth=false");

    let service = format!(
        r#"{{"apiVersion":"v1","kind":"Service","metadata":{{"name":"web"}},"spec":{{"ports":[{{"name":"http","port":80,"targetPort":{port}}}]}}}}
---
{{"apiVersion":"v1","kind":"Endpoints","metadata":{{"name":"web"}},"subsets":[{{"addresses":[{{"ip":"127.0.0.1"}}],"ports":[{{"name":"http","port":{port}}}]}}]}}"#
    );
    let file = cluster.data_dir.path().join("svc.yaml");
    std::fs::write(&file, service).unwrap();
    cluster
        .kubectl(v, &["create", "-f", file.to_str().unwrap()])
        .ok();
    let via_service = cluster
        .kubectl(
            v,
            &[
                "get",
                "--raw",
                "/api/v1/namespaces/default/services/web:http/proxy/",
            ],
        )
        .ok();
    assert_eq!(via_service, "GET / auth=false");
    let posted = cluster
        .kubectl(
            v,
            &[
                "create",
                "--raw",
                "/api/v1/namespaces/default/services/web/proxy/submit",
                "-f",
                file.to_str().unwrap(),
            ],
        )
        .ok();
    assert_eq!(posted, "POST /submit auth=false");

    let via_node = cluster
        .kubectl(
            v,
            &["get", "--raw", "/api/v1/nodes/node-double/proxy/healthz"],
        )
        .ok();
    assert_eq!(via_node, "ok");

    let no_ip = cluster
        .kubectl(
            v,
            &[
                "get",
                "--raw",
                "/api/v1/namespaces/default/pods/pair/proxy/",
            ],
        )
        .fails();
    assert!(no_ip.contains("has no IP address yet"), "{no_ip}");
}

//! The stock kubectl binaries against the real server: what a user types and reads.

use std::io::{BufRead, BufReader};
use std::time::Duration;

use compat_tests::{KUBECTL_VERSIONS, TestCluster, table_rows};

fn deployment_manifest(name: &str, image: &str, replicas: u32) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  replicas: {replicas}\n  selector:\n    matchLabels: {{app: {name}}}\n  template:\n    metadata:\n      labels: {{app: {name}}}\n    spec:\n      containers:\n      - name: app\n        image: {image}\n        ports:\n        - containerPort: 80\n"
    )
}

fn write(cluster: &TestCluster, file: &str, text: &str) -> String {
    let path = cluster.data_dir.path().join(file);
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

#[test]
fn version_reports_the_server_the_types_come_from() {
    let cluster = TestCluster::start().unwrap();
    for v in KUBECTL_VERSIONS {
        let out = cluster.kubectl(v, &["version"]).ok();
        // kubectl 1.27 prints the long `version.Info{...}` form, later ones the short one.
        assert!(
            out.contains("Server Version: v1.33.0") || out.contains(r#"GitVersion:"v1.33.0""#),
            "{out}"
        );
        assert!(out.contains(&format!("v{v}.")), "{out}");
    }
}

#[test]
fn generators_create_namespaces_deployments_configmaps_and_secrets() {
    let cluster = TestCluster::start().unwrap();
    for v in KUBECTL_VERSIONS {
        let ns = format!("team-{}", v.replace('.', "-"));
        assert_eq!(
            cluster
                .kubectl(v, &["create", "namespace", &ns])
                .ok()
                .trim(),
            format!("namespace/{ns} created")
        );
        let out = cluster
            .kubectl(
                v,
                &[
                    "-n",
                    &ns,
                    "create",
                    "deployment",
                    "web",
                    "--image=nginx:1.27",
                    "--replicas=2",
                ],
            )
            .ok();
        assert_eq!(out.trim(), "deployment.apps/web created");
        cluster
            .kubectl(
                v,
                &[
                    "-n",
                    &ns,
                    "create",
                    "configmap",
                    "cfg",
                    "--from-literal=a=1",
                    "--from-literal=b=2",
                ],
            )
            .ok();
        cluster
            .kubectl(
                v,
                &[
                    "-n",
                    &ns,
                    "create",
                    "secret",
                    "generic",
                    "pw",
                    "--from-literal=password=hunter2",
                ],
            )
            .ok();

        let rows = table_rows(&cluster.kubectl(v, &["-n", &ns, "get", "deployments"]).ok());
        assert_eq!(rows[0], ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]);
        assert_eq!(rows[1][..4], ["web", "0/2", "0", "0"]);
        let rows = table_rows(
            &cluster
                .kubectl(v, &["-n", &ns, "get", "configmap", "cfg"])
                .ok(),
        );
        assert_eq!(rows[1][..2], ["cfg", "2"]);
        let rows = table_rows(&cluster.kubectl(v, &["-n", &ns, "get", "secret", "pw"]).ok());
        assert_eq!(rows[0], ["NAME", "TYPE", "DATA", "AGE"]);
        assert_eq!(rows[1][..3], ["pw", "Opaque", "1"]);
        let decoded = cluster
            .kubectl(
                v,
                &[
                    "-n",
                    &ns,
                    "get",
                    "secret",
                    "pw",
                    "-o",
                    "jsonpath={.data.password}",
                ],
            )
            .ok();
        assert_eq!(decoded, "aHVudGVyMg==");
        let image = cluster
            .kubectl(
                v,
                &[
                    "-n",
                    &ns,
                    "get",
                    "deploy",
                    "web",
                    "-o",
                    "jsonpath={.spec.template.spec.containers[0].image}",
                ],
            )
            .ok();
        assert_eq!(image, "nginx:1.27");
        // Creating it again is a clear conflict.
        let err = cluster.kubectl(v, &["create", "namespace", &ns]).fails();
        assert!(
            err.contains(&format!(
                "Error from server (AlreadyExists): namespaces \"{ns}\" already exists"
            )),
            "{err}"
        );
    }
}

#[test]
fn create_and_apply_twice_with_validation_on() {
    let cluster = TestCluster::start().unwrap();
    for v in KUBECTL_VERSIONS {
        let name = format!("app-{}", v.replace('.', "-"));
        let file = write(
            &cluster,
            "dep.yaml",
            &deployment_manifest(&name, "nginx:1.26", 2),
        );
        let out = cluster.kubectl(v, &["apply", "-f", &file]).ok();
        assert_eq!(out.trim(), format!("deployment.apps/{name} created"));
        let file = write(
            &cluster,
            "dep.yaml",
            &deployment_manifest(&name, "nginx:1.27", 3),
        );
        let changed = cluster.kubectl(v, &["apply", "-f", &file]);
        assert_eq!(
            changed.ok().trim(),
            format!("deployment.apps/{name} configured")
        );
        assert!(
            !changed.stderr().contains("warning"),
            "apply warned: {}",
            changed.stderr()
        );
        assert_eq!(
            cluster.kubectl(v, &["apply", "-f", &file]).ok().trim(),
            format!("deployment.apps/{name} unchanged")
        );
        let got = cluster
            .kubectl(v, &["get", "deploy", &name, "-o", "jsonpath={.spec.replicas} {.spec.template.spec.containers[0].image} {.spec.template.spec.containers[0].ports[0].containerPort} {.metadata.generation}"])
            .ok();
        assert_eq!(got, "3 nginx:1.27 80 2");

        let pod = write(
            &cluster,
            "pod.yaml",
            &format!(
                "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p-{name}\n  labels: {{app: {name}}}\nspec:\n  containers:\n  - name: c\n    image: busybox\n"
            ),
        );
        assert_eq!(
            cluster.kubectl(v, &["create", "-f", &pod]).ok().trim(),
            format!("pod/p-{name} created")
        );
        // Unknown fields are refused with validation on.
        let bad = write(
            &cluster,
            "bad.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: strict\ndata:\n  a: b\nbogus: 1\n",
        );
        let err = cluster.kubectl(v, &["create", "-f", &bad]).fails();
        assert!(err.contains("unknown field \"bogus\""), "{err}");
        assert!(
            cluster
                .kubectl(v, &["get", "cm", "strict"])
                .fails()
                .contains("NotFound")
        );
    }
}

#[test]
fn get_shows_tables_wide_yaml_jsonpath_across_namespaces_and_selectors() {
    let cluster = TestCluster::start().unwrap();
    let v = "1.33";
    cluster.kubectl(v, &["create", "namespace", "other"]).ok();
    cluster
        .kubectl(
            v,
            &["run", "web", "--image=nginx", "--labels=app=web,tier=fe"],
        )
        .ok();
    cluster
        .kubectl(v, &["run", "db", "--image=postgres", "--labels=app=db"])
        .ok();
    cluster
        .kubectl(
            v,
            &[
                "-n",
                "other",
                "run",
                "job",
                "--image=busybox",
                "--labels=app=web",
            ],
        )
        .ok();
    for v in KUBECTL_VERSIONS {
        let rows = table_rows(&cluster.kubectl(v, &["get", "pods"]).ok());
        assert_eq!(rows[0], ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]);
        let names: Vec<&str> = rows[1..].iter().map(|r| r[0].as_str()).collect();
        assert_eq!(names, ["db", "web"]);
        assert_eq!(rows[1][1..4], ["0/1", "Pending", "0"]);

        let wide = table_rows(&cluster.kubectl(v, &["get", "pods", "-o", "wide"]).ok());
        assert_eq!(
            wide[0],
            [
                "NAME",
                "READY",
                "STATUS",
                "RESTARTS",
                "AGE",
                "IP",
                "NODE",
                "NOMINATED",
                "NODE",
                "READINESS",
                "GATES"
            ]
        );
        assert_eq!(wide[1][5..7], ["<none>", "<none>"]);

        let all = table_rows(&cluster.kubectl(v, &["get", "pods", "-A"]).ok());
        assert_eq!(all[0][..2], ["NAMESPACE", "NAME"]);
        assert_eq!(all.len(), 4);
        assert!(all.iter().any(|r| r[..2] == ["other", "job"]));

        let labelled = table_rows(
            &cluster
                .kubectl(v, &["get", "pods", "-A", "-l", "app=web"])
                .ok(),
        );
        assert_eq!(labelled.len(), 3);
        let set = table_rows(
            &cluster
                .kubectl(v, &["get", "pods", "-l", "app in (db),!tier"])
                .ok(),
        );
        assert_eq!(set[1][0], "db");
        let by_field = table_rows(
            &cluster
                .kubectl(v, &["get", "pods", "--field-selector", "metadata.name=web"])
                .ok(),
        );
        assert_eq!(by_field.len(), 2);
        assert_eq!(by_field[1][0], "web");
        let none = cluster.kubectl(
            v,
            &["get", "pods", "--field-selector", "status.phase=Running"],
        );
        assert!(
            none.stderr()
                .contains("No resources found in default namespace."),
            "{}",
            none.stderr()
        );

        let yaml = cluster
            .kubectl(v, &["get", "pod", "web", "-o", "yaml"])
            .ok();
        for want in [
            "apiVersion: v1",
            "kind: Pod",
            "name: web",
            "uid:",
            "resourceVersion:",
            "creationTimestamp:",
            "restartPolicy: Always",
            "dnsPolicy: ClusterFirst",
            "imagePullPolicy: Always",
            "phase: Pending",
        ] {
            assert!(yaml.contains(want), "missing {want:?} in\n{yaml}");
        }
        let path = cluster
            .kubectl(
                v,
                &["get", "pods", "-o", "jsonpath={.items[*].metadata.name}"],
            )
            .ok();
        assert_eq!(path, "db web");
    }
}

#[test]
fn get_watch_sees_added_modified_and_deleted() {
    let cluster = TestCluster::start().unwrap();
    for v in KUBECTL_VERSIONS {
        let ns = format!("w{}", v.replace('.', ""));
        cluster.kubectl(v, &["create", "namespace", &ns]).ok();
        let mut watch = cluster.kubectl_spawn(
            v,
            &[
                "-n",
                &ns,
                "get",
                "configmaps",
                "-w",
                "--output-watch-events",
            ],
        );
        let stdout = watch.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let next = || {
            rx.recv_timeout(Duration::from_secs(20))
                .expect("watch printed a line")
        };
        // kubectl prints the header with the first row.
        cluster
            .kubectl(
                v,
                &[
                    "-n",
                    &ns,
                    "create",
                    "configmap",
                    "live",
                    "--from-literal=a=b",
                ],
            )
            .ok();
        assert_eq!(table_rows(&next())[0], ["EVENT", "NAME", "DATA", "AGE"]);
        assert_eq!(table_rows(&next())[0][..3], ["ADDED", "live", "1"]);
        cluster
            .kubectl(
                v,
                &[
                    "-n",
                    &ns,
                    "patch",
                    "configmap",
                    "live",
                    "--type=merge",
                    "-p",
                    r#"{"data":{"c":"d"}}"#,
                ],
            )
            .ok();
        assert_eq!(table_rows(&next())[0][..3], ["MODIFIED", "live", "2"]);
        cluster
            .kubectl(v, &["-n", &ns, "delete", "configmap", "live"])
            .ok();
        assert_eq!(table_rows(&next())[0][..2], ["DELETED", "live"]);
        let _ = watch.kill();
        let _ = watch.wait();
    }
}

#[test]
fn label_annotate_and_all_three_patch_types() {
    let cluster = TestCluster::start().unwrap();
    for v in KUBECTL_VERSIONS {
        let name = format!("d{}", v.replace('.', ""));
        let file = write(
            &cluster,
            "d.yaml",
            &deployment_manifest(&name, "nginx:1.26", 1),
        );
        cluster.kubectl(v, &["create", "-f", &file]).ok();
        assert_eq!(
            cluster
                .kubectl(v, &["label", "deploy", &name, "tier=fe"])
                .ok()
                .trim(),
            format!("deployment.apps/{name} labeled")
        );
        // kubectl 1.27 says "annotate", later ones "annotated".
        let annotated = cluster
            .kubectl(v, &["annotate", "deploy", &name, "note=hi"])
            .ok();
        assert!(
            annotated
                .trim()
                .starts_with(&format!("deployment.apps/{name} annotate")),
            "{annotated}"
        );
        cluster
            .kubectl(v, &["label", "deploy", &name, "tier-"])
            .ok();
        cluster.kubectl(v, &["patch", "deploy", &name, "-p", r#"{"spec":{"template":{"spec":{"containers":[{"name":"app","image":"nginx:1.27"}]}}}}"#]).ok();
        cluster
            .kubectl(
                v,
                &[
                    "patch",
                    "deploy",
                    &name,
                    "--type=merge",
                    "-p",
                    r#"{"spec":{"replicas":3}}"#,
                ],
            )
            .ok();
        cluster
            .kubectl(
                v,
                &[
                    "patch",
                    "deploy",
                    &name,
                    "--type=json",
                    "-p",
                    r#"[{"op":"add","path":"/metadata/labels/j","value":"yes"}]"#,
                ],
            )
            .ok();
        let got = cluster
            .kubectl(v, &["get", "deploy", &name, "-o", "jsonpath={.metadata.labels} {.metadata.annotations.note} {.spec.replicas} {.spec.template.spec.containers[0].image} {.spec.template.spec.containers[0].ports[0].containerPort}"])
            .ok();
        assert_eq!(got, r#"{"j":"yes"} hi 3 nginx:1.27 80"#);
        // The scale subresource, as `kubectl scale` uses it.
        assert_eq!(
            cluster
                .kubectl(v, &["scale", "deploy", &name, "--replicas=5"])
                .ok()
                .trim(),
            format!("deployment.apps/{name} scaled")
        );
        assert_eq!(
            cluster
                .kubectl(
                    v,
                    &["get", "deploy", &name, "-o", "jsonpath={.spec.replicas}"]
                )
                .ok(),
            "5"
        );
        let scale = cluster
            .kubectl(
                v,
                &[
                    "get",
                    "--raw",
                    &format!("/apis/apps/v1/namespaces/default/deployments/{name}/scale"),
                ],
            )
            .ok();
        let scale: serde_json::Value = serde_json::from_str(&scale).unwrap();
        assert_eq!(
            (
                scale["kind"].as_str(),
                scale["spec"]["replicas"].as_i64(),
                scale["status"]["selector"].as_str()
            ),
            (Some("Scale"), Some(5), Some(format!("app={name}").as_str()))
        );
        let err = cluster
            .kubectl(
                v,
                &[
                    "patch",
                    "deploy",
                    &name,
                    "--type=json",
                    "-p",
                    r#"[{"op":"replace","path":"/spec/nope/deeper","value":1}]"#,
                ],
            )
            .fails();
        assert!(err.contains("The request is invalid"), "{err}");
        assert!(err.contains("/spec/nope/deeper"), "{err}");
    }
}

#[test]
fn edit_replace_and_delete_behave_like_a_cluster() {
    let cluster = TestCluster::start().unwrap();
    let editor = write(
        &cluster,
        "editor.sh",
        "#!/bin/sh\nsed -i 's/^data:/data:\\n  edited: \"yes\"/' \"$1\"\n",
    );
    std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    for v in KUBECTL_VERSIONS {
        let name = format!("c{}", v.replace('.', ""));
        cluster
            .kubectl(v, &["create", "configmap", &name, "--from-literal=a=1"])
            .ok();
        let out = cluster
            .kubectl_with_env(v, &["edit", "configmap", &name], &[("EDITOR", &editor)])
            .ok();
        assert_eq!(out.trim(), format!("configmap/{name} edited"));
        assert_eq!(
            cluster
                .kubectl(v, &["get", "cm", &name, "-o", "jsonpath={.data.edited}"])
                .ok(),
            "yes"
        );

        let yaml = cluster.kubectl(v, &["get", "cm", &name, "-o", "yaml"]).ok();
        let file = write(&cluster, "cm.yaml", &yaml.replace("a: \"1\"", "a: \"2\""));
        assert_eq!(
            cluster.kubectl(v, &["replace", "-f", &file]).ok().trim(),
            format!("configmap/{name} replaced")
        );
        // The same file again carries a stale resourceVersion.
        let err = cluster.kubectl(v, &["replace", "-f", &file]).fails();
        assert!(err.contains("Error from server (Conflict)"), "{err}");
        assert_eq!(
            cluster
                .kubectl(v, &["get", "cm", &name, "-o", "jsonpath={.data.a}"])
                .ok(),
            "2"
        );

        assert_eq!(
            cluster
                .kubectl(v, &["delete", "configmap", &name])
                .ok()
                .trim(),
            format!("configmap \"{name}\" deleted")
        );
        let err = cluster.kubectl(v, &["get", "configmap", &name]).fails();
        assert!(
            err.contains(&format!(
                "Error from server (NotFound): configmaps \"{name}\" not found"
            )),
            "{err}"
        );
        cluster
            .kubectl(v, &["run", &format!("p{name}"), "--image=busybox"])
            .ok();
        assert_eq!(
            cluster
                .kubectl(v, &["delete", "pod", &format!("p{name}")])
                .ok()
                .trim(),
            format!("pod \"p{name}\" deleted")
        );
    }
}

#[test]
fn explain_api_resources_and_api_versions_read_discovery_and_openapi() {
    let cluster = TestCluster::start().unwrap();
    for v in KUBECTL_VERSIONS {
        let explain = cluster
            .kubectl(v, &["explain", "pods.spec.containers"])
            .ok();
        assert!(explain.contains("KIND:       Pod"), "{explain}");
        assert!(
            explain.contains("FIELD: containers <[]Container>"),
            "{explain}"
        );
        assert!(
            explain.contains("List of containers belonging to the pod."),
            "{explain}"
        );
        let deploy = cluster
            .kubectl(v, &["explain", "deployment.spec.strategy"])
            .ok();
        assert!(deploy.contains("GROUP:      apps"), "{deploy}");

        let resources = table_rows(&cluster.kubectl(v, &["api-resources"]).ok());
        assert_eq!(
            resources[0],
            ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
        );
        for want in [
            ["pods", "po", "v1", "true", "Pod"],
            ["deployments", "deploy", "apps/v1", "true", "Deployment"],
            ["namespaces", "ns", "v1", "false", "Namespace"],
        ] {
            assert!(resources.iter().any(|r| r[..] == want), "{want:?} missing");
        }
        let versions = cluster.kubectl(v, &["api-versions"]).ok();
        for want in [
            "apps/v1",
            "batch/v1",
            "coordination.k8s.io/v1",
            "discovery.k8s.io/v1",
            "v1",
        ] {
            assert!(
                versions.lines().any(|l| l == want),
                "{want} missing from {versions}"
            );
        }
        let v2: serde_json::Value =
            serde_json::from_str(&cluster.kubectl(v, &["get", "--raw", "/openapi/v2"]).ok())
                .unwrap();
        assert_eq!(v2["swagger"], "2.0");
        assert!(v2["definitions"]["io.k8s.api.core.v1.Pod"].is_object());
        let all = cluster.kubectl(v, &["get", "all", "-n", "kube-system"]);
        assert!(all.output.status.success(), "{}", all.stderr());
    }
}

#[test]
fn objects_survive_a_restart_on_the_same_data_dir() {
    let cluster = TestCluster::start().unwrap();
    let v = "1.33";
    cluster.kubectl(v, &["create", "namespace", "keep"]).ok();
    cluster
        .kubectl(
            v,
            &[
                "-n",
                "keep",
                "create",
                "configmap",
                "c",
                "--from-literal=k=v",
            ],
        )
        .ok();
    let rv = cluster
        .kubectl(
            v,
            &[
                "-n",
                "keep",
                "get",
                "cm",
                "c",
                "-o",
                "jsonpath={.metadata.resourceVersion}",
            ],
        )
        .ok();
    let dir = cluster.kill();
    let cluster = TestCluster::start_in(dir, &[]).unwrap();
    assert_eq!(
        cluster
            .kubectl(
                v,
                &["-n", "keep", "get", "cm", "c", "-o", "jsonpath={.data.k}"]
            )
            .ok(),
        "v"
    );
    let after = cluster
        .kubectl(
            v,
            &[
                "-n",
                "keep",
                "get",
                "cm",
                "c",
                "-o",
                "jsonpath={.metadata.resourceVersion}",
            ],
        )
        .ok();
    assert_eq!(rv, after);
    cluster
        .kubectl(v, &["-n", "keep", "create", "configmap", "d"])
        .ok();
    let newer: u64 = cluster
        .kubectl(
            v,
            &[
                "-n",
                "keep",
                "get",
                "cm",
                "d",
                "-o",
                "jsonpath={.metadata.resourceVersion}",
            ],
        )
        .ok()
        .parse()
        .unwrap();
    assert!(newer > rv.parse::<u64>().unwrap());
}

#[test]
fn requests_without_a_client_certificate_are_unauthorized() {
    let cluster = TestCluster::start().unwrap();
    let anonymous = cluster.data_dir.path().join("anon.kubeconfig");
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cluster.kubeconfig).unwrap()).unwrap();
    let mut anon = config.clone();
    anon["users"][0]["user"] = serde_json::json!({"token": "not-a-real-token"});
    std::fs::write(&anonymous, anon.to_string()).unwrap();
    let out = std::process::Command::new(compat_tests::kubectl_binary("1.33"))
        .args(["--kubeconfig"])
        .arg(&anonymous)
        .args(["get", "--raw", "/api/v1/namespaces"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("Unauthorized"), "{err}");
    // The same kubectl with the admin certificate gets through.
    let ok = cluster
        .kubectl("1.33", &["get", "--raw", "/readyz?verbose"])
        .ok();
    assert!(ok.contains("readyz check passed"), "{ok}");
}

#[test]
fn every_create_generator_works_and_prints_real_columns() {
    let cluster = TestCluster::start().unwrap();
    for v in KUBECTL_VERSIONS {
        let ns = format!("gen{}", v.replace('.', ""));
        cluster.kubectl(v, &["create", "namespace", &ns]).ok();
        let n = |args: &[&str]| {
            let mut all = vec!["-n", ns.as_str(), "create"];
            all.extend_from_slice(args);
            cluster.kubectl(v, &all).ok().trim().to_owned()
        };
        assert_eq!(
            n(&["role", "reader", "--verb=get,list", "--resource=pods"]),
            "role.rbac.authorization.k8s.io/reader created"
        );
        assert_eq!(
            n(&[
                "rolebinding",
                "rb",
                "--role=reader",
                "--user=alice",
                "--serviceaccount=default:sa"
            ]),
            "rolebinding.rbac.authorization.k8s.io/rb created"
        );
        assert_eq!(
            n(&["quota", "q", "--hard=pods=10,cpu=2,limits.memory=1Gi"]),
            "resourcequota/q created"
        );
        assert_eq!(
            n(&["pdb", "p", "--selector=app=web", "--min-available=1"]),
            "poddisruptionbudget.policy/p created"
        );
        assert_eq!(
            n(&["ingress", "ing", "--rule=foo.com/bar=svc:80"]),
            "ingress.networking.k8s.io/ing created"
        );
        assert_eq!(n(&["serviceaccount", "sa"]), "serviceaccount/sa created");
        assert_eq!(n(&["job", "j", "--image=busybox"]), "job.batch/j created");
        assert_eq!(
            n(&["cronjob", "cj", "--image=busybox", "--schedule=*/5 * * * *"]),
            "cronjob.batch/cj created"
        );
        assert_eq!(
            n(&["service", "clusterip", "s", "--tcp=80:8080"]),
            "service/s created"
        );
        let cluster_scoped = format!("c{}", v.replace('.', ""));
        assert_eq!(
            cluster
                .kubectl(
                    v,
                    &[
                        "create",
                        "clusterrole",
                        &cluster_scoped,
                        "--verb=get",
                        "--resource=nodes"
                    ]
                )
                .ok()
                .trim(),
            format!("clusterrole.rbac.authorization.k8s.io/{cluster_scoped} created")
        );
        cluster
            .kubectl(
                v,
                &[
                    "create",
                    "clusterrolebinding",
                    &cluster_scoped,
                    &format!("--clusterrole={cluster_scoped}"),
                    "--group=devs",
                ],
            )
            .ok();
        cluster
            .kubectl(
                v,
                &["create", "priorityclass", &cluster_scoped, "--value=1000"],
            )
            .ok();

        let get = |args: &[&str]| {
            let mut all = vec!["-n", ns.as_str(), "get"];
            all.extend_from_slice(args);
            table_rows(&cluster.kubectl(v, &all).ok())
        };
        let rb = get(&["rolebinding", "rb", "-o", "wide"]);
        assert_eq!(
            rb[0],
            ["NAME", "ROLE", "AGE", "USERS", "GROUPS", "SERVICEACCOUNTS"]
        );
        assert_eq!(
            (rb[1][1].as_str(), rb[1][3].as_str(), rb[1][4].as_str()),
            ("Role/reader", "alice", "default/sa")
        );
        let quota = get(&["quota", "q"]);
        assert_eq!(quota[0], ["NAME", "AGE", "REQUEST", "LIMIT"]);
        assert_eq!(
            quota[1][2..],
            ["cpu:", "0/2,", "pods:", "0/10", "limits.memory:", "0/1Gi"]
        );
        let pdb = get(&["pdb", "p"]);
        assert_eq!(pdb[1][..4], ["p", "1", "N/A", "0"]);
        let ing = get(&["ingress", "ing"]);
        assert_eq!(
            ing[0],
            ["NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS", "AGE"]
        );
        assert_eq!(ing[1][..3], ["ing", "<none>", "foo.com"]);
        let job = cluster.kubectl(v, &["-n", &ns, "get", "job", "j", "-o", "jsonpath={.spec.selector.matchLabels} {.spec.template.metadata.labels.job-name}"]).ok();
        assert!(
            job.starts_with(r#"{"batch.kubernetes.io/controller-uid":"#) && job.ends_with(" j"),
            "{job}"
        );
        let pc = table_rows(
            &cluster
                .kubectl(v, &["get", "priorityclass", &cluster_scoped])
                .ok(),
        );
        assert_eq!(
            pc[0],
            ["NAME", "VALUE", "GLOBAL-DEFAULT", "AGE", "PREEMPTIONPOLICY"]
        );
        assert_eq!(
            (pc[1][1].as_str(), pc[1][4].as_str()),
            ("1000", "PreemptLowerPriority")
        );
        // A binding's role cannot be swapped.
        let err = cluster
            .kubectl(
                v,
                &[
                    "-n",
                    &ns,
                    "patch",
                    "rolebinding",
                    "rb",
                    "--type=merge",
                    "-p",
                    r#"{"roleRef":{"name":"other"}}"#,
                ],
            )
            .fails();
        assert!(err.contains("roleRef"), "{err}");
    }
}

#[test]
fn auth_can_i_and_whoami_answer_truthfully() {
    let cluster = TestCluster::start().unwrap();
    for v in KUBECTL_VERSIONS {
        assert_eq!(
            cluster
                .kubectl(v, &["auth", "can-i", "create", "pods"])
                .ok()
                .trim(),
            "yes"
        );
        assert_eq!(
            cluster
                .kubectl(v, &["auth", "can-i", "get", "/healthz"])
                .ok()
                .trim(),
            "yes"
        );
        let list = table_rows(&cluster.kubectl(v, &["auth", "can-i", "--list"]).ok());
        assert_eq!(
            list[0],
            [
                "Resources",
                "Non-Resource",
                "URLs",
                "Resource",
                "Names",
                "Verbs"
            ]
        );
        assert!(
            list.iter()
                .any(|r| r[0] == "*.*" && r.last().map(String::as_str) == Some("[*]")),
            "{list:?}"
        );
        if v == "1.27" {
            // kubectl 1.27 asks for SelfSubjectReview v1alpha1/v1beta1, which a 1.33 server
            // no longer serves either.
            continue;
        }
        let whoami = table_rows(&cluster.kubectl(v, &["auth", "whoami"]).ok());
        assert_eq!(whoami[0], ["ATTRIBUTE", "VALUE"]);
        assert_eq!(whoami[1], ["Username", "kubernetes-admin"]);
        assert_eq!(
            whoami[2],
            ["Groups", "[system:masters", "system:authenticated]"]
        );
    }
}

#[test]
fn services_get_cluster_ips_and_node_ports_never_twice() {
    let cluster = TestCluster::start().unwrap();
    let v = "1.33";
    let k = table_rows(&cluster.kubectl(v, &["get", "svc", "kubernetes"]).ok());
    assert_eq!(
        k[1][..5],
        ["kubernetes", "ClusterIP", "10.96.0.1", "<none>", "443/TCP"]
    );
    let ep = table_rows(&cluster.kubectl(v, &["get", "endpoints", "kubernetes"]).ok());
    assert!(ep[1][1].starts_with("127.0.0.1:"), "{ep:?}");

    cluster
        .kubectl(v, &["create", "service", "clusterip", "a", "--tcp=80:8080"])
        .ok();
    let ip = cluster
        .kubectl(v, &["get", "svc", "a", "-o", "jsonpath={.spec.clusterIP}"])
        .ok();
    assert!(ip.starts_with("10.") && ip != "10.96.0.1", "{ip}");
    let families = cluster
        .kubectl(
            v,
            &[
                "get",
                "svc",
                "a",
                "-o",
                "jsonpath={.spec.ipFamilies} {.spec.ipFamilyPolicy}",
            ],
        )
        .ok();
    assert_eq!(families, r#"["IPv4"] SingleStack"#);
    cluster
        .kubectl(
            v,
            &[
                "create",
                "service",
                "nodeport",
                "np",
                "--tcp=80:8080",
                "--node-port=30080",
            ],
        )
        .ok();
    let err = cluster
        .kubectl(
            v,
            &[
                "create",
                "service",
                "nodeport",
                "np2",
                "--tcp=80:8080",
                "--node-port=30080",
            ],
        )
        .fails();
    assert!(err.contains("provided port is already allocated"), "{err}");

    // After a restart the reservations still hold; a deleted Service's IP is free again.
    let dir = cluster.kill();
    let cluster = TestCluster::start_in(dir, &[]).unwrap();
    let taken = write(
        &cluster,
        "taken.yaml",
        &format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: b\nspec:\n  clusterIP: {ip}\n  ports:\n  - port: 80\n"
        ),
    );
    let err = cluster.kubectl(v, &["create", "-f", &taken]).fails();
    assert!(err.contains("provided IP is already allocated"), "{err}");
    cluster.kubectl(v, &["delete", "svc", "a"]).ok();
    assert_eq!(
        cluster.kubectl(v, &["create", "-f", &taken]).ok().trim(),
        "service/b created"
    );
    assert_eq!(
        cluster
            .kubectl(v, &["get", "svc", "b", "-o", "jsonpath={.spec.clusterIP}"])
            .ok(),
        ip
    );
    let out_of_range = write(
        &cluster,
        "far.yaml",
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: c\nspec:\n  clusterIP: 192.168.1.1\n  ports:\n  - port: 80\n",
    );
    assert!(
        cluster
            .kubectl(v, &["create", "-f", &out_of_range])
            .fails()
            .contains("not in the valid range")
    );
}

#[test]
fn metrics_count_requests_by_verb_resource_and_code() {
    let cluster = TestCluster::start().unwrap();
    let v = "1.33";
    cluster.kubectl(v, &["get", "namespaces"]).ok();
    cluster.kubectl(v, &["get", "configmap", "missing"]).fails();
    let text = cluster.kubectl(v, &["get", "--raw", "/metrics"]).ok();
    assert!(
        text.contains(r#"apiserver_request_total{verb="list",resource="namespaces",code="200"}"#),
        "{text}"
    );
    assert!(
        text.contains(r#"apiserver_request_total{verb="get",resource="configmaps",code="404"} 1"#),
        "{text}"
    );
    assert!(
        text.contains("apiserver_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(
        text.contains(r#"apiserver_storage_operation_duration_seconds_count{operation="create"}"#),
        "{text}"
    );
    assert!(
        text.contains(r#"apiserver_watch_cache_objects{resource="core/namespaces"} 4"#),
        "{text}"
    );
    assert!(
        text.contains("apiserver_current_inflight_requests 1"),
        "the /metrics request itself is in flight: {text}"
    );
}

#[test]
fn autoscalers_and_events_are_served_at_both_versions_over_one_stored_form() {
    let cluster = TestCluster::start().unwrap();
    for v in KUBECTL_VERSIONS {
        let name = format!("web{}", v.replace('.', ""));
        cluster
            .kubectl(v, &["create", "deployment", &name, "--image=nginx"])
            .ok();
        // `kubectl autoscale` posts an autoscaling/v1 object as protobuf.
        let out = cluster
            .kubectl(
                v,
                &[
                    "autoscale",
                    "deploy",
                    &name,
                    "--min=2",
                    "--max=5",
                    "--cpu-percent=70",
                ],
            )
            .ok();
        assert_eq!(
            out.trim(),
            format!("horizontalpodautoscaler.autoscaling/{name} autoscaled")
        );
        let rows = table_rows(&cluster.kubectl(v, &["get", "hpa", &name]).ok());
        assert_eq!(
            rows[0],
            [
                "NAME",
                "REFERENCE",
                "TARGETS",
                "MINPODS",
                "MAXPODS",
                "REPLICAS",
                "AGE"
            ]
        );
        assert_eq!(
            rows[1][..6],
            [
                name.as_str(),
                &format!("Deployment/{name}"),
                "cpu:",
                "<unknown>/70%",
                "2",
                "5"
            ]
        );
        let v1: serde_json::Value = serde_json::from_str(
            &cluster.kubectl(v, &["get", "--raw", &format!("/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers/{name}")]).ok(),
        )
        .unwrap();
        assert_eq!(
            (
                v1["apiVersion"].as_str(),
                v1["spec"]["targetCPUUtilizationPercentage"].as_i64()
            ),
            (Some("autoscaling/v1"), Some(70))
        );
        let v2 = cluster
            .kubectl(
                v,
                &[
                    "get",
                    "hpa",
                    &name,
                    "-o",
                    "jsonpath={.apiVersion} {.spec.metrics[0].resource.target.averageUtilization}",
                ],
            )
            .ok();
        assert_eq!(v2, "autoscaling/v2 70");
        let all = cluster.kubectl(v, &["get", "all"]).ok();
        assert!(
            all.contains(&format!("horizontalpodautoscaler.autoscaling/{name}")),
            "{all}"
        );
    }
    let event = "apiVersion: events.k8s.io/v1\nkind: Event\nmetadata: {name: ev1}\neventTime: \"2026-01-01T00:00:00.000000Z\"\nreportingController: demo\nreportingInstance: demo-1\naction: Testing\nreason: Hello\nnote: written with events.k8s.io\ntype: Normal\nregarding: {kind: Deployment, name: web, namespace: default}\n";
    let path = cluster.data_dir.path().join("ev.yaml");
    std::fs::write(&path, event).unwrap();
    cluster
        .kubectl("1.33", &["create", "-f", path.to_str().unwrap()])
        .ok();
    // The same event through core/v1, as `kubectl get events` reads it.
    let core = cluster.kubectl("1.33", &["get", "events", "-o", "jsonpath={.items[0].apiVersion} {.items[0].message} {.items[0].involvedObject.name}"]).ok();
    assert_eq!(core, "v1 written with events.k8s.io web");
    let rows = table_rows(&cluster.kubectl("1.33", &["get", "events"]).ok());
    assert_eq!(rows[1][1..4], ["Normal", "Hello", "deployment/web"]);
}

#[test]
fn cordon_taint_and_drain_evict_pods_unless_a_budget_forbids_it() {
    let cluster = TestCluster::start().unwrap();
    let v = "1.33";
    let node = write(
        &cluster,
        "node.yaml",
        "apiVersion: v1\nkind: Node\nmetadata: {name: node-1}\n",
    );
    cluster.kubectl(v, &["create", "-f", &node]).ok();
    assert_eq!(
        cluster.kubectl(v, &["cordon", "node-1"]).ok().trim(),
        "node/node-1 cordoned"
    );
    let rows = table_rows(&cluster.kubectl(v, &["get", "nodes"]).ok());
    assert_eq!(rows[1][1], "Unknown,SchedulingDisabled");
    cluster
        .kubectl(v, &["taint", "node", "node-1", "dedicated=gpu:NoSchedule"])
        .ok();
    let taints = cluster
        .kubectl(
            v,
            &[
                "get",
                "node",
                "node-1",
                "-o",
                "jsonpath={.spec.taints[0].key}={.spec.taints[0].value}:{.spec.taints[0].effect}",
            ],
        )
        .ok();
    assert_eq!(taints, "dedicated=gpu:NoSchedule");
    for (pod, labels) in [("free", "app=free"), ("guarded", "app=guarded")] {
        let yaml = format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {pod}, labels: {{{}}}}}\nspec:\n  nodeName: node-1\n  containers: [{{name: c, image: busybox}}]\n",
            labels.replace('=', ": ")
        );
        let file = write(&cluster, &format!("{pod}.yaml"), &yaml);
        cluster.kubectl(v, &["create", "-f", &file]).ok();
        // Running pods are the ones budgets protect.
        cluster
            .kubectl(
                v,
                &[
                    "patch",
                    "pod",
                    pod,
                    "--subresource=status",
                    "--type=merge",
                    "-p",
                    r#"{"status":{"phase":"Running"}}"#,
                ],
            )
            .ok();
    }
    cluster
        .kubectl(
            v,
            &[
                "create",
                "pdb",
                "guard",
                "--selector=app=guarded",
                "--min-available=1",
            ],
        )
        .ok();
    let out = cluster
        .kubectl(
            v,
            &[
                "drain",
                "node-1",
                "--force",
                "--pod-selector=app=free",
                // node-1 has no kubelet to finish a graceful deletion, so (as on a dead
                // node) the pods go without one.
                "--grace-period=0",
                "--timeout=20s",
            ],
        )
        .ok();
    assert!(
        out.contains("pod/free evicted") && out.contains("node/node-1 drained"),
        "{out}"
    );
    assert!(
        cluster
            .kubectl(v, &["get", "pod", "free"])
            .fails()
            .contains("NotFound")
    );
    let blocked = cluster.kubectl(
        v,
        &[
            "drain",
            "node-1",
            "--force",
            "--pod-selector=app=guarded",
            "--timeout=3s",
        ],
    );
    let text = blocked.stderr() + &blocked.stdout();
    assert!(
        text.contains("Cannot evict pod as it would violate the pod's disruption budget"),
        "{text}"
    );
    assert_eq!(
        cluster
            .kubectl(
                v,
                &["get", "pod", "guarded", "-o", "jsonpath={.metadata.name}"]
            )
            .ok(),
        "guarded"
    );
}

#[test]
fn changing_a_service_type_allocates_and_releases_node_ports() {
    let cluster = TestCluster::start().unwrap();
    let v = "1.33";
    cluster
        .kubectl(v, &["create", "service", "clusterip", "s", "--tcp=80:8080"])
        .ok();
    cluster
        .kubectl(
            v,
            &["patch", "svc", "s", "-p", r#"{"spec":{"type":"NodePort"}}"#],
        )
        .ok();
    let port: u16 = cluster
        .kubectl(
            v,
            &[
                "get",
                "svc",
                "s",
                "-o",
                "jsonpath={.spec.ports[0].nodePort}",
            ],
        )
        .ok()
        .parse()
        .unwrap();
    assert!((30000..=32767).contains(&port), "{port}");
    let taken = write(
        &cluster,
        "taken.yaml",
        &format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: t}}\nspec:\n  type: NodePort\n  ports: [{{port: 80, nodePort: {port}}}]\n"
        ),
    );
    assert!(
        cluster
            .kubectl(v, &["create", "-f", &taken])
            .fails()
            .contains("provided port is already allocated")
    );
    // Back to ClusterIP: the node port is gone and free again.
    cluster
        .kubectl(
            v,
            &[
                "patch",
                "svc",
                "s",
                "-p",
                r#"{"spec":{"type":"ClusterIP"}}"#,
            ],
        )
        .ok();
    assert_eq!(
        cluster
            .kubectl(
                v,
                &[
                    "get",
                    "svc",
                    "s",
                    "-o",
                    "jsonpath={.spec.ports[0].nodePort}"
                ]
            )
            .ok(),
        ""
    );
    assert_eq!(
        cluster.kubectl(v, &["create", "-f", &taken]).ok().trim(),
        "service/t created"
    );
}

#[test]
fn a_service_turned_external_name_and_back_releases_and_regains_a_cluster_ip() {
    let cluster = TestCluster::start().unwrap();
    let v = "1.33";
    cluster
        .kubectl(v, &["create", "service", "clusterip", "s", "--tcp=80:8080"])
        .ok();
    let ip = cluster
        .kubectl(v, &["get", "svc", "s", "-o", "jsonpath={.spec.clusterIP}"])
        .ok();
    cluster
        .kubectl(
            v,
            &[
                "patch",
                "svc",
                "s",
                "--type=merge",
                "-p",
                r#"{"spec":{"type":"ExternalName","externalName":"example.com"}}"#,
            ],
        )
        .ok();
    assert_eq!(
        cluster
            .kubectl(v, &["get", "svc", "s", "-o", "jsonpath={.spec.clusterIP}"])
            .ok(),
        ""
    );
    assert!(
        !cluster
            .kubectl(v, &["get", "ipaddresses", "-o", "name"])
            .ok()
            .contains(&ip),
        "{ip} was released"
    );
    cluster
        .kubectl(
            v,
            &[
                "patch",
                "svc",
                "s",
                "--type=merge",
                "-p",
                r#"{"spec":{"type":"ClusterIP","externalName":null}}"#,
            ],
        )
        .ok();
    let again = cluster
        .kubectl(v, &["get", "svc", "s", "-o", "jsonpath={.spec.clusterIP}"])
        .ok();
    assert!(again.starts_with("10."), "{again}");
    assert!(
        cluster
            .kubectl(v, &["get", "ipaddresses", "-o", "name"])
            .ok()
            .contains(&again)
    );
}

#[test]
fn server_side_apply_owns_fields_reports_conflicts_and_upgrades_client_side_apply() {
    let cluster = TestCluster::start().unwrap();
    for v in KUBECTL_VERSIONS {
        let name = format!("ssa-{}", v.replace('.', "-"));
        let file = write(
            &cluster,
            "ssa.yaml",
            &deployment_manifest(&name, "nginx:1.26", 2),
        );
        assert_eq!(
            cluster
                .kubectl(v, &["apply", "--server-side", "-f", &file])
                .ok()
                .trim(),
            format!("deployment.apps/{name} serverside-applied")
        );
        let managers = |cluster: &TestCluster| {
            cluster
                .kubectl(v, &["get", "deploy", &name, "-o", "jsonpath={range .metadata.managedFields[*]}{.manager}/{.operation}/{.subresource} {end}"])
                .ok()
        };
        assert_eq!(managers(&cluster).trim(), "kubectl/Apply/");
        let owned = cluster
            .kubectl(
                v,
                &[
                    "get",
                    "deploy",
                    &name,
                    "--show-managed-fields",
                    "-o",
                    "jsonpath={.metadata.managedFields[0].fieldsV1.f:spec}",
                ],
            )
            .ok();
        assert!(owned.contains("\"f:replicas\":{}"), "{owned}");
        assert!(
            owned.contains("\"k:{\\\"name\\\":\\\"app\\\"}\""),
            "{owned}"
        );

        // Another manager takes replicas; applying a different count is then a conflict.
        cluster
            .kubectl(v, &["scale", "deploy", &name, "--replicas=5"])
            .ok();
        assert!(
            managers(&cluster).contains("/Update/scale"),
            "{}",
            managers(&cluster)
        );
        let file = write(
            &cluster,
            "ssa.yaml",
            &deployment_manifest(&name, "nginx:1.26", 3),
        );
        let err = cluster
            .kubectl(v, &["apply", "--server-side", "-f", &file])
            .fails();
        assert!(err.contains("Apply failed with 1 conflict"), "{err}");
        assert!(err.contains(".spec.replicas"), "{err}");
        assert!(err.contains("--force-conflicts"), "{err}");
        let replicas = |cluster: &TestCluster| {
            cluster
                .kubectl(
                    v,
                    &["get", "deploy", &name, "-o", "jsonpath={.spec.replicas}"],
                )
                .ok()
        };
        assert_eq!(replicas(&cluster), "5", "a refused apply changes nothing");
        // Applying the value the other manager set is shared ownership, not a conflict.
        let same = write(
            &cluster,
            "same.yaml",
            &deployment_manifest(&name, "nginx:1.26", 5),
        );
        cluster
            .kubectl(v, &["apply", "--server-side", "-f", &same])
            .ok();
        cluster
            .kubectl(
                v,
                &["apply", "--server-side", "--force-conflicts", "-f", &file],
            )
            .ok();
        assert_eq!(replicas(&cluster), "3");
        assert!(
            !managers(&cluster).contains("/Update/scale"),
            "forcing took replicas from the scaler: {}",
            managers(&cluster)
        );

        // Dry runs and diffs leave the object alone; diff exits 1 when there are differences.
        let newer = write(
            &cluster,
            "newer.yaml",
            &deployment_manifest(&name, "nginx:1.27", 3),
        );
        let dry = cluster
            .kubectl(
                v,
                &["apply", "--server-side", "--dry-run=server", "-f", &newer],
            )
            .ok();
        assert!(dry.contains("(server dry run)"), "{dry}");
        assert_eq!(
            cluster
                .kubectl(v, &["diff", "--server-side", "-f", &file])
                .output
                .status
                .code(),
            Some(0)
        );
        let diff = cluster.kubectl(v, &["diff", "--server-side", "-f", &newer]);
        assert_eq!(diff.output.status.code(), Some(1), "{}", diff.stderr());
        assert!(
            diff.stdout().contains("+      - image: nginx:1.27"),
            "{}",
            diff.stdout()
        );
        let image = cluster
            .kubectl(
                v,
                &[
                    "get",
                    "deploy",
                    &name,
                    "-o",
                    "jsonpath={.spec.template.spec.containers[0].image}",
                ],
            )
            .ok();
        assert_eq!(image, "nginx:1.26");

        // Client-side apply first, then server-side with a changed manifest: kubectl upgrades
        // the ownership of the client-side manager instead of conflicting with it.
        let csa = format!("csa-{}", v.replace('.', "-"));
        let file = write(
            &cluster,
            "csa.yaml",
            &deployment_manifest(&csa, "nginx:1.26", 1),
        );
        cluster.kubectl(v, &["apply", "-f", &file]).ok();
        let diff = cluster.kubectl(v, &["diff", "-f", &file]);
        assert_eq!(diff.output.status.code(), Some(0), "{}", diff.stderr());
        let file = write(
            &cluster,
            "csa.yaml",
            &deployment_manifest(&csa, "nginx:1.26", 4),
        );
        assert_eq!(
            cluster
                .kubectl(v, &["diff", "-f", &file])
                .output
                .status
                .code(),
            Some(1)
        );
        cluster
            .kubectl(v, &["apply", "--server-side", "-f", &file])
            .ok();
        let after = cluster
            .kubectl(v, &["get", "deploy", &csa, "-o", "jsonpath={.spec.replicas} {range .metadata.managedFields[*]}{.manager}/{.operation} {end}"])
            .ok();
        assert!(after.starts_with("4 "), "{after}");
        assert!(after.contains("kubectl/Apply"), "{after}");
        assert!(!after.contains("kubectl-client-side-apply"), "{after}");
    }
}

#[test]
fn set_describe_events_get_all_explain_and_wait() {
    let cluster = TestCluster::start().unwrap();
    let kinds = write(
        &cluster,
        "kinds.yaml",
        "apiVersion: v1\nkind: Node\nmetadata: {name: node-a}\n---\napiVersion: v1\nkind: PersistentVolume\nmetadata: {name: pv1}\nspec: {capacity: {storage: 1Gi}, accessModes: [ReadWriteOnce], hostPath: {path: /tmp/pv1}}\n---\napiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: pvc1}\nspec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}\n---\napiVersion: v1\nkind: LimitRange\nmetadata: {name: lr1}\nspec: {limits: [{type: Container, default: {cpu: 100m}}]}\n---\napiVersion: v1\nkind: ReplicationController\nmetadata: {name: rc1}\nspec: {replicas: 1, selector: {app: rc1}, template: {metadata: {labels: {app: rc1}}, spec: {containers: [{name: c, image: busybox}]}}}\n",
    );
    cluster.kubectl("1.33", &["create", "-f", &kinds]).ok();
    for v in KUBECTL_VERSIONS {
        let n = v.replace('.', "-");
        let (dep, pod) = (format!("set-{n}"), format!("pod-{n}"));
        cluster
            .kubectl(
                v,
                &[
                    "create",
                    "deployment",
                    &dep,
                    "--image=nginx:1.26",
                    "--port=80",
                ],
            )
            .ok();
        cluster
            .kubectl(
                v,
                &["set", "image", &format!("deploy/{dep}"), "*=nginx:1.27"],
            )
            .ok();
        cluster
            .kubectl(v, &["set", "env", &format!("deploy/{dep}"), "MODE=test"])
            .ok();
        cluster
            .kubectl(
                v,
                &[
                    "set",
                    "resources",
                    &format!("deploy/{dep}"),
                    "--limits=cpu=200m,memory=128Mi",
                ],
            )
            .ok();
        let container = cluster
            .kubectl(v, &["get", "deploy", &dep, "-o", "jsonpath={.spec.template.spec.containers[0].image} {.spec.template.spec.containers[0].env[0].value} {.spec.template.spec.containers[0].resources.limits.memory} {.metadata.generation}"])
            .ok();
        assert_eq!(container, "nginx:1.27 test 128Mi 4");

        // An event about a pod shows in describe and in `kubectl events`.
        cluster.kubectl(v, &["run", &pod, "--image=busybox"]).ok();
        cluster
            .kubectl(
                v,
                &[
                    "create",
                    "configmap",
                    &format!("cm-{n}"),
                    "--from-literal=a=b",
                ],
            )
            .ok();
        let uid = cluster
            .kubectl(v, &["get", "pod", &pod, "-o", "jsonpath={.metadata.uid}"])
            .ok();
        let event = write(
            &cluster,
            "event.yaml",
            &format!(
                "apiVersion: v1\nkind: Event\nmetadata: {{name: {pod}.scheduled}}\ninvolvedObject: {{kind: Pod, apiVersion: v1, name: {pod}, namespace: default, uid: {uid}}}\nreason: Scheduled\nmessage: Successfully assigned default/{pod} to node-a\ntype: Normal\nsource: {{component: default-scheduler}}\ncount: 1\nfirstTimestamp: \"2026-01-01T00:00:00Z\"\nlastTimestamp: \"2026-01-01T00:00:00Z\"\n"
            ),
        );
        cluster.kubectl(v, &["create", "-f", &event]).ok();
        let described = cluster.kubectl(v, &["describe", "pod", &pod]).ok();
        let events = described.split("Events:").nth(1).unwrap_or_default();
        assert!(
            events.contains("Scheduled") && events.contains("default-scheduler"),
            "{described}"
        );
        let listed = cluster
            .kubectl(v, &["events", "--for", &format!("pod/{pod}")])
            .ok();
        assert!(listed.contains(&format!("Pod/{pod}")), "{listed}");
        assert!(listed.contains("Successfully assigned"), "{listed}");
        for target in [
            format!("deploy/{dep}"),
            "service/kubernetes".into(),
            format!("configmap/cm-{n}"),
            "namespace/default".into(),
            "node/node-a".into(),
            "pv/pv1".into(),
            "pvc/pvc1".into(),
            "limitrange/lr1".into(),
            "rc/rc1".into(),
            "endpoints/kubernetes".into(),
        ] {
            let text = cluster.kubectl(v, &["describe", &target]).ok();
            assert!(text.starts_with("Name:"), "describe {target}: {text}");
        }

        let all = cluster.kubectl(v, &["get", "all"]).ok();
        for expected in [
            format!("pod/{pod}"),
            "service/kubernetes".into(),
            format!("deployment.apps/{dep}"),
        ] {
            assert!(
                all.contains(&expected),
                "{expected} missing from get all:\n{all}"
            );
        }
        let explained = cluster
            .kubectl(v, &["explain", "deployment.spec.strategy", "--recursive"])
            .ok();
        assert!(explained.contains("maxSurge"), "{explained}");
        assert!(explained.contains("rollingUpdate"), "{explained}");

        // wait: a condition not met times out; met by a change, it returns.
        let wait_replicas = "--for=jsonpath={.spec.replicas}=3";
        let early = cluster
            .kubectl(
                v,
                &[
                    "wait",
                    wait_replicas,
                    &format!("deploy/{dep}"),
                    "--timeout=1s",
                ],
            )
            .fails();
        assert!(early.contains("timed out"), "{early}");
        let waiter = cluster.kubectl_spawn(
            v,
            &[
                "wait",
                wait_replicas,
                &format!("deploy/{dep}"),
                "--timeout=30s",
            ],
        );
        cluster
            .kubectl(v, &["scale", &format!("deploy/{dep}"), "--replicas=3"])
            .ok();
        let out = waiter.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("condition met"));

        // wait --for=delete follows an object held by a finalizer until it is gone.
        cluster
            .kubectl(
                v,
                &[
                    "patch",
                    "pod",
                    &pod,
                    "--type=merge",
                    "-p",
                    "{\"metadata\":{\"finalizers\":[\"test/hold\"]}}",
                ],
            )
            .ok();
        cluster
            .kubectl(v, &["delete", "pod", &pod, "--wait=false"])
            .ok();
        let early = cluster
            .kubectl(
                v,
                &[
                    "wait",
                    "--for=delete",
                    &format!("pod/{pod}"),
                    "--timeout=1s",
                ],
            )
            .fails();
        assert!(early.contains("timed out"), "{early}");
        let waiter = cluster.kubectl_spawn(
            v,
            &[
                "wait",
                "--for=delete",
                &format!("pod/{pod}"),
                "--timeout=30s",
            ],
        );
        cluster
            .kubectl(
                v,
                &[
                    "patch",
                    "pod",
                    &pod,
                    "--type=json",
                    "-p",
                    "[{\"op\":\"remove\",\"path\":\"/metadata/finalizers\"}]",
                ],
            )
            .ok();
        let out = waiter.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            cluster
                .kubectl(v, &["get", "pod", &pod])
                .fails()
                .contains("NotFound")
        );
    }
}

#[test]
fn field_validation_reports_unknown_and_duplicate_fields_as_asked() {
    let cluster = TestCluster::start().unwrap();
    for v in KUBECTL_VERSIONS {
        let n = v.replace('.', "-");
        // kubectl re-encodes manifests, so the repeated key goes through --raw as written.
        let body = |name: &str| {
            format!(
                "{{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{{\"name\":\"{name}\"}},\"data\":{{\"a\":\"1\",\"a\":\"2\"}},\"bogus\":true}}"
            )
        };
        let create = |name: &str, validation: &str| {
            let file = write(&cluster, "dup.json", &body(name));
            let url = format!("/api/v1/namespaces/default/configmaps?fieldValidation={validation}");
            cluster.kubectl(v, &["create", "--raw", &url, "-f", &file])
        };
        let strict = create(&format!("strict-{n}"), "Strict").fails();
        assert!(
            strict.contains(
                "BadRequest): strict decoding error: unknown field \"bogus\", duplicate field \"data.a\""
            ),
            "{strict}"
        );
        let warned = create(&format!("warn-{n}"), "Warn");
        warned.ok();
        assert!(
            warned.stderr().contains("Warning: unknown field \"bogus\""),
            "{}",
            warned.stderr()
        );
        assert!(
            warned
                .stderr()
                .contains("Warning: duplicate field \"data.a\""),
            "{}",
            warned.stderr()
        );
        let ignored = create(&format!("ignore-{n}"), "Ignore");
        ignored.ok();
        assert!(
            !ignored.stderr().contains("Warning"),
            "{}",
            ignored.stderr()
        );
        let data = cluster
            .kubectl(
                v,
                &[
                    "get",
                    "cm",
                    &format!("ignore-{n}"),
                    "-o",
                    "jsonpath={.data.a}",
                ],
            )
            .ok();
        assert_eq!(data, "2", "the last of repeated keys wins");
        assert!(
            cluster
                .kubectl(v, &["get", "cm", &format!("strict-{n}")])
                .fails()
                .contains("NotFound")
        );
    }
}

#[test]
fn create_token_issues_service_account_tokens_that_authenticate_until_revoked() {
    let cluster = TestCluster::start().unwrap();
    let ca = cluster.data_dir.path().join("pki").join("ca.crt");
    let ca = ca.to_string_lossy().into_owned();
    for v in KUBECTL_VERSIONS {
        let sa = format!("robot-{}", v.replace('.', "-"));
        cluster.kubectl(v, &["create", "serviceaccount", &sa]).ok();
        let token = cluster.kubectl(v, &["create", "token", &sa]).ok();
        assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
        // The token alone, without the admin's client certificate.
        let as_robot = |args: &[&str]| {
            let mut all = vec![
                "--kubeconfig=/dev/null",
                "--server",
                &cluster.url,
                "--certificate-authority",
                &ca,
                "--token",
                token.trim(),
            ];
            all.extend_from_slice(args);
            cluster.kubectl(v, &all)
        };
        as_robot(&["get", "namespaces"]).ok();
        if v != "1.27" {
            let whoami = as_robot(&[
                "auth",
                "whoami",
                "-o",
                "jsonpath={.status.userInfo.username} {.status.userInfo.groups}",
            ])
            .ok();
            assert_eq!(
                whoami,
                format!(
                    "system:serviceaccount:default:{sa} [\"system:serviceaccounts\",\"system:serviceaccounts:default\",\"system:authenticated\"]"
                )
            );
        }
        // A TokenReview says the same, with the audience it matched.
        let review = write(
            &cluster,
            "review.json",
            &format!(
                "{{\"apiVersion\":\"authentication.k8s.io/v1\",\"kind\":\"TokenReview\",\"spec\":{{\"token\":\"{}\"}}}}",
                token.trim()
            ),
        );
        let answer: serde_json::Value = serde_json::from_str(
            &cluster
                .kubectl(
                    v,
                    &[
                        "create",
                        "--raw",
                        "/apis/authentication.k8s.io/v1/tokenreviews",
                        "-f",
                        &review,
                    ],
                )
                .ok(),
        )
        .unwrap();
        assert_eq!(answer["status"]["authenticated"], true, "{answer}");
        assert_eq!(
            answer["status"]["user"]["username"],
            format!("system:serviceaccount:default:{sa}")
        );

        let short = cluster
            .kubectl(v, &["create", "token", &sa, "--duration=5m"])
            .fails();
        assert!(
            short.contains("may not specify a duration less than 10 minutes"),
            "{short}"
        );
        let missing = cluster.kubectl(v, &["create", "token", "nobody"]).fails();
        assert!(
            missing.contains("serviceaccounts \"nobody\" not found"),
            "{missing}"
        );
        let forged = format!("{}x", token.trim());
        let refused = cluster
            .kubectl(
                v,
                &[
                    "--kubeconfig=/dev/null",
                    "--server",
                    &cluster.url,
                    "--certificate-authority",
                    &ca,
                    "--token",
                    &forged,
                    "get",
                    "namespaces",
                ],
            )
            .fails();
        assert!(refused.contains("Unauthorized"), "{refused}");
        // Deleting the service account revokes its tokens.
        cluster.kubectl(v, &["delete", "serviceaccount", &sa]).ok();
        assert!(
            as_robot(&["get", "namespaces"])
                .fails()
                .contains("Unauthorized")
        );
    }
}

#[test]
fn debug_adds_ephemeral_containers_that_cannot_be_taken_back() {
    let cluster = TestCluster::start().unwrap();
    for v in KUBECTL_VERSIONS {
        let pod = format!("dbg-{}", v.replace('.', "-"));
        cluster.kubectl(v, &["run", &pod, "--image=busybox"]).ok();
        let out = cluster
            .kubectl(
                v,
                &[
                    "debug",
                    &pod,
                    "--image=busybox",
                    "--target",
                    &pod,
                    "--container=debugger",
                ],
            )
            .ok();
        assert!(!out.contains("error"), "{out}");
        let added = cluster
            .kubectl(v, &["get", "pod", &pod, "-o", "jsonpath={.spec.ephemeralContainers[0].name} {.spec.ephemeralContainers[0].targetContainerName} {.spec.ephemeralContainers[0].terminationMessagePolicy}"])
            .ok();
        assert_eq!(added, format!("debugger {pod} File"));
        let raw = cluster
            .kubectl(
                v,
                &[
                    "get",
                    "--raw",
                    &format!("/api/v1/namespaces/default/pods/{pod}/ephemeralcontainers"),
                ],
            )
            .ok();
        assert!(raw.contains("\"ephemeralContainers\""), "{raw}");
        let refused = cluster
            .kubectl(
                v,
                &[
                    "replace",
                    "--raw",
                    &format!("/api/v1/namespaces/default/pods/{pod}/ephemeralcontainers"),
                    "-f",
                    &write(
                        &cluster,
                        "nodebug.json",
                        &cluster
                            .kubectl(v, &["get", "pod", &pod, "-o", "json"])
                            .ok()
                            .replace("\"ephemeralContainers\"", "\"ephemeralContainersGone\""),
                    ),
                ],
            )
            .fails();
        assert!(
            refused.contains("spec.ephemeralContainers: Forbidden: existing ephemeral containers \"debugger\" may not be removed"),
            "{refused}"
        );
    }
}

#[test]
fn pods_on_a_node_are_deleted_gracefully_and_finished_by_the_node() {
    let cluster = TestCluster::start().unwrap();
    let v = "1.33";
    let k = |args: &[&str]| cluster.kubectl(v, args);
    let node = write(
        &cluster,
        "node.yaml",
        "apiVersion: v1\nkind: Node\nmetadata: {name: node-1}\n",
    );
    k(&["create", "-f", &node]).ok();
    let pod = |name: &str, node: &str| {
        let node_line = if node.is_empty() {
            String::new()
        } else {
            format!("  nodeName: {node}\n")
        };
        let yaml = format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n{node_line}  terminationGracePeriodSeconds: 60\n  containers: [{{name: c, image: busybox}}]\n"
        );
        let file = write(&cluster, &format!("{name}.yaml"), &yaml);
        k(&["create", "-f", &file]).ok();
    };
    let meta = |name: &str| -> serde_json::Value {
        serde_json::from_str::<serde_json::Value>(&k(&["get", "pod", name, "-o", "json"]).ok())
            .unwrap()["metadata"]
            .clone()
    };

    // Bound to an existing node: marked with the pod's own grace period, kept.
    pod("bound", "node-1");
    let before = jiff::Timestamp::now();
    k(&["delete", "pod", "bound", "--wait=false"]).ok();
    let m = meta("bound");
    assert_eq!(m["deletionGracePeriodSeconds"], 60);
    let until: jiff::Timestamp = m["deletionTimestamp"].as_str().unwrap().parse().unwrap();
    let ahead = until.duration_since(before).as_secs();
    assert!(
        (58..=61).contains(&ahead),
        "deletionTimestamp {ahead}s ahead"
    );
    assert!(k(&["get", "pod", "bound"]).ok().contains("Terminating"));
    // A shorter grace period shortens it; a longer one does not lengthen it.
    k(&[
        "delete",
        "pod",
        "bound",
        "--grace-period=10",
        "--wait=false",
    ])
    .ok();
    assert_eq!(meta("bound")["deletionGracePeriodSeconds"], 10);
    k(&[
        "delete",
        "pod",
        "bound",
        "--grace-period=50",
        "--wait=false",
    ])
    .ok();
    assert_eq!(meta("bound")["deletionGracePeriodSeconds"], 10);
    // Updates while it terminates keep it; the node's final delete (grace 0) removes it.
    k(&["label", "pod", "bound", "seen=yes"]).ok();
    assert_eq!(meta("bound")["labels"]["seen"], "yes");
    k(&["delete", "pod", "bound", "--grace-period=0", "--force"]).ok();
    assert!(k(&["get", "pod", "bound"]).fails().contains("NotFound"));

    // Not on a node, or on a node that does not exist: deleted at once.
    pod("unbound", "");
    k(&["delete", "pod", "unbound", "--wait=false"]).ok();
    assert!(k(&["get", "pod", "unbound"]).fails().contains("NotFound"));
    pod("orphan", "no-such-node");
    k(&["delete", "pod", "orphan", "--wait=false"]).ok();
    assert!(k(&["get", "pod", "orphan"]).fails().contains("NotFound"));
}

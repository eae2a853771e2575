//! The runtime conformance suite: what the agent relies on from a container runtime, run
//! against both runtimes (Docker, on the local engine with the images `make images` builds,
//! and the simulated one). Sandboxes get addresses; instances run, exit with their codes,
//! report their exits through `changes`, stop, and are removed; killing a pod leaves nothing.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod};
use nodeagent::runtime::docker::DockerRuntime;
use nodeagent::runtime::simulated::SimulatedRuntime;
use nodeagent::runtime::{ContainerRuntime, ImageError, InstanceState, Launch};
use serde_json::json;

fn pod(uid: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "conformance", "namespace": "default", "uid": uid},
        "spec": {"containers": [
            {"name": "sleeper", "image": "busybox", "command": ["sleep", "3600"]},
            {"name": "quitter", "image": "busybox", "command": ["sh", "-c", "exit 3"]}
        ]}
    }))
    .unwrap()
}

fn launch<'a>(pod: &'a Pod, c: &'a Container) -> Launch<'a> {
    Launch {
        pod,
        container: c,
        attempt: 0,
        spec_hash: "hash-1".into(),
        env: vec![("GREETING".into(), "hello".into())],
        command: c.command.clone(),
        args: None,
        mounts: Vec::new(),
        image_ref: "busybox:latest".into(),
        pid_target: None,
    }
}

async fn eventually<T, F: std::future::Future<Output = Option<T>>>(
    mut f: impl FnMut() -> F,
) -> Option<T> {
    for _ in 0..200 {
        if let Some(v) = f().await {
            return Some(v);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

async fn conformance<R: ContainerRuntime>(runtime: &R, uid: &str) {
    let p = pod(uid);
    let spec = p.spec.clone().unwrap();
    assert!(runtime.sandbox(uid).await.unwrap().is_none());
    assert!(!runtime.pod_uids().await.unwrap().contains(&uid.to_owned()));

    let image = runtime
        .ensure_image("busybox:latest", "IfNotPresent", &[])
        .await
        .unwrap();
    assert!(!image.image_id.is_empty());

    let sandbox = runtime.create_sandbox(&p, 0).await.unwrap();
    assert!(sandbox.running);
    assert!(!sandbox.ip.is_empty(), "a sandbox has an address");
    assert_eq!(runtime.sandbox(uid).await.unwrap().unwrap().id, sandbox.id);
    assert!(runtime.pod_uids().await.unwrap().contains(&uid.to_owned()));

    let mut changes = runtime.changes();
    runtime
        .start_container(&sandbox, launch(&p, &spec.containers[0]))
        .await
        .unwrap();
    runtime
        .start_container(&sandbox, launch(&p, &spec.containers[1]))
        .await
        .unwrap();
    let instances = runtime.containers(uid).await.unwrap();
    assert_eq!(instances.len(), 2);
    let sleeper = instances
        .iter()
        .find(|i| i.name == "sleeper")
        .unwrap()
        .clone();
    assert!(
        matches!(sleeper.state, InstanceState::Running { .. }),
        "{sleeper:?}"
    );
    assert_eq!((sleeper.attempt, sleeper.sandbox_attempt), (0, 0));
    assert_eq!(sleeper.spec_hash, "hash-1");

    // An exit is reported with its code, and announced.
    let quitter = eventually(|| async {
        runtime
            .containers(uid)
            .await
            .unwrap()
            .into_iter()
            .find(|i| i.name == "quitter" && matches!(i.state, InstanceState::Exited { .. }))
    })
    .await
    .expect("the quitter exits");
    let InstanceState::Exited {
        exit_code, reason, ..
    } = &quitter.state
    else {
        unreachable!()
    };
    assert_eq!((*exit_code, reason.as_str()), (3, "Error"));
    let announced = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if changes.recv().await.unwrap() == uid {
                break;
            }
        }
    })
    .await;
    assert!(announced.is_ok(), "the exit is announced on changes()");

    runtime
        .stop_container(&sleeper.id, Duration::from_secs(1))
        .await
        .unwrap();
    let stopped = runtime.containers(uid).await.unwrap();
    let stopped = stopped.iter().find(|i| i.id == sleeper.id).unwrap();
    assert!(
        matches!(stopped.state, InstanceState::Exited { .. }),
        "{stopped:?}"
    );
    runtime.remove_container(&quitter.id).await.unwrap();
    assert_eq!(runtime.containers(uid).await.unwrap().len(), 1);

    runtime.kill_pod(uid, Duration::from_secs(1)).await.unwrap();
    assert!(runtime.containers(uid).await.unwrap().is_empty());
    assert!(runtime.sandbox(uid).await.unwrap().is_none());
    assert!(!runtime.pod_uids().await.unwrap().contains(&uid.to_owned()));
}

#[tokio::test]
async fn the_simulated_runtime_conforms() {
    let runtime = SimulatedRuntime::new("10.88.9");
    conformance(&runtime, "sim-uid-1").await;
    assert!(runtime.ensure_image("busybox", "Never", &[]).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_docker_runtime_conforms_and_is_found_again_by_a_new_agent() {
    let node = format!("conformance-{}", std::process::id());
    let runtime = DockerRuntime::connect(&node, "nodeagent-pause:1")
        .await
        .expect("a Docker Engine with nodeagent-pause:1 (make images)");
    conformance(&runtime, "docker-uid-1").await;
    assert!(matches!(
        runtime
            .ensure_image("127.0.0.1:9/not-here:v1", "Never", &[])
            .await,
        Err(ImageError::NeverPull(_))
    ));

    // What one agent started, a new one (after a restart) finds by its labels.
    let p = pod("docker-uid-2");
    let spec = p.spec.clone().unwrap();
    let sandbox = runtime.create_sandbox(&p, 0).await.unwrap();
    runtime
        .start_container(&sandbox, launch(&p, &spec.containers[0]))
        .await
        .unwrap();
    let again = DockerRuntime::connect(&node, "nodeagent-pause:1")
        .await
        .unwrap();
    assert_eq!(
        again.sandbox("docker-uid-2").await.unwrap().unwrap().id,
        sandbox.id
    );
    assert_eq!(again.containers("docker-uid-2").await.unwrap().len(), 1);
    // Another node's agent on the same engine does not see it.
    let other = DockerRuntime::connect(&format!("{node}-other"), "nodeagent-pause:1")
        .await
        .unwrap();
    assert!(other.pod_uids().await.unwrap().is_empty());
    again
        .kill_pod("docker-uid-2", Duration::ZERO)
        .await
        .unwrap();
    assert!(runtime.pod_uids().await.unwrap().is_empty());
}

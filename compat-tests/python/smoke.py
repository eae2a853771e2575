"""The official Python `kubernetes` client against the server: CRUD, patch, list, watch, errors,
and server-side apply through its dynamic client.

Usage: smoke.py KUBECONFIG. Exits non-zero with a message on the first failure.
"""

import json
import sys

from kubernetes import client, config, dynamic, watch
from kubernetes.client.rest import ApiException


def main(kubeconfig: str) -> None:
    config.load_kube_config(kubeconfig)
    core = client.CoreV1Api()
    apps = client.AppsV1Api()
    ns = "default"
    labels = {"suite": "python"}

    created = core.create_namespaced_config_map(
        ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="py-a", labels=labels), data={"a": "1"})
    )
    assert created.metadata.uid, "created object has a uid"
    got = core.read_namespaced_config_map("py-a", ns)
    assert got.data == {"a": "1"}, got.data
    got.data["b"] = "2"
    replaced = core.replace_namespaced_config_map("py-a", ns, got)
    assert replaced.metadata.resource_version != created.metadata.resource_version
    patched = core.patch_namespaced_config_map("py-a", ns, {"metadata": {"labels": {"patched": "yes"}}})
    assert patched.metadata.labels == {"suite": "python", "patched": "yes"}, patched.metadata.labels
    listed = core.list_namespaced_config_map(ns, label_selector="suite=python")
    assert [c.metadata.name for c in listed.items] == ["py-a"]

    # Watch from the list's revision: the next create and delete, in order.
    core.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="py-b", labels=labels)))
    core.delete_namespaced_config_map("py-b", ns)
    seen = []
    w = watch.Watch()
    for event in w.stream(
        core.list_namespaced_config_map,
        ns,
        label_selector="suite=python",
        resource_version=listed.metadata.resource_version,
        timeout_seconds=20,
    ):
        seen.append((event["type"], event["object"].metadata.name))
        if event["type"] == "DELETED":
            w.stop()
    assert seen == [("ADDED", "py-b"), ("DELETED", "py-b")], seen

    try:
        core.read_namespaced_config_map("missing", ns)
        raise AssertionError("reading a missing object succeeded")
    except ApiException as err:
        assert err.status == 404, err.status

    deployment = client.V1Deployment(
        metadata=client.V1ObjectMeta(name="py-web"),
        spec=client.V1DeploymentSpec(
            replicas=2,
            selector=client.V1LabelSelector(match_labels={"app": "py-web"}),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels={"app": "py-web"}),
                spec=client.V1PodSpec(containers=[client.V1Container(name="web", image="nginx:1.27")]),
            ),
        ),
    )
    made = apps.create_namespaced_deployment(ns, deployment)
    assert made.spec.strategy.type == "RollingUpdate", made.spec.strategy
    assert made.spec.template.spec.containers[0].image_pull_policy == "IfNotPresent"
    apps.delete_namespaced_deployment("py-web", ns)
    core.delete_namespaced_config_map("py-a", ns)
    server_side_apply(ns)
    print("python client smoke: ok")


def server_side_apply(ns: str) -> None:
    """Apply creates, a second manager's change conflicts (409) until forced."""
    dyn = dynamic.DynamicClient(client.ApiClient())
    cms = dyn.resources.get(api_version="v1", kind="ConfigMap")

    def body(value: str) -> dict:
        return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "py-ssa"}, "data": {"k": value}}

    made = dyn.server_side_apply(cms, body=body("1"), namespace=ns, field_manager="py-one")
    assert made.data.k == "1", made.data
    managers = [(m.manager, m.operation) for m in made.metadata.managedFields]
    assert managers == [("py-one", "Apply")], managers
    try:
        dyn.server_side_apply(cms, body=body("2"), namespace=ns, field_manager="py-two")
        raise AssertionError("a conflicting apply succeeded")
    except ApiException as err:
        assert err.status == 409, err.status
        status = json.loads(err.body)
        assert status["message"] == 'Apply failed with 1 conflict: conflict with "py-one": .data.k', status
        assert status["details"]["causes"][0]["reason"] == "FieldManagerConflict", status
    forced = dyn.server_side_apply(cms, body=body("2"), namespace=ns, field_manager="py-two", force_conflicts=True)
    assert forced.data.k == "2", forced.data
    core = client.CoreV1Api()
    assert core.read_namespaced_config_map("py-ssa", ns).data == {"k": "2"}
    core.delete_namespaced_config_map("py-ssa", ns)


if __name__ == "__main__":
    main(sys.argv[1])

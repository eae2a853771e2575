use serde_json::json;

use super::*;
use crate::registry::resource_table::lookup;

fn deployments() -> &'static ResourceDef {
    lookup("apps", "v1", "deployments").unwrap()
}

fn writer(manager: &str) -> Writer {
    Writer {
        manager: manager.into(),
        subresource: "",
        api_version: "apps/v1".into(),
    }
}

const MAIN: Scope = Scope::Main { has_status: true };

fn config(replicas: i64, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": image}]}}
        }
    })
}

fn managers_of(object: &Value) -> Vec<(String, String)> {
    decode(object)
        .unwrap()
        .unwrap()
        .into_iter()
        .map(|m| (m.manager, m.operation.as_str().to_owned()))
        .collect()
}

#[test]
fn create_records_every_field_under_the_creator() {
    let mut object = config(1, "nginx");
    object["status"] = json!({"replicas": 1});
    track_update(
        root_type(deployments()),
        None,
        &mut object,
        &writer("kubectl-create"),
        MAIN,
    );
    let entries = object["metadata"]["managedFields"].as_array().unwrap();
    assert_eq!(entries.len(), 1);
    let entry = &entries[0];
    assert_eq!(entry["manager"], "kubectl-create");
    assert_eq!(entry["operation"], "Update");
    assert_eq!(entry["apiVersion"], "apps/v1");
    assert_eq!(entry["fieldsType"], "FieldsV1");
    let fields = &entry["fieldsV1"];
    assert_eq!(fields["f:spec"]["f:replicas"], json!({}));
    assert_eq!(
        fields["f:metadata"]["f:labels"],
        json!({".": {}, "f:app": {}})
    );
    assert!(
        fields.get("f:status").is_none(),
        "status is never owned through the main resource"
    );
    assert!(
        fields["f:metadata"].get("f:name").is_none(),
        "identity is never owned"
    );
}

#[test]
fn update_moves_ownership_of_changed_fields_only() {
    let root = root_type(deployments());
    let mut live = config(1, "nginx");
    track_update(root, None, &mut live, &writer("creator"), MAIN);
    let mut scaled = live.clone();
    scaled["spec"]["replicas"] = json!(5);
    track_update(
        root,
        Some(&live),
        &mut scaled,
        &writer("kubectl-scale"),
        MAIN,
    );
    let managers = decode(&scaled).unwrap().unwrap();
    let creator = managers.iter().find(|m| m.manager == "creator").unwrap();
    let scaler = managers
        .iter()
        .find(|m| m.manager == "kubectl-scale")
        .unwrap();
    let replicas: Path = vec!["f:spec".into(), "f:replicas".into()];
    assert!(!creator.fields.contains(&replicas));
    assert_eq!(scaler.fields.members(), vec![replicas]);
    // Writing the same object again changes nothing, not even a timestamp.
    let mut again = scaled.clone();
    track_update(
        root,
        Some(&scaled),
        &mut again,
        &writer("kubectl-scale"),
        MAIN,
    );
    assert_eq!(again, scaled);
}

#[test]
fn clients_may_rewrite_and_reset_managed_fields() {
    let root = root_type(deployments());
    let mut live = config(1, "nginx");
    track_update(root, None, &mut live, &writer("creator"), MAIN);
    let mut renamed = live.clone();
    renamed["metadata"]["managedFields"][0]["manager"] = json!("someone-else");
    track_update(root, Some(&live), &mut renamed, &writer("patcher"), MAIN);
    assert_eq!(
        managers_of(&renamed),
        [("someone-else".into(), "Update".into())]
    );
    let mut reset = live.clone();
    reset["metadata"]["managedFields"] = json!([{}]);
    track_update(root, Some(&live), &mut reset, &writer("patcher"), MAIN);
    assert!(reset["metadata"].get("managedFields").is_none());
}

#[test]
fn apply_creates_then_conflicts_then_forces() {
    let r = deployments();
    let created = apply(r, None, &config(2, "nginx"), &writer("alice"), false, MAIN).unwrap();
    assert_eq!(created["spec"]["replicas"], 2);
    assert_eq!(managers_of(&created), [("alice".into(), "Apply".into())]);

    // Same values from another applier: shared ownership, no conflict.
    let shared = apply(
        r,
        Some(&created),
        &config(2, "nginx"),
        &writer("bob"),
        false,
        MAIN,
    )
    .unwrap();
    assert_eq!(managers_of(&shared).len(), 2);

    let err = apply(
        r,
        Some(&shared),
        &config(3, "nginx"),
        &writer("carol"),
        false,
        MAIN,
    )
    .unwrap_err();
    assert_eq!(err.code, 409);
    assert_eq!(err.reason, "Conflict");
    assert_eq!(
        err.message,
        "Apply failed with 2 conflicts: conflicts with \"alice\":\n- .spec.replicas\nconflicts with \"bob\":\n- .spec.replicas"
    );
    let causes = &err.details.as_ref().unwrap().causes;
    assert_eq!(causes.len(), 2);
    assert_eq!(causes[0].reason, "FieldManagerConflict");
    assert_eq!(causes[0].field, ".spec.replicas");
    assert_eq!(causes[0].message, "conflict with \"alice\"");

    let forced = apply(
        r,
        Some(&shared),
        &config(3, "nginx"),
        &writer("carol"),
        true,
        MAIN,
    )
    .unwrap();
    assert_eq!(forced["spec"]["replicas"], 3);
    let managers = decode(&forced).unwrap().unwrap();
    let replicas: Path = vec!["f:spec".into(), "f:replicas".into()];
    for m in &managers {
        assert_eq!(
            m.fields.contains(&replicas),
            m.manager == "carol",
            "{}",
            m.manager
        );
    }
}

#[test]
fn apply_removes_what_the_applier_dropped_unless_others_own_it() {
    let r = deployments();
    let mut first = config(2, "nginx");
    first["metadata"]["labels"]["tier"] = json!("front");
    first["metadata"]["annotations"] = json!({"note": "x"});
    let live = apply(r, None, &first, &writer("alice"), false, MAIN).unwrap();
    // Another manager also sets the annotation (same value: shared).
    let mut bob = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "annotations": {"note": "x"}}});
    bob["metadata"]["name"] = json!("web");
    let live = apply(r, Some(&live), &bob, &writer("bob"), false, MAIN).unwrap();
    // Alice drops the tier label and the annotation.
    let live = apply(
        r,
        Some(&live),
        &config(2, "nginx"),
        &writer("alice"),
        false,
        MAIN,
    )
    .unwrap();
    assert_eq!(live["metadata"]["labels"], json!({"app": "web"}));
    assert_eq!(live["metadata"]["annotations"], json!({"note": "x"}));
}

#[test]
fn apply_that_changes_nothing_keeps_the_object_as_is() {
    let r = deployments();
    let live = apply(r, None, &config(2, "nginx"), &writer("alice"), false, MAIN).unwrap();
    let again = apply(
        r,
        Some(&live),
        &config(2, "nginx"),
        &writer("alice"),
        false,
        MAIN,
    )
    .unwrap();
    assert_eq!(again, live);
}

#[test]
fn apply_upgrades_from_client_side_apply_without_conflicts_on_unchanged_values() {
    let r = deployments();
    let root = root_type(r);
    let mut record = config(1, "nginx");
    let mut live = record.clone();
    live["metadata"]["annotations"] = json!({LAST_APPLIED: record.to_string()});
    track_update(
        root,
        None,
        &mut live,
        &writer("kubectl-client-side-apply"),
        MAIN,
    );
    // The manifest now says 3 replicas: with kubectl as the manager the record allows it.
    record["spec"]["replicas"] = json!(3);
    let upgraded = apply(r, Some(&live), &record, &writer("kubectl"), false, MAIN).unwrap();
    assert_eq!(upgraded["spec"]["replicas"], 3);
    let annotation: Value = serde_json::from_str(
        upgraded["metadata"]["annotations"][LAST_APPLIED]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        annotation["spec"]["replicas"], 3,
        "the record follows the apply"
    );
    // Any other manager gets the conflict.
    let err = apply(r, Some(&live), &record, &writer("other"), false, MAIN).unwrap_err();
    assert_eq!(err.code, 409);
}

#[test]
fn apply_refuses_bad_configurations() {
    let r = deployments();
    let mut wrong_version = config(1, "nginx");
    wrong_version["apiVersion"] = json!("apps/v1beta1");
    assert_eq!(
        apply(r, None, &wrong_version, &writer("a"), false, MAIN)
            .unwrap_err()
            .code,
        400
    );
    let mut unknown = config(1, "nginx");
    unknown["spec"]["replicaz"] = json!(1);
    let err = apply(r, None, &unknown, &writer("a"), false, MAIN).unwrap_err();
    assert_eq!(err.code, 400);
    assert!(
        err.message
            .ends_with(".spec.replicaz: field not declared in schema"),
        "{}",
        err.message
    );
    let mut managed = config(1, "nginx");
    managed["metadata"]["managedFields"] = json!([]);
    assert_eq!(
        apply(r, None, &managed, &writer("a"), false, MAIN)
            .unwrap_err()
            .code,
        400
    );
}

#[test]
fn update_entries_are_capped_by_folding_the_oldest() {
    let root = root_type(deployments());
    let mut live = config(1, "nginx");
    track_update(root, None, &mut live, &writer("creator"), MAIN);
    for i in 0..12 {
        let mut next = live.clone();
        next["metadata"]["labels"][format!("l{i}")] = json!("x");
        track_update(
            root,
            Some(&live),
            &mut next,
            &writer(&format!("writer-{i}")),
            MAIN,
        );
        live = next;
    }
    let managers = decode(&live).unwrap().unwrap();
    assert_eq!(managers.len(), MAX_UPDATE_MANAGERS);
    let ancient = managers
        .iter()
        .find(|m| m.manager == ANCIENT_CHANGES)
        .unwrap();
    let replicas: Path = vec!["f:spec".into(), "f:replicas".into()];
    assert!(
        ancient.fields.contains(&replicas),
        "the creator's fields live on in the fold"
    );
    assert!(managers.iter().any(|m| m.manager == "writer-11"));
}

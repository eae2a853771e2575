//! Hostile and broken requests get a clear 4xx Status and store nothing.

use http::Request;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams};
use serde_json::Value;

use compat_tests::TestCluster;

async fn send(
    client: &kube::Client,
    method: &str,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, Value) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", content_type)
        .body(body)
        .unwrap();
    let resp = client
        .send(req.map(kube::client::Body::from))
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let bytes = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, value)
}

#[tokio::test]
async fn broken_bodies_paths_and_names_get_status_errors_and_store_nothing() {
    let cluster = TestCluster::start().unwrap();
    let client = cluster.client().await.unwrap();
    let cms = "/api/v1/namespaces/default/configmaps";
    let big = format!(
        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"big"}},"data":{{"x":"{}"}}}}"#,
        "a".repeat(4 << 20)
    );
    let mut bad_proto = b"k8s\0".to_vec();
    bad_proto.extend([0x0a, 0x20, 0x01]);
    // (what, path, content type, body, expected code, expected reason)
    type Case<'a> = (&'a str, &'a str, &'a str, Vec<u8>, u16, &'a str);
    let cases: Vec<Case> = vec![
        ("malformed JSON", cms, "application/json", b"{\"kind\": ".to_vec(), 400, "BadRequest"),
        ("malformed YAML", cms, "application/yaml", b"kind: [unclosed\n  - x: {".to_vec(), 400, "BadRequest"),
        ("malformed protobuf", cms, "application/vnd.kubernetes.protobuf", bad_proto, 400, "BadRequest"),
        ("not protobuf at all", cms, "application/vnd.kubernetes.protobuf", b"hello".to_vec(), 400, "BadRequest"),
        ("a list instead of an object", cms, "application/json", b"[1,2]".to_vec(), 400, "BadRequest"),
        ("unknown kind", cms, "application/json", br#"{"apiVersion":"v1","kind":"Nonsense","metadata":{"name":"x"}}"#.to_vec(), 400, "BadRequest"),
        ("apiVersion of another group", cms, "application/json", br#"{"apiVersion":"apps/v1","kind":"ConfigMap","metadata":{"name":"x"}}"#.to_vec(), 400, "BadRequest"),
        ("wrong field type", cms, "application/json", br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"},"data":{"a":1}}"#.to_vec(), 400, "BadRequest"),
        ("invalid name", cms, "application/json", br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"Not_Valid"}}"#.to_vec(), 422, "Invalid"),
        ("missing name", cms, "application/json", br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{}}"#.to_vec(), 422, "Invalid"),
        ("unsupported media type", cms, "text/plain", b"hello".to_vec(), 415, "UnsupportedMediaType"),
        ("oversized body", cms, "application/json", big.into_bytes(), 413, "RequestEntityTooLarge"),
        ("unknown resource", "/api/v1/namespaces/default/widgets", "application/json", b"{}".to_vec(), 404, "NotFound"),
        ("missing namespace", "/api/v1/namespaces/nowhere/configmaps", "application/json", br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"}}"#.to_vec(), 404, "NotFound"),
        ("namespace mismatch", cms, "application/json", br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x","namespace":"kube-system"}}"#.to_vec(), 400, "BadRequest"),
    ];
    for (what, path, content_type, body, code, reason) in cases {
        let (status, value) = send(&client, "POST", path, content_type, body).await;
        assert_eq!(status, code, "{what}: {value}");
        assert_eq!(value["kind"], "Status", "{what}: {value}");
        assert_eq!(value["code"], code, "{what}");
        assert_eq!(value["reason"], reason, "{what}: {value}");
        assert!(
            !value["message"].as_str().unwrap_or("").is_empty(),
            "{what}"
        );
    }
    let invalid = send(
        &client,
        "POST",
        cms,
        "application/json",
        br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"Not_Valid"}}"#.to_vec(),
    )
    .await
    .1;
    assert_eq!(invalid["details"]["causes"][0]["field"], "metadata.name");
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    assert!(
        api.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty(),
        "nothing was stored"
    );

    let (status, value) = send(
        &client,
        "PATCH",
        &format!("{cms}/missing"),
        "application/merge-patch+json",
        b"{}".to_vec(),
    )
    .await;
    assert_eq!((status, value["reason"].as_str()), (404, Some("NotFound")));
    // Server-side apply: the bad requests a client can make, each refused with its Status and
    // nothing stored.
    let apply = "application/apply-patch+yaml";
    let good = b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: applied}\ndata: {a: b}\n";
    for (what, url, content_type, body, code, reason) in [
        (
            "apply without a field manager",
            format!("{cms}/applied"),
            apply,
            good.to_vec(),
            422,
            "Invalid",
        ),
        (
            "force on a merge patch",
            format!("{cms}/applied?force=true&fieldManager=t"),
            "application/merge-patch+json",
            b"{}".to_vec(),
            422,
            "Invalid",
        ),
        (
            "apply of a list",
            format!("{cms}/applied?fieldManager=t"),
            apply,
            b"- a\n- b\n".to_vec(),
            400,
            "BadRequest",
        ),
        (
            "apply of broken YAML",
            format!("{cms}/applied?fieldManager=t"),
            apply,
            b"a: [b\n".to_vec(),
            400,
            "BadRequest",
        ),
        (
            "apply without apiVersion",
            format!("{cms}/applied?fieldManager=t"),
            apply,
            b"kind: ConfigMap\nmetadata: {name: applied}\n".to_vec(),
            400,
            "BadRequest",
        ),
        (
            "apply of another kind",
            format!("{cms}/applied?fieldManager=t"),
            apply,
            b"apiVersion: v1\nkind: Secret\nmetadata: {name: applied}\n".to_vec(),
            400,
            "BadRequest",
        ),
        (
            "apply of an undeclared field",
            format!("{cms}/applied?fieldManager=t"),
            apply,
            b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: applied}\ndatum: {a: b}\n".to_vec(),
            400,
            "BadRequest",
        ),
        (
            "apply carrying managedFields",
            format!("{cms}/applied?fieldManager=t"),
            apply,
            b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: applied, managedFields: []}\n"
                .to_vec(),
            400,
            "BadRequest",
        ),
        (
            "apply with another name",
            format!("{cms}/other?fieldManager=t"),
            apply,
            good.to_vec(),
            400,
            "BadRequest",
        ),
    ] {
        let (status, value) = send(&client, "PATCH", &url, content_type, body).await;
        assert_eq!(
            (status, value["reason"].as_str()),
            (code, Some(reason)),
            "{what}: {value}"
        );
        assert_eq!(value["kind"], "Status", "{what}");
    }
    for name in ["applied", "other"] {
        let (status, _) = send(
            &client,
            "GET",
            &format!("{cms}/{name}"),
            "application/json",
            vec![],
        )
        .await;
        assert_eq!(status, 404, "a refused apply stored nothing");
    }
    // The same YAML with a field manager creates the object.
    let (status, value) = send(
        &client,
        "PATCH",
        &format!("{cms}/applied?fieldManager=t"),
        apply,
        good.to_vec(),
    )
    .await;
    assert_eq!(status, 201, "{value}");
    assert_eq!(value["metadata"]["managedFields"][0]["operation"], "Apply");
    let (status, value) = send(
        &client,
        "GET",
        "/api/v1/namespaces/default/configmaps?labelSelector=a%20in%20b",
        "application/json",
        vec![],
    )
    .await;
    assert_eq!(
        (status, value["reason"].as_str()),
        (400, Some("BadRequest"))
    );
    let (status, _) = send(
        &client,
        "GET",
        "/api/v1/namespaces/default/configmaps?fieldSelector=spec.nope%3D1",
        "application/json",
        vec![],
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = send(
        &client,
        "GET",
        "/apis/apps/v1/namespaces/default/deployments/x/nonsense",
        "application/json",
        vec![],
    )
    .await;
    assert_eq!(status, 404);
    let (status, value) = send(
        &client,
        "GET",
        "/api/v1/namespaces/default/configmaps?continue=garbage",
        "application/json",
        vec![],
    )
    .await;
    assert_eq!(
        (status, value["reason"].as_str()),
        (400, Some("BadRequest"))
    );
}

#[tokio::test]
async fn large_responses_are_gzipped_when_the_client_asks() {
    let cluster = TestCluster::start().unwrap();
    let client = cluster.client().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let value = "x".repeat(64 * 1024);
    for i in 0..4 {
        let cm: ConfigMap = serde_json::from_value(
            serde_json::json!({"metadata": {"name": format!("big{i}")}, "data": {"v": value}}),
        )
        .unwrap();
        api.create(&Default::default(), &cm).await.unwrap();
    }
    let get = |encoding: &'static str| {
        let client = client.clone();
        async move {
            let req = Request::builder()
                .uri("/api/v1/namespaces/default/configmaps")
                .header("accept-encoding", encoding)
                .body(Vec::new())
                .unwrap();
            let resp = client
                .send(req.map(kube::client::Body::from))
                .await
                .unwrap();
            let gzipped = resp
                .headers()
                .get("content-encoding")
                .is_some_and(|v| v == "gzip");
            let bytes = http_body_util::BodyExt::collect(resp.into_body())
                .await
                .unwrap()
                .to_bytes();
            (gzipped, bytes)
        }
    };
    let (gzipped, bytes) = get("gzip").await;
    assert!(gzipped, "a 256 KiB list should be gzipped");
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut text)
        .unwrap();
    let list: Value = serde_json::from_str(&text).unwrap();
    let big = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|cm| cm["metadata"]["name"].as_str().unwrap().starts_with("big"))
        .count();
    assert_eq!(big, 4);
    assert!(bytes.len() < text.len() / 10);
    let (gzipped, bytes) = get("identity").await;
    assert!(!gzipped);
    assert!(serde_json::from_slice::<Value>(&bytes).is_ok());
}

//! Builds the API catalog from the `k8s-pb` crate's generated sources: for every protobuf
//! message, its fields (tag, wire type, message type) and the upstream list/map markers that
//! the Go types carry in their comments (`+patchMergeKey`, `+patchStrategy`, `+listType`,
//! `+listMapKey`, `+mapType`, `+structType`).
//!
//! The apiserver uses it to decode Kubernetes protobuf bodies into JSON, to add the
//! `x-kubernetes-*` extensions to its OpenAPI schemas, and to apply strategic merge patches.
//! Names are normalized (lowercase, no underscores) because prost renames `PodIP` to `PodIp`
//! and `podIPs` to `pod_ips`; normalized, they match the OpenAPI schema and JSON names.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=../Cargo.lock");
    let src = k8s_pb_source_dir();
    let mut messages = Vec::new();
    collect(&src, &src, &mut messages);
    messages.sort_by(|a, b| a.name.cmp(&b.name));
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("catalog.rs");
    std::fs::write(&out, render(&messages)).unwrap();
}

/// Locates the `k8s-pb` package's `src` directory through `cargo metadata`.
fn k8s_pb_source_dir() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").unwrap();
    let metadata = |offline: bool| {
        let mut cmd = std::process::Command::new(&cargo);
        cmd.args(["metadata", "--format-version", "1"]);
        if offline {
            cmd.arg("--offline");
        }
        cmd.current_dir(&manifest_dir)
            .output()
            .expect("running cargo metadata")
    };
    // Offline first; a package the build itself did not need may still have to be fetched.
    let mut output = metadata(true);
    if !output.status.success() {
        output = metadata(false);
    }
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let package = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "k8s-pb")
        .expect("k8s-pb is a dependency");
    let manifest = PathBuf::from(package["manifest_path"].as_str().unwrap());
    manifest.parent().unwrap().join("src")
}

struct Field {
    name: String,
    tag: u32,
    kind: String,
    repeated: bool,
    message: String,
    markers: Vec<(String, String)>,
}

struct Message {
    name: String,
    fields: Vec<Field>,
    /// `+structType=atomic` or `+mapType=atomic` on the Go type itself.
    atomic: bool,
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<Message>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect(root, &path, out);
        } else if path.file_name().is_some_and(|n| n == "mod.rs") {
            let module: Vec<String> = path
                .parent()
                .unwrap()
                .strip_prefix(root)
                .unwrap()
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            parse_module(&std::fs::read_to_string(&path).unwrap(), &module, out);
        }
    }
}

fn normalize(s: &str) -> String {
    s.trim_start_matches("r#")
        .chars()
        .filter(|c| *c != '_')
        .flat_map(|c| c.to_lowercase())
        .collect()
}

/// `io.k8s.<module path with - for _>.<Message>`, normalized.
fn qualified(module: &[String], message: &str) -> String {
    let mut name = String::from("io.k8s");
    for part in module {
        name.push('.');
        name.push_str(&part.replace('_', "-"));
    }
    name.push('.');
    name.push_str(message);
    name.to_lowercase()
}

fn parse_module(text: &str, module: &[String], out: &mut Vec<Message>) {
    let mut current: Option<Message> = None;
    let mut markers: Vec<(String, String)> = Vec::new();
    let mut attr: Option<String> = None;
    let mut field_decl: Option<String> = None;
    // A type-level marker seen in the doc comment above the next `pub struct`.
    let mut type_atomic = false;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("pub struct ") {
            if let Some(name) = rest.strip_suffix(" {") {
                current = Some(Message {
                    name: qualified(module, name),
                    fields: Vec::new(),
                    atomic: std::mem::take(&mut type_atomic),
                });
            }
            continue;
        }
        if current.is_none() {
            match line.trim().strip_prefix("///") {
                Some(doc) => {
                    let doc = doc.trim();
                    if doc == "+structType=atomic" || doc == "+mapType=atomic" {
                        type_atomic = true;
                    }
                }
                None if line.starts_with("#[") => {}
                None => type_atomic = false,
            }
            continue;
        }
        if line == "}" {
            if let Some(m) = current.take() {
                out.push(m);
            }
            continue;
        }
        let Some(message) = current.as_mut() else {
            continue;
        };
        let trimmed = line.trim();
        if let Some(decl) = field_decl.as_mut() {
            decl.push_str(trimmed);
        } else if let Some(doc) = trimmed.strip_prefix("///") {
            let doc = doc.trim();
            if let Some(marker) = doc.strip_prefix('+')
                && let Some((key, value)) = marker.split_once('=')
                && matches!(
                    key,
                    "patchMergeKey"
                        | "patchStrategy"
                        | "listType"
                        | "listMapKey"
                        | "mapType"
                        | "structType"
                )
            {
                markers.push((key.to_owned(), value.trim().to_owned()));
            }
            continue;
        } else if trimmed.starts_with("#[prost(") {
            attr = Some(trimmed.to_owned());
            continue;
        } else if trimmed.starts_with("pub ") && attr.is_some() {
            field_decl = Some(trimmed.to_owned());
        } else {
            continue;
        }
        let decl = field_decl.as_ref().unwrap();
        let depth: i32 = decl
            .chars()
            .map(|c| match c {
                '<' => 1,
                '>' => -1,
                _ => 0,
            })
            .sum();
        if !(decl.ends_with(',') && depth == 0) {
            continue;
        }
        let decl = field_decl.take().unwrap();
        let attr_text = attr.take().unwrap();
        let (name, ty) = decl
            .trim_start_matches("pub ")
            .split_once(':')
            .expect("field declaration");
        message.fields.push(parse_field(
            name.trim(),
            ty.trim().trim_end_matches(','),
            &attr_text,
            module,
            std::mem::take(&mut markers),
        ));
    }
}

fn parse_field(
    name: &str,
    ty: &str,
    attr: &str,
    module: &[String],
    markers: Vec<(String, String)>,
) -> Field {
    let inner = attr
        .trim_start_matches("#[prost(")
        .trim_end_matches(")]")
        .to_owned();
    let tag: u32 = inner
        .split("tag = \"")
        .nth(1)
        .and_then(|t| t.split('"').next())
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no tag in {attr}"));
    let repeated = inner.contains(", repeated");
    let kind = if let Some(map) = inner.strip_prefix("btree_map = \"") {
        format!("map:{}", map.split('"').next().unwrap().replace(' ', ""))
    } else {
        inner
            .split([',', ' ', '='])
            .next()
            .unwrap()
            .trim()
            .to_owned()
    };
    let message = if kind == "message" || kind.ends_with(",message") {
        resolve_type(ty, module)
    } else {
        String::new()
    };
    Field {
        name: normalize(name),
        tag,
        kind,
        repeated,
        message,
        markers,
    }
}

/// Resolves the message type named in a Rust field type relative to `module`.
fn resolve_type(ty: &str, module: &[String]) -> String {
    let candidate = ty
        .split(['<', '>', ',', ' '])
        .rfind(|t| !t.is_empty() && !t.starts_with("::"))
        .unwrap_or_else(|| panic!("no message type in {ty}"));
    let mut path: Vec<String> = module.to_vec();
    let mut parts: Vec<&str> = candidate.split("::").collect();
    let message = parts.pop().unwrap();
    for part in parts {
        if part == "super" {
            path.pop();
        } else {
            path.push(part.to_owned());
        }
    }
    qualified(&path, message)
}

fn render(messages: &[Message]) -> String {
    let mut out = String::from("// Generated by build.rs from the k8s-pb sources.\n");
    out.push_str("pub static MESSAGES: &[CatalogMessage] = &[\n");
    for m in messages {
        writeln!(
            out,
            "CatalogMessage {{ name: {:?}, atomic: {}, fields: &[",
            m.name, m.atomic
        )
        .unwrap();
        for f in &m.fields {
            let get = |k: &str| {
                f.markers
                    .iter()
                    .find(|(key, _)| key == k)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            };
            let keys: Vec<String> = f
                .markers
                .iter()
                .filter(|(k, _)| k == "listMapKey")
                .map(|(_, v)| v.clone())
                .collect();
            writeln!(
                out,
                "  CatalogField {{ name: {:?}, tag: {}, kind: {:?}, repeated: {}, message: {:?}, \
                 patch_merge_key: {:?}, patch_strategy: {:?}, list_type: {:?}, list_map_keys: &{:?}, \
                 map_type: {:?}, struct_type: {:?} }},",
                f.name,
                f.tag,
                f.kind,
                f.repeated,
                f.message,
                get("patchMergeKey"),
                get("patchStrategy"),
                get("listType"),
                keys,
                get("mapType"),
                get("structType"),
            )
            .unwrap();
        }
        out.push_str("]},\n");
    }
    out.push_str("];\n");
    out
}

//! The ImageLocality score: a node that already holds the images of a pod's containers (init
//! and regular, as `node.status.images` lists them) scores higher, so the pod starts without
//! pulling. Each image held counts its size scaled by the share of nodes holding it (an image
//! present everywhere says little about this node and would pile pods onto a few nodes
//! otherwise); the sum is clamped between 23 MiB and 1000 MiB per container and mapped
//! linearly onto 0–10,000 (upstream: 0–100, not normalized afterwards).
//!
//! Names are matched as upstream does: the pod's image gets `:latest` when it has no tag, and
//! is then compared verbatim with the names the node reports (no registry or `library/`
//! expansion, so `nginx` matches a node's `nginx:latest` but not `docker.io/library/nginx:latest`).
//!
//! [`ImageSpread`] is the per-pass precomputation (one walk over every node's image list);
//! [`score`] then costs one walk over the scored node's image names.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Node, Pod};

use crate::cache::NodeInfo;

/// Upstream's weight for ImageLocality in the default profile.
pub const WEIGHT: i64 = 1;

const MIB: i64 = 1024 * 1024;
/// Below this many (spread-scaled) bytes a node scores 0.
pub const MIN_THRESHOLD: i64 = 23 * MIB;
/// The sum at which a node scores the maximum is this times the number of containers.
pub const MAX_CONTAINER_THRESHOLD: i64 = 1000 * MIB;
/// The highest score on our scale.
pub const MAX_SCORE: i64 = 10_000;

/// How many nodes hold each image name, and its size, over the nodes of one pass.
#[derive(Debug, Clone, Default)]
pub struct ImageSpread {
    images: HashMap<String, ImageState>,
    total_nodes: usize,
}

#[derive(Debug, Clone)]
struct ImageState {
    /// The size reported by the first node seen listing the name.
    size: i64,
    nodes: usize,
    /// The index of the last node counted, so a name a node lists twice counts once.
    last_node: usize,
}

impl ImageSpread {
    pub fn from_nodes(nodes: &[NodeInfo]) -> ImageSpread {
        let mut images: HashMap<String, ImageState> = HashMap::new();
        for (index, info) in nodes.iter().enumerate() {
            for image in node_images(&info.node) {
                let size = image.size_bytes.unwrap_or(0);
                for name in image.names.iter().flatten() {
                    match images.get_mut(name) {
                        Some(state) => {
                            if state.last_node != index {
                                state.nodes += 1;
                                state.last_node = index;
                            }
                        }
                        None => {
                            images.insert(
                                name.clone(),
                                ImageState {
                                    size,
                                    nodes: 1,
                                    last_node: index,
                                },
                            );
                        }
                    }
                }
            }
        }
        ImageSpread {
            images,
            total_nodes: nodes.len(),
        }
    }

    /// Nodes holding `name` (verbatim, as nodes report it).
    pub fn nodes_with(&self, name: &str) -> usize {
        self.images.get(name).map_or(0, |s| s.nodes)
    }

    /// The image's size scaled by the share of nodes holding it, in bytes.
    fn scaled(&self, name: &str, size_here: i64) -> i64 {
        let (size, holders) = match self.images.get(name) {
            Some(state) => (state.size, state.nodes),
            // A node the spread was not built from: count it as the only holder.
            None => (size_here, 1),
        };
        let total = self.total_nodes.max(holders).max(1);
        (size as f64 * (holders as f64 / total as f64)) as i64
    }
}

fn node_images(node: &Node) -> impl Iterator<Item = &k8s_openapi::api::core::v1::ContainerImage> {
    node.status
        .as_ref()
        .and_then(|s| s.images.as_ref())
        .into_iter()
        .flatten()
}

/// The name a pod's image is looked up under: `:latest` appended when there is no tag after
/// the last `/` (a registry port such as `host:5000/app` is not a tag).
pub fn normalized_image_name(name: &str) -> String {
    let colon = name.rfind(':').map_or(-1, |i| i as i64);
    let slash = name.rfind('/').map_or(-1, |i| i as i64);
    if colon <= slash {
        format!("{name}:latest")
    } else {
        name.to_owned()
    }
}

/// ImageLocality for `pod` on `node`, 0–[`MAX_SCORE`].
pub fn score(pod: &Pod, node: &NodeInfo, spread: &ImageSpread) -> i64 {
    let Some(spec) = pod.spec.as_ref() else {
        return 0;
    };
    let wanted: Vec<String> = spec
        .init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter())
        .map(|c| normalized_image_name(c.image.as_deref().unwrap_or("")))
        .collect();
    // The size this node reports for each wanted name it holds.
    let mut held: Vec<Option<i64>> = vec![None; wanted.len()];
    for image in node_images(&node.node) {
        for name in image.names.iter().flatten() {
            for (i, w) in wanted.iter().enumerate() {
                if held[i].is_none() && w == name {
                    held[i] = Some(image.size_bytes.unwrap_or(0));
                }
            }
        }
    }
    let sum: i64 = wanted
        .iter()
        .zip(&held)
        .filter_map(|(name, size)| size.map(|s| spread.scaled(name, s)))
        .fold(0i64, i64::saturating_add);
    priority(sum, wanted.len())
}

/// Maps the summed image bytes onto 0–[`MAX_SCORE`] between the thresholds.
fn priority(sum: i64, containers: usize) -> i64 {
    let max = MAX_CONTAINER_THRESHOLD.saturating_mul(containers as i64);
    if max <= MIN_THRESHOLD {
        return 0;
    }
    let clamped = sum.clamp(MIN_THRESHOLD, max);
    let scaled = i128::from(MAX_SCORE) * i128::from(clamped - MIN_THRESHOLD)
        / i128::from(max - MIN_THRESHOLD);
    scaled as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filters::tests::node;
    use k8s_openapi::api::core::v1::{Container, ContainerImage, PodSpec};
    use std::sync::Arc;

    fn node_with(name: &str, images: &[(&[&str], i64)]) -> NodeInfo {
        let mut n = node(name, "4", "8Gi", "110");
        if let Some(status) = n.status.as_mut() {
            status.images = Some(
                images
                    .iter()
                    .map(|(names, size)| ContainerImage {
                        names: Some(names.iter().map(|s| (*s).to_owned()).collect()),
                        size_bytes: Some(*size),
                    })
                    .collect(),
            );
        }
        NodeInfo::new(Arc::new(n))
    }

    fn pod_with(init: &[&str], containers: &[&str]) -> Pod {
        let c = |image: &&str| Container {
            name: "c".into(),
            image: Some((*image).to_owned()),
            ..Container::default()
        };
        Pod {
            spec: Some(PodSpec {
                init_containers: (!init.is_empty()).then(|| init.iter().map(c).collect()),
                containers: containers.iter().map(c).collect(),
                ..PodSpec::default()
            }),
            ..Pod::default()
        }
    }

    #[test]
    fn names_get_latest_only_without_a_tag() {
        assert_eq!(normalized_image_name("nginx"), "nginx:latest");
        assert_eq!(normalized_image_name("nginx:1.27"), "nginx:1.27");
        assert_eq!(
            normalized_image_name("registry.k8s.io/pause:3.10"),
            "registry.k8s.io/pause:3.10"
        );
        assert_eq!(
            normalized_image_name("localhost:5000/app"),
            "localhost:5000/app:latest"
        );
        assert_eq!(
            normalized_image_name("nginx@sha256:0123abcd"),
            "nginx@sha256:0123abcd"
        );
    }

    #[test]
    fn an_untagged_image_matches_the_nodes_latest_tag() {
        let nodes = vec![
            node_with("a", &[(&["nginx:latest", "nginx@sha256:0123"], 2000 * MIB)]),
            node_with("b", &[(&["docker.io/library/nginx:latest"], 2000 * MIB)]),
        ];
        let spread = ImageSpread::from_nodes(&nodes);
        let pod = pod_with(&[], &["nginx"]);
        // Held by one node of two: 1000 MiB after scaling, the per-container maximum.
        assert_eq!(score(&pod, &nodes[0], &spread), 10_000);
        // The fully qualified name is another name upstream does not expand to.
        assert_eq!(score(&pod, &nodes[1], &spread), 0);
    }

    #[test]
    fn nodes_holding_the_image_rank_above_those_that_do_not() {
        let nodes = vec![
            node_with("a", &[(&["app:v1"], 500 * MIB)]),
            node_with("b", &[(&["app:v1"], 500 * MIB), (&["app:v1"], 500 * MIB)]),
            node_with("c", &[(&["other:v1"], 500 * MIB)]),
        ];
        let spread = ImageSpread::from_nodes(&nodes);
        assert_eq!(spread.nodes_with("app:v1"), 2);
        let pod = pod_with(&[], &["app:v1"]);
        // 500 MiB × 2/3 = 349,525,333 bytes: 10,000 × (that − 23 MiB) / (1000 MiB − 23 MiB).
        assert_eq!(score(&pod, &nodes[0], &spread), 3176);
        assert_eq!(score(&pod, &nodes[1], &spread), 3176);
        assert_eq!(score(&pod, &nodes[2], &spread), 0);
    }

    #[test]
    fn sums_outside_the_thresholds_are_clamped() {
        let nodes = vec![node_with(
            "a",
            &[(&["small:v1"], 10 * MIB), (&["huge:v1"], 2000 * MIB)],
        )];
        let spread = ImageSpread::from_nodes(&nodes);
        assert_eq!(score(&pod_with(&[], &["small:v1"]), &nodes[0], &spread), 0);
        assert_eq!(
            score(&pod_with(&[], &["huge:v1"]), &nodes[0], &spread),
            10_000
        );
    }

    #[test]
    fn init_containers_count_in_the_sum_and_the_maximum() {
        let nodes = vec![
            node_with("a", &[(&["app:v1"], 500 * MIB)]),
            node_with("b", &[(&["app:v1"], 500 * MIB), (&["init:v1"], 300 * MIB)]),
            node_with("c", &[(&["app:v1"], 500 * MIB)]),
        ];
        let spread = ImageSpread::from_nodes(&nodes);
        let pod = pod_with(&["init:v1"], &["app:v1"]);
        // Two containers: the maximum is 2000 MiB; node a holds only app (500 MiB everywhere).
        assert_eq!(score(&pod, &nodes[0], &spread), 2412);
        // Node b also holds init (300 MiB on 1 node of 3 = 100 MiB).
        assert_eq!(score(&pod, &nodes[1], &spread), 2918);
    }

    #[test]
    fn a_pod_without_containers_scores_zero() {
        let nodes = vec![node_with("a", &[(&["app:v1"], 500 * MIB)])];
        let spread = ImageSpread::from_nodes(&nodes);
        assert_eq!(score(&pod_with(&[], &[]), &nodes[0], &spread), 0);
        assert_eq!(score(&Pod::default(), &nodes[0], &spread), 0);
    }
}

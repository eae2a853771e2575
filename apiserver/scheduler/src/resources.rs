//! Resource quantities as the scheduler counts them: CPU in millicores, memory in bytes, and
//! a pod's effective request (the larger of its containers' sum and its largest init
//! container, plus overhead).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// Parses a quantity into units of 1/1000 (so "100m" CPU is 100 and "1" is 1000).
pub fn milli(q: &Quantity) -> i64 {
    let s = q.0.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    let number: f64 = number.parse().unwrap_or(0.0);
    let factor: f64 = match suffix {
        "" => 1.0,
        "m" => 0.001,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        e if e.starts_with(['e', 'E']) => 10f64.powi(e[1..].parse().unwrap_or(0)),
        _ => 1.0,
    };
    (number * factor * 1000.0).ceil() as i64
}

/// A pod's requests per resource name, in milli-units.
pub fn pod_requests(pod: &Pod) -> BTreeMap<String, i64> {
    let mut total: BTreeMap<String, i64> = BTreeMap::new();
    let Some(spec) = pod.spec.as_ref() else {
        return total;
    };
    let requests_of = |c: &k8s_openapi::api::core::v1::Container| {
        let res = c.resources.clone().unwrap_or_default();
        // Limits stand in for unset requests, as defaulting does.
        let mut r: BTreeMap<String, i64> = res
            .limits
            .unwrap_or_default()
            .iter()
            .map(|(k, v)| (k.clone(), milli(v)))
            .collect();
        for (k, v) in res.requests.unwrap_or_default() {
            r.insert(k, milli(&v));
        }
        r
    };
    for c in &spec.containers {
        for (k, v) in requests_of(c) {
            *total.entry(k).or_default() += v;
        }
    }
    for c in spec.init_containers.iter().flatten() {
        for (k, v) in requests_of(c) {
            let e = total.entry(k).or_default();
            *e = (*e).max(v);
        }
    }
    for (k, v) in spec.overhead.clone().unwrap_or_default() {
        *total.entry(k).or_default() += milli(&v);
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_parse_in_milli_units() {
        assert_eq!(milli(&Quantity("100m".into())), 100);
        assert_eq!(milli(&Quantity("2".into())), 2000);
        assert_eq!(milli(&Quantity("1Ki".into())), 1_024_000);
        assert_eq!(milli(&Quantity("1G".into())), 1_000_000_000_000);
        assert_eq!(milli(&Quantity("1.5".into())), 1500);
    }
}

//! Turns a request's method, path and query into what it asks for: verb, group, version,
//! namespace, resource, name and subresource (the upstream `RequestInfo`), plus the parsed
//! query parameters. Knows nothing about which resources exist.

use std::collections::HashMap;

/// Query parameters; keys may repeat (`command=ls&command=/`).
#[derive(Debug, Default, Clone)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    /// Parses a raw query string; tolerates an empty query, a leading `&` and `k=` forms.
    pub fn parse(raw: Option<&str>) -> Query {
        let pairs = raw
            .map(|q| {
                form_urlencoded::parse(q.as_bytes())
                    .filter(|(k, _)| !k.is_empty())
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect()
            })
            .unwrap_or_default();
        Query { pairs }
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The first non-empty value of `key`.
    pub fn non_empty(&self, key: &str) -> Option<&str> {
        self.get(key).filter(|v| !v.is_empty())
    }

    /// Every value of `key`, in order.
    pub fn all(&self, key: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Whether `key` is present (any value).
    pub fn has(&self, key: &str) -> bool {
        self.pairs.iter().any(|(k, _)| k == key)
    }

    /// `true`/`1` as booleans, the way the apiserver's query decoder reads them.
    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1" | "True" | "TRUE"))
    }

    pub fn as_map(&self) -> HashMap<&str, &str> {
        self.pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }
}

/// What a request addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestInfo {
    /// Whether the path is under `/api` or `/apis` and names a resource.
    pub is_resource: bool,
    /// get, list, watch, create, update, patch, delete, deletecollection (or the lowercase
    /// HTTP method for non-resource paths).
    pub verb: String,
    /// `api` or `apis` for resource requests.
    pub prefix: String,
    pub group: String,
    pub version: String,
    pub namespace: Option<String>,
    pub resource: String,
    pub subresource: Option<String>,
    pub name: Option<String>,
    /// The raw path.
    pub path: String,
}

/// Subresources that `/namespaces/<name>/<x>` names on the namespace itself.
const NAMESPACE_SUBRESOURCES: [&str; 2] = ["status", "finalize"];

impl RequestInfo {
    pub fn parse(method: &http::Method, path: &str, query: &Query) -> RequestInfo {
        let mut info = RequestInfo {
            verb: method.as_str().to_lowercase(),
            path: path.to_owned(),
            ..Default::default()
        };
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        let (prefix, rest) = match parts.split_first() {
            Some((p @ (&"api" | &"apis"), rest)) => (*p, rest),
            _ => return info,
        };
        info.prefix = prefix.to_owned();
        let rest = if prefix == "api" {
            match rest.split_first() {
                Some((version, rest)) => {
                    info.version = (*version).to_owned();
                    rest
                }
                None => return info,
            }
        } else {
            match rest {
                [group, version, rest @ ..] => {
                    info.group = (*group).to_owned();
                    info.version = (*version).to_owned();
                    rest
                }
                _ => return info,
            }
        };
        if rest.is_empty() || rest.iter().any(|p| p.is_empty()) {
            return info;
        }
        let mut parts: Vec<&str> = rest.to_vec();
        if parts[0] == "namespaces" && parts.len() > 1 {
            info.namespace = Some(parts[1].to_owned());
            if parts.len() > 2 && !NAMESPACE_SUBRESOURCES.contains(&parts[2]) {
                parts.drain(..2);
            }
        }
        info.is_resource = true;
        info.resource = parts[0].to_owned();
        if parts.len() >= 2 {
            info.name = Some(parts[1].to_owned());
        }
        if parts.len() >= 3 {
            info.subresource = Some(parts[2..].join("/"));
        }
        // A namespace object is cluster scoped: `/api/v1/namespaces/x` names it, not a scope.
        if info.resource == "namespaces" && parts.len() >= 2 {
            info.namespace = None;
        }
        info.verb = match (method.as_str(), info.name.is_some()) {
            ("GET" | "HEAD", true) => "get",
            ("GET" | "HEAD", false) if query.flag("watch") => "watch",
            ("GET" | "HEAD", false) => "list",
            ("POST", _) => "create",
            ("PUT", _) => "update",
            ("PATCH", _) => "patch",
            ("DELETE", true) => "delete",
            ("DELETE", false) => "deletecollection",
            (other, _) => {
                return RequestInfo {
                    verb: other.to_lowercase(),
                    ..info
                };
            }
        }
        .to_owned();
        info
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    fn parse(method: Method, uri: &str) -> RequestInfo {
        let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
        RequestInfo::parse(&method, path, &Query::parse(Some(query)))
    }

    #[test]
    fn namespaced_core_object_with_subresource() {
        let i = parse(Method::GET, "/api/v1/namespaces/default/pods/web-0/log");
        assert_eq!(i.verb, "get");
        assert_eq!(i.namespace.as_deref(), Some("default"));
        assert_eq!(i.resource, "pods");
        assert_eq!(i.name.as_deref(), Some("web-0"));
        assert_eq!(i.subresource.as_deref(), Some("log"));
    }

    #[test]
    fn group_list_and_watch_and_collection_delete() {
        let i = parse(
            Method::GET,
            "/apis/apps/v1/namespaces/ns/deployments?watch=1",
        );
        assert_eq!(
            (i.verb.as_str(), i.group.as_str(), i.version.as_str()),
            ("watch", "apps", "v1")
        );
        let i = parse(Method::GET, "/apis/apps/v1/deployments?&limit=500");
        assert_eq!((i.verb.as_str(), i.namespace), ("list", None));
        let i = parse(
            Method::DELETE,
            "/api/v1/namespaces/ns/configmaps?labelSelector=a%3Db",
        );
        assert_eq!(i.verb, "deletecollection");
    }

    #[test]
    fn namespaces_are_objects_with_their_own_subresources() {
        let i = parse(Method::GET, "/api/v1/namespaces/kube-system");
        assert_eq!(
            (i.resource.as_str(), i.name.as_deref(), i.namespace),
            ("namespaces", Some("kube-system"), None)
        );
        let i = parse(Method::PUT, "/api/v1/namespaces/x/status");
        assert_eq!(
            (i.resource.as_str(), i.subresource.as_deref()),
            ("namespaces", Some("status"))
        );
        let i = parse(Method::POST, "/api/v1/namespaces");
        assert_eq!(
            (i.verb.as_str(), i.resource.as_str()),
            ("create", "namespaces")
        );
    }

    #[test]
    fn non_resource_paths_are_marked() {
        for p in [
            "/version",
            "/apis",
            "/api",
            "/api/v1",
            "/apis/apps/v1",
            "/openapi/v3",
        ] {
            assert!(!parse(Method::GET, p).is_resource, "{p}");
        }
    }

    #[test]
    fn query_tolerates_what_clients_send() {
        let q = Query::parse(Some("&watch=true&verbose=&command=ls&command=%2F"));
        assert!(q.flag("watch"));
        assert!(q.has("verbose"));
        assert_eq!(q.all("command"), ["ls", "/"]);
        assert!(Query::parse(Some("")).get("x").is_none());
    }
}

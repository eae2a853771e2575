//! Content negotiation: which representation a client asked for in `Accept` (object, Table,
//! PartialObjectMetadata, aggregated discovery), and how to read a request body from its
//! `Content-Type` (JSON, YAML, Kubernetes protobuf).

use serde_json::Value;

use super::protobuf;
use super::status_error::ApiError;
use super::strict_json;

/// One entry of an `Accept` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaRange {
    pub mime: String,
    pub params: Vec<(String, String)>,
}

impl MediaRange {
    pub fn param(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }
}

/// Parses an `Accept` header into its entries, in the client's order (q-values ignored, as
/// the real server does).
pub fn parse_accept(header: Option<&str>) -> Vec<MediaRange> {
    let Some(header) = header else {
        return Vec::new();
    };
    header
        .split(',')
        .filter_map(|entry| {
            let mut parts = entry.split(';').map(str::trim);
            let mime = parts.next()?.to_ascii_lowercase();
            if mime.is_empty() {
                return None;
            }
            let params = parts
                .filter_map(|p| p.split_once('='))
                .map(|(k, v)| (k.trim().to_owned(), v.trim().trim_matches('"').to_owned()))
                .collect();
            Some(MediaRange { mime, params })
        })
        .collect()
}

/// The representation of an object or list answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Json,
    Yaml,
    /// A `meta.k8s.io` Table of the given version (`v1` or `v1beta1`).
    Table(&'static str),
    /// `PartialObjectMetadata` / `PartialObjectMetadataList` of the given version.
    Metadata(&'static str),
    /// Kubernetes protobuf (JSON where an object has no exact protobuf form).
    Protobuf,
}

impl Output {
    /// The Content-Type header of this representation.
    pub fn content_type(&self) -> String {
        match self {
            Output::Json => "application/json".into(),
            Output::Yaml => "application/yaml".into(),
            Output::Protobuf => "application/vnd.kubernetes.protobuf".into(),
            Output::Table(v) => format!("application/json;as=Table;v={v};g=meta.k8s.io"),
            Output::Metadata(v) => {
                format!("application/json;as=PartialObjectMetadata;v={v};g=meta.k8s.io")
            }
        }
    }
}

fn meta_version(range: &MediaRange) -> Option<&'static str> {
    if range.param("g") != Some("meta.k8s.io") {
        return None;
    }
    match range.param("v") {
        Some("v1") => Some("v1"),
        Some("v1beta1") => Some("v1beta1"),
        _ => None,
    }
}

/// Picks the first acceptable representation for resource answers.
pub fn negotiate_output(accept: Option<&str>) -> Result<Output, ApiError> {
    let ranges = parse_accept(accept);
    if ranges.is_empty() {
        return Ok(Output::Json);
    }
    for range in &ranges {
        let json_like = matches!(
            range.mime.as_str(),
            "application/json" | "*/*" | "application/*"
        );
        match range.param("as") {
            Some("Table") if json_like => {
                if let Some(v) = meta_version(range) {
                    return Ok(Output::Table(v));
                }
            }
            Some("PartialObjectMetadata" | "PartialObjectMetadataList") if json_like => {
                if let Some(v) = meta_version(range) {
                    return Ok(Output::Metadata(v));
                }
            }
            Some(_) => {}
            None if json_like => return Ok(Output::Json),
            None if range.mime == "application/yaml" => return Ok(Output::Yaml),
            None if range.mime == "application/vnd.kubernetes.protobuf" => {
                return Ok(Output::Protobuf);
            }
            None => {}
        }
    }
    Err(ApiError::not_acceptable(
        "only the following media types are accepted: application/json, application/yaml, application/vnd.kubernetes.protobuf, application/json;as=Table;v=v1;g=meta.k8s.io",
    ))
}

/// Which discovery document format the client wants for `/api` and `/apis`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiscoveryFormat {
    Legacy,
    /// Aggregated `apidiscovery.k8s.io` of this version (`v2` or `v2beta1`).
    Aggregated(&'static str),
}

pub fn negotiate_discovery(accept: Option<&str>) -> DiscoveryFormat {
    for range in parse_accept(accept) {
        if range.param("as") == Some("APIGroupDiscoveryList")
            && range.param("g") == Some("apidiscovery.k8s.io")
        {
            match range.param("v") {
                Some("v2") => return DiscoveryFormat::Aggregated("v2"),
                Some("v2beta1") => return DiscoveryFormat::Aggregated("v2beta1"),
                _ => continue,
            }
        }
        if range.param("as").is_none() {
            return DiscoveryFormat::Legacy;
        }
    }
    DiscoveryFormat::Legacy
}

/// How a request body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    Json,
    Yaml,
    Protobuf,
}

pub fn body_format(content_type: Option<&str>) -> Result<BodyFormat, ApiError> {
    let mime = content_type
        .map(|c| {
            c.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    match mime.as_str() {
        "" | "application/json" | "*/*" => Ok(BodyFormat::Json),
        "application/yaml" | "application/x-yaml" | "text/yaml" => Ok(BodyFormat::Yaml),
        "application/vnd.kubernetes.protobuf" => Ok(BodyFormat::Protobuf),
        _ => Err(ApiError::unsupported_media_type(content_type.unwrap_or(""))),
    }
}

/// Decodes an object body into JSON.
pub fn decode_body(format: BodyFormat, body: &[u8]) -> Result<Value, ApiError> {
    decode_body_checked(format, body).map(|(value, _)| value)
}

/// Decodes a request body, with the paths of any keys a JSON body repeats (for
/// `fieldValidation`).
pub fn decode_body_checked(
    format: BodyFormat,
    body: &[u8],
) -> Result<(Value, Vec<String>), ApiError> {
    let (value, duplicates) = match format {
        BodyFormat::Json => {
            let decoded = strict_json::decode(body).map_err(|e| {
                ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
            })?;
            (decoded.value, decoded.duplicates)
        }
        BodyFormat::Yaml => (decode_yaml(body)?, Vec::new()),
        BodyFormat::Protobuf => (protobuf::decode(body)?, Vec::new()),
    };
    if !value.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be an object (Object 'Kind' is missing)",
        ));
    }
    Ok((value, duplicates))
}

/// Decodes one YAML document into JSON.
pub fn decode_yaml(body: &[u8]) -> Result<Value, ApiError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::bad_request("the YAML body is not valid UTF-8"))?;
    serde_saphyr::from_str::<Value>(text)
        .map_err(|e| ApiError::bad_request(format!("error converting YAML to JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_get_asks_for_a_table_first() {
        let accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(negotiate_output(Some(accept)).unwrap(), Output::Table("v1"));
        assert_eq!(
            Output::Table("v1").content_type(),
            "application/json;as=Table;v=v1;g=meta.k8s.io"
        );
    }

    #[test]
    fn protobuf_is_served_when_asked_first() {
        let accept = "application/vnd.kubernetes.protobuf,application/json";
        assert_eq!(negotiate_output(Some(accept)).unwrap(), Output::Protobuf);
        assert_eq!(
            negotiate_output(Some("application/vnd.kubernetes.protobuf")).unwrap(),
            Output::Protobuf
        );
        // The metadata client's protobuf form is not served; its JSON alternative is.
        let metadata = "application/vnd.kubernetes.protobuf;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json";
        assert_eq!(
            negotiate_output(Some(metadata)).unwrap(),
            Output::Metadata("v1")
        );
        assert_eq!(
            negotiate_output(Some(
                "application/json, application/vnd.kubernetes.protobuf"
            ))
            .unwrap(),
            Output::Json
        );
        assert_eq!(negotiate_output(None).unwrap(), Output::Json);
    }

    #[test]
    fn metadata_and_discovery_are_recognized() {
        let accept = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1";
        assert_eq!(
            negotiate_output(Some(accept)).unwrap(),
            Output::Metadata("v1")
        );
        let accept = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert_eq!(
            negotiate_discovery(Some(accept)),
            DiscoveryFormat::Aggregated("v2")
        );
        let accept = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert_eq!(
            negotiate_discovery(Some(accept)),
            DiscoveryFormat::Aggregated("v2beta1")
        );
        assert_eq!(
            negotiate_discovery(Some("application/json")),
            DiscoveryFormat::Legacy
        );
    }

    #[test]
    fn bodies_decode_by_content_type() {
        let yaml = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\ndata:\n  a: \"1\"\n";
        let v = decode_body(BodyFormat::Yaml, yaml).unwrap();
        assert_eq!(v["data"]["a"], "1");
        assert!(decode_body(BodyFormat::Json, b"{not json").is_err());
        assert!(decode_body(BodyFormat::Json, b"[1]").is_err());
        assert!(body_format(Some("text/plain")).is_err());
    }
}

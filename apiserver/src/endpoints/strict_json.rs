//! JSON decoding that also reports duplicate object keys, in one pass: `fieldValidation`
//! turns them into `duplicate field "spec.replicas"` errors or warnings. As in Go's decoder,
//! the last of the duplicates wins.

use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// A decoded body and the paths of the keys it repeated.
#[derive(Debug)]
pub struct Decoded {
    pub value: Value,
    pub duplicates: Vec<String>,
}

/// Decodes `body` as one JSON value.
pub fn decode(body: &[u8]) -> serde_json::Result<Decoded> {
    let mut state = State::default();
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = ValueSeed { state: &mut state }.deserialize(&mut de)?;
    de.end()?;
    Ok(Decoded {
        value,
        duplicates: state.duplicates,
    })
}

enum Segment {
    Key(String),
    Index(usize),
}

#[derive(Default)]
struct State {
    path: Vec<Segment>,
    duplicates: Vec<String>,
}

impl State {
    fn path_with(&self, key: &str) -> String {
        let mut out = String::new();
        for segment in &self.path {
            match segment {
                Segment::Key(k) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(k);
                }
                Segment::Index(i) => out.push_str(&format!("[{i}]")),
            }
        }
        if !out.is_empty() {
            out.push('.');
        }
        out.push_str(key);
        out
    }
}

struct ValueSeed<'a> {
    state: &'a mut State,
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        loop {
            self.state.path.push(Segment::Index(items.len()));
            let item = seq.next_element_seed(ValueSeed {
                state: &mut *self.state,
            });
            self.state.path.pop();
            match item? {
                Some(v) => items.push(v),
                None => break,
            }
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            self.state.path.push(Segment::Key(key));
            let value = map.next_value_seed(ValueSeed {
                state: &mut *self.state,
            });
            let Some(Segment::Key(key)) = self.state.path.pop() else {
                unreachable!("the segment pushed above")
            };
            let value = value?;
            if out.contains_key(&key) {
                let path = self.state.path_with(&key);
                if !self.state.duplicates.contains(&path) {
                    self.state.duplicates.push(path);
                }
            }
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn duplicates_are_reported_with_their_paths_and_the_last_wins() {
        let body = br#"{"spec": {"replicas": 1, "replicas": 2,
            "template": {"spec": {"containers": [{"name": "a", "name": "b"}]}}}, "kind": "X"}"#;
        let decoded = decode(body).unwrap();
        assert_eq!(
            decoded.duplicates,
            ["spec.replicas", "spec.template.spec.containers[0].name"]
        );
        assert_eq!(decoded.value["spec"]["replicas"], 2);
        assert_eq!(
            decoded.value["spec"]["template"]["spec"]["containers"][0]["name"],
            "b"
        );
    }

    #[test]
    fn decodes_like_serde_json() {
        let body = br#"{"a": [1, -2, 3.5, true, null, "s", {"b": {}}], "c": 18446744073709551615}"#;
        let decoded = decode(body).unwrap();
        assert!(decoded.duplicates.is_empty());
        assert_eq!(
            decoded.value,
            serde_json::from_slice::<Value>(body).unwrap()
        );
        assert_eq!(decoded.value["a"][6], json!({"b": {}}));
        assert!(decode(b"{\"a\": 1} trailing").is_err());
        assert!(decode(b"{\"a\": ").is_err());
    }
}

//! JSON bodies read the one way every parser agrees on: an object that
//! names a key twice is refused. `serde_json` keeps the last value, other
//! parsers (Go's gjson, simdjson's on-demand API) the first, so the warrant
//! could be checked against `"replicas": 2` while the upstream scales to
//! the other value of `{"replicas": 5000, "replicas": 2}`.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Why a body is not one unambiguous JSON value.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyError {
    NotJson,
    RepeatedKey,
}

/// Parses `bytes` as JSON whose objects have distinct keys.
pub fn parse_unique(bytes: &[u8]) -> Result<Value, BodyError> {
    match serde_json::from_slice::<Unique>(bytes) {
        Ok(Unique(v)) => Ok(v),
        // Syntax and EOF errors are "not JSON"; the only data error the
        // visitor raises is a repeated key.
        Err(e) if e.is_data() => Err(BodyError::RepeatedKey),
        Err(_) => Err(BodyError::NotJson),
    }
}

struct Unique(Value);

impl<'de> Deserialize<'de> for Unique {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(UniqueVisitor).map(Unique)
    }
}

struct UniqueVisitor;

impl<'de> Visitor<'de> for UniqueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
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

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("not a finite number"))
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

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Unique(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(de::Error::custom("a key appears twice"));
            }
            let Unique(v) = map.next_value()?;
            object.insert(key, v);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_key_at_any_depth_is_refused() {
        for body in [
            r#"{"replicas":5000,"replicas":2}"#,
            r#"{"a":{"b":1,"b":1}}"#,
            r#"[{"x":1},{"y":2,"y":3}]"#,
            // The same key spelled with an escape is the same key.
            r#"{"replicas":1,"re\u0070licas":2}"#,
        ] {
            assert_eq!(parse_unique(body.as_bytes()), Err(BodyError::RepeatedKey), "{body}");
        }
    }

    #[test]
    fn other_json_reads_as_serde_json_reads_it() {
        for body in [
            r#"{"replicas":2,"tags":["a","b"],"n":null,"f":1.5,"neg":-3,"big":18446744073709551615}"#,
            r#"[1,"two",{"three":3}]"#,
            r#""text""#,
            "true",
        ] {
            let want: Value = serde_json::from_str(body).expect("json");
            assert_eq!(parse_unique(body.as_bytes()), Ok(want), "{body}");
        }
        for body in ["{", "{\"a\":}", "not json", "{\"a\":1}x", ""] {
            assert_eq!(parse_unique(body.as_bytes()), Err(BodyError::NotJson), "{body:?}");
        }
    }
}

//! Strict JSON for JWT headers, payloads and JWKS: duplicate object members and deep nesting
//! are errors (serde_json alone keeps the last duplicate, which lets two parsers disagree).

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Parses `bytes` as one JSON value, rejecting duplicate members and nesting deeper than
/// `max_depth` (the top-level container is depth 1).
pub fn parse(bytes: &[u8], max_depth: usize) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let v = Strict {
        depth_left: max_depth,
    }
    .deserialize(&mut de)?;
    de.end()?;
    Ok(v)
}

struct Strict {
    depth_left: usize,
}

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("non-finite number"))
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
        let depth_left = self
            .depth_left
            .checked_sub(1)
            .ok_or_else(|| A::Error::custom("nesting too deep"))?;
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(Strict { depth_left })? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let depth_left = self
            .depth_left
            .checked_sub(1)
            .ok_or_else(|| A::Error::custom("nesting too deep"))?;
        let mut out = Map::new();
        while let Some(k) = map.next_key::<String>()? {
            let v = map.next_value_seed(Strict { depth_left })?;
            if out.insert(k, v).is_some() {
                return Err(A::Error::custom("duplicate member"));
            }
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::parse;

    #[test]
    fn duplicates_and_depth_are_rejected() {
        assert!(parse(br#"{"a":1,"b":{"c":[1,2]}}"#, 3).is_ok());
        assert!(parse(br#"{"a":1,"a":2}"#, 3).is_err());
        assert!(parse(br#"{"x":{"a":1,"a":1}}"#, 3).is_err());
        assert!(parse(br#"{"a":[[[1]]]}"#, 3).is_err());
        assert!(parse(br#"{"a":1} x"#, 3).is_err());
    }
}

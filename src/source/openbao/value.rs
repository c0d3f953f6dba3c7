//! The JSON visitor that deserializes a KV value straight into a `SecretString`.

use std::fmt;

use secrecy::SecretString;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use zeroize::Zeroize;

/// One KV value, deserialized straight into a `SecretString`. Strings keep their text;
/// numbers and booleans become their JSON text; objects and arrays their compact JSON;
/// `null` the empty string. No `Debug`: it holds a value.
pub(super) struct KvValue(pub(super) SecretString);

impl<'de> Deserialize<'de> for KvValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<KvValue, D::Error> {
        deserializer.deserialize_any(KvValueVisitor)
    }
}

struct KvValueVisitor;

impl KvValueVisitor {
    fn text<E: de::Error>(text: String) -> Result<KvValue, E> {
        Ok(KvValue(SecretString::from(text)))
    }

    /// Compact JSON of a nested value; the parsed tree is wiped string by string.
    fn json<E: de::Error>(mut value: serde_json::Value) -> Result<KvValue, E> {
        let text = serde_json::to_string(&value).map_err(E::custom);
        wipe_json(&mut value);
        Self::text(text?)
    }
}

impl<'de> Visitor<'de> for KvValueVisitor {
    type Value = KvValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a KV value")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<KvValue, E> {
        Ok(KvValue(SecretString::from(v)))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<KvValue, E> {
        Self::text(v)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<KvValue, E> {
        Self::text(v.to_string())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<KvValue, E> {
        Self::text(v.to_string())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<KvValue, E> {
        Self::text(v.to_string())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<KvValue, E> {
        // Through serde_json, so the text is the JSON number as Vault would print it.
        Self::json(serde_json::Value::from(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<KvValue, E> {
        Self::text(String::new())
    }

    fn visit_none<E: de::Error>(self) -> Result<KvValue, E> {
        Self::text(String::new())
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<KvValue, A::Error> {
        let value = serde_json::Value::deserialize(de::value::MapAccessDeserializer::new(map))?;
        Self::json(value)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<KvValue, A::Error> {
        let value = serde_json::Value::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
        Self::json(value)
    }
}

/// Zeroes every string (keys too) of a parsed JSON tree before it is freed.
pub(super) fn wipe_json(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(s) => s.zeroize(),
        serde_json::Value::Array(items) => items.iter_mut().for_each(wipe_json),
        serde_json::Value::Object(map) => {
            for (mut key, mut item) in std::mem::take(map) {
                wipe_json(&mut item);
                key.zeroize();
            }
        }
        _ => {}
    }
}

//! Duplicate-rejecting JSON parsing.
//!
//! serde_json (and therefore jsonwebtoken) resolves repeated object keys "last wins", which lets
//! an attacker make two parsers disagree about a claim. Every object we read from a token or a
//! JWKS goes through these visitors instead, which fail on the first repeated key at any depth.
//! Keys are compared after JSON unescaping, so `"alg"` and `"\u0061lg"` count as the same key.

use std::borrow::Cow;
use std::cell::Cell;
use std::collections::HashSet;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// A policy violation detected while parsing, recorded beside the serde error so callers can
/// map it to a precise reason (serde's own error type only carries text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Violation {
    Duplicate,
    InvalidClaim(&'static str),
}

#[derive(Debug, Default)]
pub(crate) struct Ctx {
    violation: Cell<Option<Violation>>,
}

impl Ctx {
    /// Records the first violation only: later ones are consequences of the first.
    pub(crate) fn flag(&self, v: Violation) {
        if self.violation.get().is_none() {
            self.violation.set(Some(v));
        }
    }

    pub(crate) fn violation(&self) -> Option<Violation> {
        self.violation.get()
    }

    pub(crate) fn duplicate<E: de::Error>(&self) -> E {
        self.flag(Violation::Duplicate);
        E::custom("duplicate key")
    }
}

/// An object key or string value, borrowed from the input when it had no escapes.
pub(crate) struct Str<'de>(pub(crate) Cow<'de, str>);

impl<'de> Deserialize<'de> for Str<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// Set of keys seen in one object: a linear scan for the usual handful, a hash set past that so
/// a token stuffed with thousands of keys cannot make the check quadratic.
#[derive(Default)]
pub(crate) struct SeenKeys<'de> {
    small: Vec<Cow<'de, str>>,
    big: Option<HashSet<Cow<'de, str>>>,
}

const SMALL_LIMIT: usize = 16;

impl<'de> SeenKeys<'de> {
    /// Returns false if the key was already present.
    pub(crate) fn insert(&mut self, key: Cow<'de, str>) -> bool {
        if let Some(big) = self.big.as_mut() {
            return big.insert(key);
        }
        if self.small.contains(&key) {
            return false;
        }
        if self.small.len() < SMALL_LIMIT {
            self.small.push(key);
        } else {
            let mut big: HashSet<Cow<'de, str>> = self.small.drain(..).collect();
            big.insert(key);
            self.big = Some(big);
        }
        true
    }
}

/// Skips any JSON value while still rejecting duplicate keys inside it.
pub(crate) struct Ignore<'c>(pub(crate) &'c Ctx);

impl<'de> DeserializeSeed<'de> for Ignore<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Ignore<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Ignore(self.0))?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = SeenKeys::default();
        while let Some(Str(k)) = map.next_key::<Str<'de>>()? {
            if !seen.insert(k) {
                return Err(self.0.duplicate());
            }
            map.next_value_seed(Ignore(self.0))?;
        }
        Ok(())
    }
}

/// Builds a `serde_json::Value`, rejecting duplicate keys at any depth (used for JWKS documents).
pub(crate) struct StrictValue<'c>(pub(crate) &'c Ctx);

impl<'de> DeserializeSeed<'de> for StrictValue<'_> {
    type Value = serde_json::Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictValue<'_> {
    type Value = serde_json::Value;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(serde_json::Value::Null, Into::into))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(StrictValue(self.0))? {
            out.push(v);
        }
        Ok(serde_json::Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some(Str(k)) = map.next_key::<Str<'de>>()? {
            if out.contains_key(k.as_ref()) {
                return Err(self.0.duplicate());
            }
            let v = map.next_value_seed(StrictValue(self.0))?;
            out.insert(k.into_owned(), v);
        }
        Ok(serde_json::Value::Object(out))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StrictError {
    Duplicate,
    Invalid,
}

impl std::fmt::Display for StrictError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Duplicate => "a JSON object repeats a key",
            Self::Invalid => "not valid JSON",
        })
    }
}

/// Parses a whole document into a `Value`, rejecting duplicate keys and trailing data.
pub(crate) fn parse_value(input: &[u8]) -> Result<serde_json::Value, StrictError> {
    let ctx = Ctx::default();
    let mut de = serde_json::Deserializer::from_slice(input);
    let parsed = StrictValue(&ctx)
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v));
    parsed.map_err(|_| match ctx.violation() {
        Some(Violation::Duplicate) => StrictError::Duplicate,
        _ => StrictError::Invalid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_duplicates_at_any_depth_and_after_unescaping() {
        assert!(parse_value(br#"{"a":1,"b":{"c":[{"d":1}]}}"#).is_ok());
        assert_eq!(
            parse_value(br#"{"a":1,"a":2}"#),
            Err(StrictError::Duplicate)
        );
        assert_eq!(
            parse_value(br#"{"a":1,"\u0061":2}"#),
            Err(StrictError::Duplicate)
        );
        assert_eq!(
            parse_value(br#"{"x":[{"d":1,"d":1}]}"#),
            Err(StrictError::Duplicate)
        );
        assert_eq!(parse_value(br#"{"a":1} x"#), Err(StrictError::Invalid));
    }

    #[test]
    fn many_keys_switch_to_hash_set_and_still_detect_duplicates() {
        let mut doc = String::from("{");
        for i in 0..100 {
            doc.push_str(&format!("\"k{i}\":0,"));
        }
        doc.push_str("\"k7\":1}");
        assert_eq!(parse_value(doc.as_bytes()), Err(StrictError::Duplicate));
        let ok = doc.replace("\"k7\":1}", "\"k700\":1}");
        assert!(parse_value(ok.as_bytes()).is_ok());
    }

    #[test]
    fn ignore_rejects_nested_duplicates() {
        let ctx = Ctx::default();
        let mut de = serde_json::Deserializer::from_slice(br#"[1,"s",null,{"a":{"b":1,"b":2}}]"#);
        assert!(Ignore(&ctx).deserialize(&mut de).is_err());
        assert_eq!(ctx.violation(), Some(Violation::Duplicate));
    }
}

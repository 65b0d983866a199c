//! Durations as specs and configs write them: a whole number and a unit
//! (`500ms`, `1s`, `10s`, `5m`, `24h`, `30d`). One grammar for the spec
//! checker, the config and the rate limiter, so what `cargo xtask gen`
//! accepts is exactly what the runtime understands.
//!
//! [`Duration`] is the spec model's type for them: parsed when a spec is
//! read (a bad value fails `cargo xtask gen` at its place in the YAML), and
//! written back exactly as the spec wrote it.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::time::Duration as StdDuration;

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Parses a duration; `None` for anything else, zero included.
pub fn parse(s: &str) -> Option<StdDuration> {
    let s = s.trim();
    let idx = s.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = s.split_at(idx);
    let n: u64 = n.parse().ok()?;
    let ms = match unit {
        "ms" => n,
        "s" => n.checked_mul(1000)?,
        "m" => n.checked_mul(60_000)?,
        "h" => n.checked_mul(3_600_000)?,
        "d" => n.checked_mul(86_400_000)?,
        _ => return None,
    };
    (ms > 0).then(|| StdDuration::from_millis(ms))
}

/// A duration of the spec model (`every: 5m`, `per: 1s`): its text as
/// written and its value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Duration {
    text: String,
    value: StdDuration,
}

impl Duration {
    /// The value.
    pub fn get(&self) -> StdDuration {
        self.value
    }

    /// The text as the spec wrote it.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// A text that is not a duration.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a duration; write a number and a unit: 500ms, 1s, 10s, 5m, 1h, 30d")]
pub struct NotADuration(pub String);

impl FromStr for Duration {
    type Err = NotADuration;

    fn from_str(s: &str) -> Result<Duration, NotADuration> {
        match parse(s) {
            Some(value) => Ok(Duration {
                text: s.to_string(),
                value,
            }),
            None => Err(NotADuration(s.to_string())),
        }
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// In the JSON Schema a duration is a string, as before it had a type: the
/// grammar is checked when the spec is read, with a message that says it.
impl JsonSchema for Duration {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        String::schema_name()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        String::json_schema(generator)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grammar() {
        assert_eq!(parse("500ms"), Some(StdDuration::from_millis(500)));
        assert_eq!(parse("10s"), Some(StdDuration::from_secs(10)));
        assert_eq!(parse("5m"), Some(StdDuration::from_secs(300)));
        assert_eq!(parse("24h"), Some(StdDuration::from_secs(86_400)));
        assert_eq!(parse(" 30d "), Some(StdDuration::from_secs(2_592_000)));
        for bad in ["0s", "2", "s", "1.5s", "5 minutes", "1 fortnight", ""] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_duration_reads_and_writes_back_as_written() {
        let d: Duration = serde_json::from_value(serde_json::json!("5m")).unwrap();
        assert_eq!(d.get(), StdDuration::from_secs(300));
        assert_eq!(serde_json::to_value(&d).unwrap(), serde_json::json!("5m"));
        assert_eq!(d.to_string(), "5m");
    }

    #[test]
    fn a_bad_duration_is_a_deserialization_error_naming_the_fix() {
        let e = serde_json::from_value::<Duration>(serde_json::json!("5 minutes")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "`5 minutes` is not a duration; write a number and a unit: 500ms, 1s, 10s, 5m, 1h, 30d"
        );
    }
}

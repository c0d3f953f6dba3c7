//! Validation of what requests name and carry: agent and key names, values, descriptions,
//! token lifetimes and the audit query's `since`. Pure functions; errors name the item,
//! never a value.

use super::{Owner, MAX_DESCRIPTION_CHARS, MAX_VALUE_BYTES};
use crate::vault::error::{Error, Result};
use crate::vault::tokens as vault_tokens;
use secrecy::{ExposeSecret, SecretString};
use std::time::Duration;

pub(super) fn validate_owner_name(owner: &Owner) -> Result<()> {
    match owner {
        Owner::Agent(agent) => validate_agent(agent),
        Owner::Project => Ok(()),
    }
}

pub fn validate_agent(agent: &str) -> Result<()> {
    if vault_tokens::valid_agent(agent) {
        Ok(())
    } else {
        Err(Error::InvalidName {
            what: "agent",
            name: agent.chars().take(100).collect(),
            rule: crate::protocol::ident::AGENT_RULE,
        })
    }
}

pub fn validate_key(key: &str) -> Result<()> {
    if vault_tokens::valid_key(key) {
        Ok(())
    } else {
        Err(Error::InvalidName {
            what: "key",
            name: key.chars().take(100).collect(),
            rule: crate::protocol::ident::KEY_RULE,
        })
    }
}

/// Creating an entry on the deny list of `protocol::names` needs the request's explicit
/// `allow_dangerous_name`: whoever can write the store would otherwise run code in the child.
pub(super) fn validate_not_dangerous(key: &str, allowed: bool) -> Result<()> {
    if allowed || !crate::protocol::names::is_dangerous(key) {
        Ok(())
    } else {
        Err(Error::DangerousName {
            key: key.to_string(),
        })
    }
}

/// Whether a value is blank (empty or only whitespace): the one rule for empty values. A
/// `set` of a blank value is refused without `allow_empty_value` (an agent would otherwise
/// run with a key that is there but useless); an import skips blank entries.
pub(super) fn is_blank(value: &SecretString) -> bool {
    value.expose_secret().trim().is_empty()
}

/// A blank value needs the request's explicit `allow_empty_value` ([`is_blank`]).
pub(super) fn validate_not_blank(key: &str, value: &SecretString, allowed: bool) -> Result<()> {
    if allowed || !is_blank(value) {
        Ok(())
    } else {
        Err(Error::EmptyValue {
            key: key.to_string(),
        })
    }
}

pub(super) fn validate_value(key: &str, value: &SecretString) -> Result<()> {
    let bytes = value.expose_secret().as_bytes();
    if bytes.len() > MAX_VALUE_BYTES {
        return Err(Error::ValueTooLarge {
            key: key.to_string(),
            len: bytes.len(),
            max: MAX_VALUE_BYTES,
        });
    }
    if bytes.contains(&0) {
        return Err(Error::InvalidValue {
            key: key.to_string(),
            reason: "values may not contain NUL bytes (they cannot be environment variables)",
        });
    }
    Ok(())
}

pub(super) fn validate_description(description: &str) -> Result<()> {
    if description.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(Error::InvalidRequest(format!(
            "description is longer than {MAX_DESCRIPTION_CHARS} characters"
        )));
    }
    if description.contains('\0') {
        return Err(Error::InvalidRequest(
            "description may not contain NUL bytes".into(),
        ));
    }
    Ok(())
}

/// A token lifetime as text: 1 to 4 digits (no leading zero) and a unit, `s`, `m`, `h` or
/// `d`, e.g. `90s`, `1h`, `30d`. Deliberately narrow so the OpenAPI pattern states it exactly.
pub(super) fn parse_ttl(text: &str) -> Result<Duration> {
    let bad = || {
        Error::InvalidRequest(
            "ttl must be seconds or a duration such as \"1h\", \"90s\" or \"30d\"".into(),
        )
    };
    let (digits, unit) = text.split_at(text.len().saturating_sub(1));
    if digits.is_empty()
        || digits.len() > 4
        || digits.starts_with('0')
        || !digits.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    Ok(Duration::from_secs(n * unit))
}

/// `since` of the audit query: unix seconds or an RFC 3339 date-time (any offset).
pub(super) fn parse_since(text: &str) -> Result<i64> {
    let bad =
        || Error::InvalidRequest("since must be unix seconds or an RFC 3339 date-time".into());
    if !text.is_empty() && text.len() <= 12 && text.bytes().all(|b| b.is_ascii_digit()) {
        let secs: i64 = text.parse().map_err(|_| bad())?;
        return Ok(secs * 1000);
    }
    parse_rfc3339_ms(text).ok_or_else(bad)
}

/// RFC 3339 with any offset to unix milliseconds (negative before 1970), by the `time`
/// crate: humantime accepts only UTC (`Z`).
pub(super) fn parse_rfc3339_ms(text: &str) -> Option<i64> {
    let at =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(at.unix_timestamp_nanos().div_euclid(1_000_000)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_parses() {
        assert_eq!(parse_since("10").ok(), Some(10_000));
        assert_eq!(parse_since("1970-01-01T00:00:01Z").ok(), Some(1000));
        assert_eq!(
            parse_since("2024-01-01T00:00:00Z").ok(),
            Some(1_704_067_200_000)
        );
        assert_eq!(
            parse_since("2024-01-01T01:00:00.5+01:00").ok(),
            Some(1_704_067_200_500)
        );
        assert!(parse_since("2024-02-30T00:00:00Z").is_err());
        assert!(parse_ttl("1h").is_ok());
        assert!(parse_ttl("0s").is_err());
        assert!(parse_ttl("1y").is_err());
        assert!(parse_since("yesterday").is_err());
        assert_eq!(
            parse_since("1969-12-31T23:59:59.999Z").ok(),
            Some(-1),
            "before 1970 is negative"
        );
    }
}

/// Most tags one entry may carry.
pub const MAX_TAGS: usize = 16;
const MAX_TAG_NAME: usize = 63;
const MAX_TAG_VALUE: usize = 128;

/// Tag names: `[a-z][a-z0-9_.-]{0,62}`, so they read the same in a table, a URL and a shell.
pub(super) fn validate_tag_name(name: &str) -> Result<()> {
    let bytes = name.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= MAX_TAG_NAME
        && bytes[0].is_ascii_lowercase()
        && bytes.iter().all(|&b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-')
        });
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidTag {
            tag: name.chars().take(100).collect(),
            rule: "tag names match [a-z][a-z0-9_.-]{0,62}",
        })
    }
}

/// Tag values: up to 128 of `[A-Za-z0-9_.:/@+-]` (no `,` or `=`: they separate filters and
/// `--tag NAME=VALUE`), possibly empty.
pub(super) fn validate_tag_value(name: &str, value: &str) -> Result<()> {
    let ok = value.len() <= MAX_TAG_VALUE
        && value.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'/' | b'@' | b'+' | b'-')
        });
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidTag {
            tag: name.to_string(),
            rule: "tag values are at most 128 of [A-Za-z0-9_.:/@+-]",
        })
    }
}

/// Every name and value of a tag set, and the count.
pub(super) fn validate_tags(tags: &crate::protocol::wire::Tags) -> Result<()> {
    for (name, value) in tags {
        validate_tag_name(name)?;
        validate_tag_value(name, value)?;
    }
    validate_tag_count(tags)
}

pub(super) fn validate_tag_count(tags: &crate::protocol::wire::Tags) -> Result<()> {
    if tags.len() > MAX_TAGS {
        return Err(Error::InvalidTag {
            tag: format!("{} tags", tags.len()),
            rule: "an entry carries at most 16 tags",
        });
    }
    Ok(())
}

/// A list filter `NAME:VALUE,NAME` (`?tag=`): each part a tag with that value, or with any
/// value when the part has no `:`.
pub(super) fn parse_tag_filter(text: &str) -> Result<Vec<(String, Option<String>)>> {
    text.split(',')
        .map(|part| {
            let (name, value) = match part.split_once(':') {
                Some((name, value)) => (name, Some(value)),
                None => (part, None),
            };
            validate_tag_name(name)?;
            if let Some(value) = value {
                validate_tag_value(name, value)?;
            }
            Ok((name.to_string(), value.map(str::to_string)))
        })
        .collect()
}

#[cfg(test)]
mod tag_tests {
    use super::*;

    #[test]
    fn tag_rules() {
        assert!(validate_tag_name("team").is_ok());
        assert!(validate_tag_name("cost-center.v2").is_ok());
        for bad in ["", "Team", "1team", "a b", "a=b", &"a".repeat(64)] {
            assert!(validate_tag_name(bad).is_err(), "{bad:?}");
        }
        assert!(validate_tag_value("t", "").is_ok());
        assert!(validate_tag_value("t", "ml/infra@eu:1").is_ok());
        for bad in ["a,b", "a=b", "a b", &"v".repeat(129)] {
            assert!(validate_tag_value("t", bad).is_err(), "{bad:?}");
        }
        let filter = parse_tag_filter("team:ml,env").expect("valid filter");
        assert_eq!(
            filter,
            vec![("team".into(), Some("ml".into())), ("env".into(), None)]
        );
        assert!(parse_tag_filter("team:ml,").is_err());
    }
}

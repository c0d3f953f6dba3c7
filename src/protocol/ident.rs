//! Agent and key names as both programs check them, and the one rule by which agent-run
//! turns a key that is not an environment name into one. Nothing here decides who may read
//! what (`vault::tokens`) or where a variable goes (`launcher::env`).
//!
//! Agent names may be hierarchical, as the hosted vaults' paths are (`production/openai`):
//! segments of `[a-z0-9][a-z0-9_-]{0,62}` joined by `/`. The charset already leaves out `.`
//! (so no `.` or `..` segment can exist), and an empty segment, a leading or trailing `/`
//! are refused, so a name is one path that no client can make climb or alias. In a URL
//! path the `/` is percent-encoded (`production%2Fopenai`) so the name stays one segment.
//!
//! Key names are widened past environment names so those platforms' keys (`api-key`,
//! `db.url`) can be stored as they are: `[A-Za-z_][A-Za-z0-9_.-]{0,255}`. A key that is
//! not an environment name is mapped by agent-run with [`env_name`].

use std::borrow::Cow;

/// Longest agent name, all segments and `/`s together.
pub const MAX_AGENT_LEN: usize = 255;
/// Longest segment of an agent name.
const MAX_SEGMENT_LEN: usize = 63;
/// Longest key name.
pub const MAX_KEY_LEN: usize = 256;

/// The rule of [`valid_agent`], for error messages.
pub const AGENT_RULE: &str = "agent names are segments of [a-z0-9][a-z0-9_-]{0,62} joined by `/` \
     (production/openai), at most 255 characters, no empty segment and no leading or trailing `/`";
/// The rule of [`valid_key`], for error messages.
pub const KEY_RULE: &str = "keys match [A-Za-z_][A-Za-z0-9_.-]{0,255} (API_KEY, api-key, db.url)";

/// One segment of an agent name: `[a-z0-9][a-z0-9_-]{0,62}`.
pub fn valid_agent_segment(segment: &str) -> bool {
    let bytes = segment.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_SEGMENT_LEN
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes
            .iter()
            .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// An agent name: one or more [`valid_agent_segment`]s joined by `/`, at most
/// [`MAX_AGENT_LEN`] characters.
pub fn valid_agent(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_AGENT_LEN && name.split('/').all(valid_agent_segment)
}

/// A key name: `[A-Za-z_][A-Za-z0-9_.-]{0,255}`.
pub fn valid_key(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_KEY_LEN
        && (bytes[0].is_ascii_alphabetic() || bytes[0] == b'_')
        && bytes
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// `[A-Za-z_][A-Za-z0-9_]*`: the portable shell name, the only kind every program can read.
pub fn valid_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// The environment name agent-run injects `key` under: a valid environment name is never
/// renamed; any other is upper-cased with `-` and `.` turned into `_` (`api-key` →
/// `API_KEY`, `db.url` → `DB_URL`). The result may still be invalid (a file name with a
/// space); the caller refuses it then.
pub fn env_name(key: &str) -> Cow<'_, str> {
    if valid_env_name(key) {
        return Cow::Borrowed(key);
    }
    Cow::Owned(
        key.chars()
            .map(|c| match c {
                '-' | '.' => '_',
                c => c.to_ascii_uppercase(),
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agents() {
        for ok in ["bot", "support-bot", "production/openai", "a/b/c", "0/x_y"] {
            assert!(valid_agent(ok), "{ok}");
        }
        let long_segment = "a".repeat(64);
        let too_long = vec!["a"; 129].join("/");
        assert!(valid_agent(&vec!["a"; 128].join("/")), "255 characters");
        for bad in [
            "",
            "/",
            "/bot",
            "bot/",
            "a//b",
            "a/./b",
            "a/../b",
            "..",
            "Bot",
            "a/B",
            "-a",
            "a/-b",
            "a b",
            "a/*",
            "a/**",
            long_segment.as_str(),
            too_long.as_str(),
        ] {
            assert!(!valid_agent(bad), "{bad:?}");
        }
    }

    #[test]
    fn keys() {
        for ok in ["API_KEY", "api-key", "db.url", "_x", "a1.b-c_d"] {
            assert!(valid_key(ok), "{ok}");
        }
        let too_long = "a".repeat(257);
        for bad in [
            "",
            "1a",
            "-a",
            ".a",
            "a/b",
            "a b",
            "a=b",
            "é",
            too_long.as_str(),
        ] {
            assert!(!valid_key(bad), "{bad:?}");
        }
    }

    #[test]
    fn env_names() {
        assert_eq!(env_name("api-key"), "API_KEY");
        assert_eq!(env_name("db.url"), "DB_URL");
        assert_eq!(env_name("Mixed.Case-key"), "MIXED_CASE_KEY");
        // A valid name is never renamed, lower case included.
        assert!(matches!(
            env_name("lower_case"),
            Cow::Borrowed("lower_case")
        ));
        assert!(matches!(env_name("API_KEY"), Cow::Borrowed("API_KEY")));
        assert!(!valid_env_name(&env_name("a b")));
    }
}

//! `--require KEY,KEY` and `--require-nonempty`: what the child must get before it is
//! started. A wrong token scope or a renamed key otherwise gives an agent that runs without
//! its keys (issue 13). Checked by `env::compose` on every composition, so a first start,
//! `--once`, `--check`, a restart and a change all refuse alike: a change that drops a
//! required key keeps the old child running (the supervisor logs this error) and never
//! starts one without its keys.
//!
//! A required name counts as present when the child gets it from a source or an `--env`
//! mapping, under its final name (after `--prefix` and `--env` renaming); an inherited
//! variable does not count, so a developer's shell cannot hide a key the store lacks. A
//! required variable whose value is empty or only whitespace counts as missing: the store
//! refuses such values unless told otherwise (`--allow-empty-value`), and an empty API key
//! fails later and less clearly than here. Only names are ever reported, never values.

use crate::launcher::env;

/// The requirements, validated by `config`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requirements {
    /// `--require`: names the child must get, sorted, without duplicates.
    pub keys: Vec<String>,
    /// `--require-nonempty`: at least one variable from the sources.
    pub nonempty: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// Names only; `empty` are present with an empty or whitespace-only value.
    #[error("{}", missing_message(.missing, .empty))]
    Missing {
        missing: Vec<String>,
        empty: Vec<String>,
    },
    #[error(
        "no variable came from any source (--require-nonempty): check the files, the KV \
         paths, or the agent and the token's scope (agent-vault tokens list)"
    )]
    NothingFromSources,
    #[error("--require {name:?} is not a valid environment variable name (letters, digits, '_', not starting with a digit)")]
    InvalidName { name: String },
}

impl Error {
    /// Every required name that is not there (missing or empty), sorted.
    pub fn names(&self) -> Vec<String> {
        match self {
            Error::Missing { missing, empty } => {
                let mut all: Vec<String> = missing.iter().chain(empty).cloned().collect();
                all.sort();
                all
            }
            _ => Vec::new(),
        }
    }
}

fn missing_message(missing: &[String], empty: &[String]) -> String {
    let mut parts = Vec::new();
    if !missing.is_empty() {
        parts.push(format!("missing {}", missing.join(", ")));
    }
    if !empty.is_empty() {
        parts.push(format!("empty {}", empty.join(", ")));
    }
    format!(
        "required variable(s) not provided by any source (--require): {}; check the sources, \
         the --only globs, and the token's scope",
        parts.join("; ")
    )
}

impl Requirements {
    /// From `--require` (repeatable, comma lists already split) and `--require-nonempty`.
    pub fn new(keys: &[String], nonempty: bool) -> Result<Requirements, Error> {
        let mut keys: Vec<String> = keys
            .iter()
            .map(|k| k.trim())
            .filter(|k| !k.is_empty())
            .map(str::to_owned)
            .collect();
        if let Some(bad) = keys.iter().find(|k| !env::is_valid_name(k)) {
            return Err(Error::InvalidName { name: bad.clone() });
        }
        keys.sort();
        keys.dedup();
        Ok(Requirements { keys, nonempty })
    }

    /// Checks one composition. `provided`: each variable the child gets from a source or
    /// `--env`, with whether its value is blank; `from_sources`: how many came from a
    /// source (secrets, bulk or mapped).
    pub fn check<'a>(
        &self,
        provided: impl IntoIterator<Item = (&'a str, bool)>,
        from_sources: usize,
    ) -> Result<(), Error> {
        if self.nonempty && from_sources == 0 {
            return Err(Error::NothingFromSources);
        }
        if self.keys.is_empty() {
            return Ok(());
        }
        let provided: std::collections::BTreeMap<&str, bool> = provided.into_iter().collect();
        let mut missing = Vec::new();
        let mut empty = Vec::new();
        for key in &self.keys {
            match provided.get(key.as_str()) {
                None => missing.push(key.clone()),
                Some(true) => empty.push(key.clone()),
                Some(false) => {}
            }
        }
        if missing.is_empty() && empty.is_empty() {
            Ok(())
        } else {
            Err(Error::Missing { missing, empty })
        }
    }
}

/// Empty or whitespace only: what `--require` treats as not provided (the store's rule
/// for an empty value).
pub fn is_blank(value: &[u8]) -> bool {
    value.iter().all(u8::is_ascii_whitespace)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(keys: &[&str], nonempty: bool) -> Requirements {
        let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        Requirements::new(&keys, nonempty).unwrap()
    }

    #[test]
    fn every_missing_and_empty_key_is_named() {
        let r = req(&["C", "A", "B", "A", " "], false);
        assert_eq!(r.keys, ["A", "B", "C"]);
        assert_eq!(
            r.check([("A", false), ("B", false), ("C", false)], 3),
            Ok(())
        );
        let e = r.check([("A", false), ("B", true)], 2).unwrap_err();
        assert_eq!(
            e,
            Error::Missing {
                missing: vec!["C".into()],
                empty: vec!["B".into()]
            }
        );
        assert_eq!(e.names(), ["B", "C"]);
        let text = e.to_string();
        assert!(
            text.contains("missing C") && text.contains("empty B"),
            "{text}"
        );
    }

    #[test]
    fn nonempty_needs_one_variable_from_a_source() {
        assert_eq!(
            req(&[], true).check([("LITERAL", false)], 0),
            Err(Error::NothingFromSources)
        );
        assert_eq!(req(&[], true).check([("A", false)], 1), Ok(()));
        assert_eq!(req(&[], false).check([], 0), Ok(()));
    }

    #[test]
    fn names_are_validated_and_blank_means_whitespace_only() {
        let bad = Requirements::new(&["OK".into(), "1BAD".into()], false).unwrap_err();
        assert!(bad.to_string().contains("1BAD"), "{bad}");
        assert!(is_blank(b"") && is_blank(b" \n\t") && !is_blank(b" x "));
    }
}

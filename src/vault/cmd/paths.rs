//! Where agent-vault keeps its data when `--data-dir` is not given: `$AGENT_VAULT_DATA_DIR`
//! (clap reads it), else the per-user default of the XDG base directory spec,
//! `$XDG_DATA_HOME/agent-vault`, else `$HOME/.local/share/agent-vault`, so `init` and
//! `serve` need no flag on a workstation. `init` creates the directory (and any missing
//! parent) 0700. A server under a service manager should still name its directory
//! (`/var/lib/agent-vault`): its HOME may be anything.

use std::ffi::OsString;
use std::path::PathBuf;

/// What `--data-dir` shows as its default in `--help`, and the value clap parses when the
/// flag and `AGENT_VAULT_DATA_DIR` are both absent: [`data_dir`] resolves it.
pub const DEFAULT_DATA_DIR: &str = "$XDG_DATA_HOME/agent-vault";

/// The per-user data directory from `XDG_DATA_HOME` and `HOME` (empty counts as unset; a
/// relative `XDG_DATA_HOME` is ignored, as the spec says).
pub fn default_data_dir(
    xdg_data_home: Option<OsString>,
    home: Option<OsString>,
) -> Result<PathBuf, String> {
    let absolute =
        |value: Option<OsString>| value.map(PathBuf::from).filter(|path| path.is_absolute());
    if let Some(xdg) = absolute(xdg_data_home) {
        return Ok(xdg.join("agent-vault"));
    }
    if let Some(home) = absolute(home) {
        return Ok(home.join(".local/share/agent-vault"));
    }
    Err(
        "no data directory: pass --data-dir DIR or set AGENT_VAULT_DATA_DIR (the per-user \
         default, $XDG_DATA_HOME/agent-vault or else $HOME/.local/share/agent-vault, needs \
         XDG_DATA_HOME or HOME, and neither is set to an absolute path)"
            .into(),
    )
}

/// clap's value parser of `--data-dir`: a path as given, or [`DEFAULT_DATA_DIR`] resolved.
pub fn data_dir(text: &str) -> Result<PathBuf, String> {
    if text == DEFAULT_DATA_DIR {
        default_data_dir(std::env::var_os("XDG_DATA_HOME"), std::env::var_os("HOME"))
    } else if text.is_empty() {
        Err("the data directory is empty".into())
    } else {
        Ok(PathBuf::from(text))
    }
}

#[cfg(test)]
mod tests {
    use super::default_data_dir;
    use std::path::PathBuf;

    #[test]
    fn xdg_then_home_then_an_error_naming_both() {
        let some = |s: &str| Some(s.into());
        assert_eq!(
            default_data_dir(some("/x/data"), some("/home/u")),
            Ok(PathBuf::from("/x/data/agent-vault"))
        );
        for xdg in [None, some(""), some("relative/dir")] {
            assert_eq!(
                default_data_dir(xdg, some("/home/u")),
                Ok(PathBuf::from("/home/u/.local/share/agent-vault"))
            );
        }
        let error = default_data_dir(None, some("")).expect_err("no default");
        assert!(
            error.contains("XDG_DATA_HOME") && error.contains("HOME"),
            "{error}"
        );
    }
}

//! Secrets from local files: dotenv files (`--env-file`) and directories with one file per
//! secret (`--secrets-dir`, the layout of Kubernetes secret volumes and Docker `/run/secrets`).
//!
//! Files are read into zeroizing buffers sized from their metadata, parsed with `dotenvy`
//! (never by hand), and every value goes straight into a `SecretString`. Watching uses
//! inotify through `notify` on the *directories*, not the files: an editor's rename-over-save
//! and the kubelet's atomic `..data` symlink swap replace the inode, which a watch on the
//! file itself would miss.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsString;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use notify::event::{AccessKind, AccessMode, EventKind};
use notify::{RecursiveMode, Watcher};
use secrecy::SecretString;
use zeroize::Zeroizing;

use super::{ChangeNotifier, Error, Origin, Secret, SecretSet, SecretSource};

/// Dotenv files and secrets directories, read in that order: all directories first, then
/// the env files, each in the order given; later entries win.
pub struct FileSource {
    env_files: Vec<PathBuf>,
    secrets_dirs: Vec<PathBuf>,
    /// Kept alive for as long as we watch: dropping it stops the inotify thread.
    watcher: Option<notify::RecommendedWatcher>,
}

impl FileSource {
    pub fn new(env_files: Vec<PathBuf>, secrets_dirs: Vec<PathBuf>) -> FileSource {
        FileSource {
            env_files,
            secrets_dirs,
            watcher: None,
        }
    }
}

impl SecretSource for FileSource {
    fn describe(&self) -> String {
        let mut parts: Vec<String> = self
            .secrets_dirs
            .iter()
            .map(|d| format!("secrets-dir {}", d.display()))
            .collect();
        parts.extend(
            self.env_files
                .iter()
                .map(|f| format!("env-file {}", f.display())),
        );
        parts.join(", ")
    }

    fn fetch(&mut self) -> Result<SecretSet, Error> {
        let mut set = SecretSet::default();
        for dir in &self.secrets_dirs {
            set.extend(read_secrets_dir(dir)?);
        }
        for path in &self.env_files {
            set.extend(read_env_file(path)?);
        }
        Ok(set)
    }

    fn watch(&mut self, notifier: ChangeNotifier) -> Result<(), Error> {
        let interest = WatchInterest::new(&self.env_files, &self.secrets_dirs);
        let label = self.describe();
        let dirs: Vec<PathBuf> = interest.dirs.keys().cloned().collect();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                if let Ok(event) = event {
                    if interest.is_relevant(&event) {
                        notifier.changed(&label);
                    }
                }
            })
            .map_err(|e| Error::Watch {
                path: PathBuf::new(),
                reason: e.to_string(),
            })?;
        for dir in &dirs {
            watcher
                .watch(dir, RecursiveMode::NonRecursive)
                .map_err(|e| Error::Watch {
                    path: dir.clone(),
                    reason: e.to_string(),
                })?;
        }
        self.watcher = Some(watcher);
        Ok(())
    }
}

/// Which events under which watched directory matter.
struct WatchInterest {
    /// `None`: every entry of the directory (a secrets dir); `Some(names)`: only these files.
    dirs: BTreeMap<PathBuf, Option<BTreeSet<OsString>>>,
}

impl WatchInterest {
    fn new(env_files: &[PathBuf], secrets_dirs: &[PathBuf]) -> WatchInterest {
        let mut dirs: BTreeMap<PathBuf, Option<BTreeSet<OsString>>> = BTreeMap::new();
        for dir in secrets_dirs {
            dirs.insert(dir.clone(), None);
        }
        for file in env_files {
            let dir = match file.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
                _ => PathBuf::from("."),
            };
            let Some(name) = file.file_name() else {
                continue;
            };
            // A `None` entry already takes every file of a secrets dir.
            if let Some(names) = dirs.entry(dir).or_insert_with(|| Some(BTreeSet::new())) {
                names.insert(name.to_owned());
            }
        }
        WatchInterest { dirs }
    }

    fn is_relevant(&self, event: &notify::Event) -> bool {
        // Opening and reading (our own fetches do both) is not a change; closing a file
        // that was open for writing is.
        if let EventKind::Access(kind) = event.kind {
            if kind != AccessKind::Close(AccessMode::Write) {
                return false;
            }
        }
        event.paths.iter().any(|path| {
            let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
                return false;
            };
            match self.dirs.get(dir) {
                Some(None) => true,
                Some(Some(names)) => names.contains(name),
                None => false,
            }
        })
    }
}

/// Reads a whole file into a buffer sized up front, so no reallocation leaves a partial
/// copy behind (the wiping allocator covers the case where the file grew meanwhile).
fn read_wiped(path: &Path) -> Result<Zeroizing<Vec<u8>>, Error> {
    let read_err = |source| Error::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(read_err)?;
    let len = file.metadata().map_err(read_err)?.len() as usize;
    let mut buf = Zeroizing::new(Vec::with_capacity(len + 1));
    file.read_to_end(&mut buf).map_err(read_err)?;
    Ok(buf)
}

fn read_env_file(path: &Path) -> Result<SecretSet, Error> {
    let content = read_wiped(path)?;
    let lines = assignment_lines(&content);
    let mut set = SecretSet::default();
    for item in dotenvy::from_read_iter(&content[..]) {
        match item {
            Ok((key, value)) => {
                let line = lines.get(key.as_bytes()).copied().unwrap_or(0);
                let origin = Origin::EnvFile {
                    path: path.to_path_buf(),
                    line,
                };
                set.insert(
                    key,
                    Secret {
                        value: SecretString::from(value),
                        origin,
                    },
                );
            }
            // The error carries the offending line's text, which may hold a value: only
            // its position leaves this function.
            Err(dotenvy::Error::LineParse(text, column)) => {
                let line = line_of_text(&content, &text).unwrap_or(0);
                drop(Zeroizing::new(text));
                return Err(Error::Parse {
                    path: path.to_path_buf(),
                    line,
                    column,
                });
            }
            Err(dotenvy::Error::Io(source)) => {
                return Err(Error::Read {
                    path: path.to_path_buf(),
                    source,
                })
            }
            Err(_) => {
                return Err(Error::Parse {
                    path: path.to_path_buf(),
                    line: 0,
                    column: 0,
                })
            }
        }
    }
    Ok(set)
}

/// For every `NAME=` / `export NAME=` at the start of a line, the 1-based line of its last
/// assignment (later assignments win in dotenv). One pass, so a 500-key file stays cheap.
fn assignment_lines(content: &[u8]) -> HashMap<&[u8], usize> {
    let mut lines = HashMap::new();
    for (index, line) in content.split(|&b| b == b'\n').enumerate() {
        let line = trim_ascii_start(line);
        let line = match line.strip_prefix(b"export") {
            Some(rest) if rest.first().is_some_and(u8::is_ascii_whitespace) => {
                trim_ascii_start(rest)
            }
            _ => line,
        };
        let name_len = line
            .iter()
            .position(|&b| b == b'=' || b.is_ascii_whitespace())
            .unwrap_or(line.len());
        let (name, rest) = line.split_at(name_len);
        if !name.is_empty() && trim_ascii_start(rest).first() == Some(&b'=') {
            lines.insert(name, index + 1);
        }
    }
    lines
}

/// The 1-based line whose text starts the logical line dotenvy reported.
fn line_of_text(content: &[u8], text: &str) -> Option<usize> {
    let first = text.lines().next().unwrap_or("").trim_end_matches('\r');
    content
        .split(|&b| b == b'\n')
        .position(|line| line.strip_suffix(b"\r").unwrap_or(line) == first.as_bytes())
        .map(|index| index + 1)
}

fn trim_ascii_start(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    &bytes[start..]
}

fn read_secrets_dir(dir: &Path) -> Result<SecretSet, Error> {
    let read_err = |source| Error::Read {
        path: dir.to_path_buf(),
        source,
    };
    let mut names: Vec<OsString> = std::fs::read_dir(dir)
        .map_err(read_err)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(read_err)?;
    names.sort();
    let mut set = SecretSet::default();
    for name in names {
        // `..data`, `..2024_01_01...` (the kubelet's) and dotfiles are not secrets.
        let Some(key) = name.to_str().filter(|n| !n.starts_with('.')) else {
            continue;
        };
        let path = dir.join(&name);
        // Follows the `KEY -> ..data/KEY` symlinks of secret volumes.
        let meta = std::fs::metadata(&path).map_err(|source| Error::Read {
            path: path.clone(),
            source,
        })?;
        if !meta.is_file() {
            continue;
        }
        let mut bytes = read_wiped(&path)?;
        strip_one_newline(&mut bytes);
        let value = String::from_utf8(std::mem::take(&mut *bytes)).map_err(|_| Error::NotUtf8 {
            path: path.clone(),
            key: key.to_owned(),
        })?;
        set.insert(
            key.to_owned(),
            Secret {
                value: SecretString::from(value),
                origin: Origin::SecretsDir { path },
            },
        );
    }
    Ok(set)
}

/// `echo value > file` leaves a newline nobody meant as part of the secret.
fn strip_one_newline(bytes: &mut Vec<u8>) {
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn value(set: &SecretSet, name: &str) -> String {
        set.get(name).unwrap().value.expose_secret().to_owned()
    }

    #[test]
    fn env_file_values_and_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        std::fs::write(
            &path,
            "# comment\nA=1\nexport B=\"two words\"\n\nA=3\nC='x=y'\n",
        )
        .unwrap();
        let set = read_env_file(&path).unwrap();
        assert_eq!(value(&set, "A"), "3");
        assert_eq!(value(&set, "B"), "two words");
        assert_eq!(value(&set, "C"), "x=y");
        assert_eq!(
            set.get("A").unwrap().origin,
            Origin::EnvFile {
                path: path.clone(),
                line: 5
            }
        );
        assert_eq!(
            set.get("B").unwrap().origin,
            Origin::EnvFile { path, line: 3 }
        );
    }

    #[test]
    fn parse_error_names_line_not_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        std::fs::write(&path, "A=1\nB='unterminated-s3cr3t\n").unwrap();
        let err = read_env_file(&path).unwrap_err().to_string();
        assert!(err.contains(":2:"), "{err}");
        assert!(!err.contains("s3cr3t"), "{err}");
    }

    #[test]
    fn secrets_dir_skips_dotfiles_and_strips_one_newline() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("TOKEN"), "abc\n").unwrap();
        std::fs::write(dir.path().join("TWO"), "abc\n\n").unwrap();
        std::fs::write(dir.path().join(".hidden"), "x").unwrap();
        std::fs::create_dir(dir.path().join("..data")).unwrap();
        let set = read_secrets_dir(dir.path()).unwrap();
        assert_eq!(set.len(), 2);
        assert_eq!(value(&set, "TOKEN"), "abc");
        assert_eq!(value(&set, "TWO"), "abc\n");
    }

    #[test]
    fn interest_matches_only_watched_names() {
        let interest = WatchInterest::new(
            &[PathBuf::from("conf/.env")],
            &[PathBuf::from("/run/secrets")],
        );
        let event = |kind, path: &str| notify::Event::new(kind).add_path(PathBuf::from(path));
        let modify = EventKind::Modify(notify::event::ModifyKind::Any);
        assert!(interest.is_relevant(&event(modify, "conf/.env")));
        assert!(!interest.is_relevant(&event(modify, "conf/other")));
        assert!(interest.is_relevant(&event(modify, "/run/secrets/..data")));
        assert!(!interest.is_relevant(&event(
            EventKind::Access(AccessKind::Open(AccessMode::Read)),
            "conf/.env"
        )));
        assert!(interest.is_relevant(&event(
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            "conf/.env"
        )));
    }
}

//! Secrets from local files: dotenv files (`--env-file`) and directories with one file per
//! secret (`--secrets-dir`, the layout of Kubernetes secret volumes and Docker `/run/secrets`).
//!
//! Every file is read through [`secret_file`] (non-blocking open, regular files only, size
//! cap before reading, wiped buffer) and parsed by [`dotenv`] (literal values, no `$`
//! substitution). Paths are made absolute once, against the start directory, so what is
//! read and what is watched cannot drift apart.
//!
//! Watching uses inotify through `notify` on *directories*, not files: an editor's
//! rename-over-save and the kubelet's atomic `..data` swap replace the inode, which a watch
//! on the file itself would miss. A watch also breaks when a directory is replaced
//! (`rm -rf conf; mkdir conf`), when a symlinked directory on the path is swapped
//! (`current -> release-2`), when a symlinked file's target lives elsewhere, and when the
//! kernel's event queue overflows. So a [`WatchPlan`] lists every directory whose entries
//! matter (including each watched directory's parent and every symlink on the way), and a
//! thread re-arms the watches from a fresh plan whenever the structure changes, re-reading
//! everything afterwards; whenever watching degrades it says so at warn level.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::sync::mpsc;

use notify::event::{AccessKind, AccessMode, EventKind};
use notify::{RecursiveMode, Watcher};
use tracing::{debug, warn};

use super::digest::{Digest, DigestKey};
use super::{ChangeNotifier, Error, Origin, Secret, SecretSet, SecretSource, Shown};
use crate::dotenv;
use crate::secret_file::{self, Checks, MAX_VALUE_FILE_BYTES};

/// How far a chain of symlinks is followed when planning watches (loops end here).
const MAX_LINK_DEPTH: usize = 8;

/// The policy flags of the file source.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FileOptions {
    /// `--allow-external-links`: read secrets-dir entries whose real file is outside the dir.
    pub allow_external_links: bool,
    /// `--strict-permissions`: refuse files writable by others or owned by another user.
    pub strict_permissions: bool,
}

/// Dotenv files and secrets directories, read in that order: all directories first, then
/// the env files, each in the order given; later entries win.
pub struct FileSource {
    env_files: Vec<PathBuf>,
    secrets_dirs: Vec<PathBuf>,
    options: FileOptions,
    /// Tells the watching thread to stop when this source is dropped.
    stop: Option<mpsc::Sender<Message>>,
    /// Keyed digest of what the last `fetch` read: `watch` re-reads once its inotify
    /// watches are armed and reports a change only when the files differ from it.
    digest_key: DigestKey,
    last_read: Option<Digest>,
}

impl FileSource {
    /// Relative paths are resolved here, once, against the start directory.
    pub fn new(env_files: Vec<PathBuf>, secrets_dirs: Vec<PathBuf>) -> FileSource {
        let start = std::env::current_dir().ok();
        let absolute = |paths: Vec<PathBuf>| -> Vec<PathBuf> {
            paths
                .into_iter()
                .map(|p| match &start {
                    Some(start) => absolute(start, &p),
                    None => p,
                })
                .collect()
        };
        FileSource {
            env_files: absolute(env_files),
            secrets_dirs: absolute(secrets_dirs),
            options: FileOptions::default(),
            stop: None,
            digest_key: DigestKey::random(),
            last_read: None,
        }
    }

    pub fn with_options(mut self, options: FileOptions) -> FileSource {
        self.options = options;
        self
    }
}

impl Drop for FileSource {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(Message::Stop);
        }
    }
}

/// `path` made absolute against `start`, with `.` dropped and `..` applied the way the
/// kernel does: to the parent of a symlink's *target*. Other symlinks stay as written, so
/// the links on the way can be watched.
fn absolute(start: &Path, path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in start.join(path).components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                if out.symlink_metadata().is_ok_and(|m| m.is_symlink()) {
                    if let Ok(real) = std::fs::canonicalize(&out) {
                        out = real;
                    }
                }
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

impl SecretSource for FileSource {
    fn describe(&self) -> String {
        let mut parts: Vec<String> = self
            .secrets_dirs
            .iter()
            .map(|d| format!("secrets-dir {}", Shown(d)))
            .collect();
        parts.extend(
            self.env_files
                .iter()
                .map(|f| format!("env-file {}", Shown(f))),
        );
        parts.join(", ")
    }

    fn fetch(&mut self) -> Result<SecretSet, Error> {
        let set = self.read_all()?;
        self.last_read = Some(self.digest_key.digest_set(&set));
        Ok(set)
    }

    fn watch(&mut self, notifier: ChangeNotifier) -> Result<(), Error> {
        let (tx, rx) = mpsc::channel();
        let events = tx.clone();
        let watcher = notify::recommended_watcher(move |event| {
            let _ = events.send(Message::Event(event));
        })
        .map_err(|e| Error::Watch {
            path: PathBuf::new(),
            reason: e.to_string(),
        })?;
        let mut watch = Watch {
            env_files: self.env_files.clone(),
            secrets_dirs: self.secrets_dirs.clone(),
            label: self.describe(),
            watcher,
            plan: WatchPlan::default(),
            armed: BTreeMap::new(),
            notifier,
        };
        // Armed before returning, so a change right after start is not missed; and a change
        // between the last fetch and now (no watch existed yet) is caught by one re-read,
        // compared by digest, so an unchanged start costs no second read of any source.
        watch.rearm();
        let unchanged = self.last_read.is_some()
            && self
                .read_all()
                .is_ok_and(|set| Some(self.digest_key.digest_set(&set)) == self.last_read);
        if !unchanged {
            watch.notifier.changed(&watch.label);
        }
        std::thread::Builder::new()
            .name("file-watch".into())
            .spawn(move || watch.run(rx))
            .map_err(|e| Error::Watch {
                path: PathBuf::new(),
                reason: e.to_string(),
            })?;
        self.stop = Some(tx);
        Ok(())
    }
}

impl FileSource {
    /// Every directory, then every env file, in order.
    fn read_all(&self) -> Result<SecretSet, Error> {
        let mut set = SecretSet::default();
        for dir in &self.secrets_dirs {
            set.extend(read_secrets_dir(dir, &self.options)?);
        }
        for path in &self.env_files {
            set.extend(read_env_file(path, &self.options)?);
        }
        Ok(set)
    }
}

enum Message {
    Event(notify::Result<notify::Event>),
    Stop,
}

/// The watching thread's state. Only it touches the watcher; it sends the supervisor
/// "changed", never values.
struct Watch {
    env_files: Vec<PathBuf>,
    secrets_dirs: Vec<PathBuf>,
    label: String,
    watcher: notify::RecommendedWatcher,
    plan: WatchPlan,
    /// Directories watched now, with the (device, inode) the watch is on: a path whose
    /// inode changed (a swapped link, a re-created directory) needs a new watch.
    armed: BTreeMap<PathBuf, (u64, u64)>,
    notifier: ChangeNotifier,
}

impl Watch {
    fn run(mut self, rx: mpsc::Receiver<Message>) {
        while let Ok(Message::Event(event)) = rx.recv() {
            let event = match event {
                Ok(event) => event,
                Err(e) => {
                    warn!(source = %self.label, error = %e, "file watching reported an error; re-arming and re-reading everything");
                    self.rearm();
                    self.notifier.changed(&self.label);
                    continue;
                }
            };
            if event.need_rescan() {
                warn!(source = %self.label, "inotify event queue overflowed (events were lost); re-reading everything");
                self.rearm();
                self.notifier.changed(&self.label);
                continue;
            }
            match self.plan.classify(&event) {
                Relevance::None => {}
                Relevance::Content => self.notifier.changed(&self.label),
                Relevance::Structure => {
                    self.rearm();
                    self.notifier.changed(&self.label);
                }
            }
        }
    }

    /// Recomputes the plan and makes the watches match it: new directories watched, gone or
    /// replaced ones unwatched (and watched again at their new inode).
    fn rearm(&mut self) {
        self.plan = WatchPlan::new(&self.env_files, &self.secrets_dirs);
        let wanted: BTreeMap<PathBuf, Option<(u64, u64)>> = self
            .plan
            .dirs
            .keys()
            .map(|dir| {
                let id = std::fs::metadata(dir)
                    .ok()
                    .filter(|m| m.is_dir())
                    .map(|m| (m.dev(), m.ino()));
                (dir.clone(), id)
            })
            .collect();
        let stale: Vec<PathBuf> = self
            .armed
            .iter()
            .filter(|(dir, id)| wanted.get(*dir) != Some(&Some(**id)))
            .map(|(dir, _)| dir.clone())
            .collect();
        for dir in stale {
            // notify may already have dropped it (the directory was deleted).
            let _ = self.watcher.unwatch(&dir);
            self.armed.remove(&dir);
        }
        for (dir, id) in wanted {
            if self.armed.contains_key(&dir) {
                continue;
            }
            let Some(id) = id else {
                if self.plan.is_target(&dir) {
                    warn!(dir = %Shown(&dir), "a watched directory is missing; its changes are seen again once it is back");
                }
                continue;
            };
            match self.watcher.watch(&dir, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    debug!(dir = %Shown(&dir), "watching");
                    self.armed.insert(dir, id);
                }
                Err(e) => {
                    warn!(dir = %Shown(&dir), error = %e, "cannot watch a directory; changes there will not be seen")
                }
            }
        }
    }
}

/// What matters in one watched directory.
#[derive(Debug, Default)]
struct Interest {
    /// Every entry (a secrets dir).
    all: bool,
    /// Entries whose content is read (an env file, a link's target file).
    content: BTreeSet<OsString>,
    /// Entries that shape the plan itself (a watched directory, a symlink on the way): a
    /// change means re-arming.
    structure: BTreeSet<OsString>,
}

enum Relevance {
    None,
    Content,
    Structure,
}

/// Every directory to watch and what in it matters.
#[derive(Debug, Default)]
struct WatchPlan {
    dirs: BTreeMap<PathBuf, Interest>,
}

impl WatchPlan {
    fn new(env_files: &[PathBuf], secrets_dirs: &[PathBuf]) -> WatchPlan {
        let mut plan = WatchPlan::default();
        for dir in secrets_dirs {
            plan.entry(dir).all = true;
            plan.add_ancestry(dir);
            plan.add_external_targets(dir);
        }
        for file in env_files {
            plan.add_file(file, 0);
        }
        plan
    }

    fn entry(&mut self, dir: &Path) -> &mut Interest {
        self.dirs.entry(dir.to_path_buf()).or_default()
    }

    fn add_file(&mut self, file: &Path, depth: usize) {
        let (Some(dir), Some(name)) = (file.parent(), file.file_name()) else {
            return;
        };
        self.entry(dir).content.insert(name.to_owned());
        self.add_ancestry(dir);
        // A symlinked file: its target may live in another directory; a new target there
        // is a change of the link's content, a retargeted link a change of the plan.
        if depth < MAX_LINK_DEPTH {
            if let Ok(target) = std::fs::read_link(file) {
                self.entry(dir).structure.insert(name.to_owned());
                self.add_file(&dir.join(target), depth + 1);
            }
        }
    }

    /// Entries of a secrets dir that are links to files elsewhere (allowed with
    /// `--allow-external-links`): their targets' directories are watched too. Links inside
    /// the directory (the kubelet's) are covered by the directory's own watch.
    fn add_external_targets(&mut self, dir: &Path) {
        let (Ok(root), Ok(entries)) = (std::fs::canonicalize(dir), std::fs::read_dir(dir)) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if !entry.file_type().is_ok_and(|t| t.is_symlink()) {
                continue;
            }
            match std::fs::canonicalize(&path) {
                Ok(real) if !real.starts_with(&root) => {
                    // Retargeting the link means watching another directory.
                    self.entry(dir).structure.insert(entry.file_name());
                    self.add_file(&real, 1);
                }
                _ => {}
            }
        }
    }

    /// `dir`'s own entry in its parent (removed, re-created, swapped), and every symlinked
    /// directory further up (a `current -> release` link).
    fn add_ancestry(&mut self, dir: &Path) {
        if let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) {
            self.entry(parent).structure.insert(name.to_owned());
        }
        for ancestor in dir.ancestors().skip(1) {
            if ancestor
                .symlink_metadata()
                .is_ok_and(|m| m.file_type().is_symlink())
            {
                if let (Some(parent), Some(name)) = (ancestor.parent(), ancestor.file_name()) {
                    self.entry(parent).structure.insert(name.to_owned());
                }
            }
        }
    }

    /// A directory whose content is read (not only one watched for its structure).
    fn is_target(&self, dir: &Path) -> bool {
        self.dirs
            .get(dir)
            .is_some_and(|i| i.all || !i.content.is_empty())
    }

    fn classify(&self, event: &notify::Event) -> Relevance {
        // Opening and reading (our own fetches do both) is not a change; closing a file
        // that was open for writing is.
        if let EventKind::Access(kind) = event.kind {
            if kind != AccessKind::Close(AccessMode::Write) {
                return Relevance::None;
            }
        }
        let mut relevance = Relevance::None;
        for path in &event.paths {
            // The watched directory itself was deleted or moved away.
            if self.dirs.contains_key(path.as_path()) && event.kind.is_remove()
                || matches!(
                    event.kind,
                    EventKind::Modify(notify::event::ModifyKind::Name(_))
                ) && self.dirs.contains_key(path.as_path())
            {
                return Relevance::Structure;
            }
            let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
                continue;
            };
            let Some(interest) = self.dirs.get(dir) else {
                continue;
            };
            if interest.structure.contains(name) {
                return Relevance::Structure;
            }
            if interest.all || interest.content.contains(name) {
                relevance = Relevance::Content;
            }
        }
        relevance
    }
}

fn read_env_file(path: &Path, options: &FileOptions) -> Result<SecretSet, Error> {
    let checks = Checks {
        strict_permissions: options.strict_permissions,
        ..Checks::default()
    };
    let entries = dotenv::read_file(path, &checks)?;
    let mut set = SecretSet::default();
    for entry in entries {
        set.insert(
            entry.name,
            Secret {
                value: entry.value,
                origin: Origin::EnvFile {
                    path: path.to_path_buf(),
                    line: entry.line,
                },
            },
        );
    }
    Ok(set)
}

fn read_secrets_dir(dir: &Path, options: &FileOptions) -> Result<SecretSet, Error> {
    let read_err = |source| Error::Read {
        path: dir.to_path_buf(),
        source,
    };
    // Canonical, because the opened file's real path is compared with it.
    let root = std::fs::canonicalize(dir).map_err(read_err)?;
    let mut names: Vec<OsString> = std::fs::read_dir(dir)
        .map_err(read_err)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(read_err)?;
    names.sort();
    let checks = Checks {
        within: (!options.allow_external_links).then_some(root.as_path()),
        strict_permissions: options.strict_permissions,
        ..Checks::default()
    };
    let mut set = SecretSet::default();
    for name in names {
        // `..data`, `..2024_01_01...` (the kubelet's) and dotfiles are not secrets.
        if name.as_encoded_bytes().starts_with(b".") {
            continue;
        }
        let path = dir.join(&name);
        let Some(key) = name.to_str().filter(|n| !n.chars().any(char::is_control)) else {
            warn!(path = %Shown(&path), "skipping a secrets-dir file whose name is not UTF-8 or holds control characters");
            continue;
        };
        // Follows the `KEY -> ..data/KEY` symlinks of secret volumes.
        let meta = std::fs::metadata(&path).map_err(|source| Error::Read {
            path: path.clone(),
            source,
        })?;
        if meta.is_dir() {
            debug!(path = %Shown(&path), "skipping a directory inside a secrets dir");
            continue;
        }
        if let Some(what) = secret_file::not_regular(meta.file_type()) {
            let reason = format!(
                "{} is {what}: skipped, only regular files are read",
                Shown(&path)
            );
            warn!(path = %Shown(&path), what, "skipping a secrets-dir entry that is not a regular file (reading it could block)");
            set.skip(key.to_owned(), reason);
            continue;
        }
        let mut bytes = secret_file::read_with(&path, MAX_VALUE_FILE_BYTES, &checks)?;
        strip_one_newline(&mut bytes);
        let text = std::str::from_utf8(&bytes).map_err(|_| Error::NotUtf8 {
            path: path.clone(),
            key: key.to_owned(),
        })?;
        set.insert(
            key.to_owned(),
            Secret {
                // One exact-size copy into the box; `bytes` is wiped on drop.
                value: text.into(),
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

    const DEFAULTS: FileOptions = FileOptions {
        allow_external_links: false,
        strict_permissions: false,
    };

    #[test]
    fn env_file_values_and_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        std::fs::write(
            &path,
            "# comment\nA=1\nexport B=\"two words\"\n\nA=3\nC='x=y'\nD=pa$word123\n",
        )
        .unwrap();
        let set = read_env_file(&path, &DEFAULTS).unwrap();
        assert_eq!(value(&set, "A"), "3");
        assert_eq!(value(&set, "B"), "two words");
        assert_eq!(value(&set, "C"), "x=y");
        assert_eq!(value(&set, "D"), "pa$word123");
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
        let err = read_env_file(&path, &DEFAULTS).unwrap_err().to_string();
        assert!(err.contains(".env:2:3:"), "{err}");
        assert!(!err.contains("s3cr3t"), "{err}");
        std::fs::write(&path, "A=1\n\n1KEY=2\n").unwrap();
        let err = read_env_file(&path, &DEFAULTS).unwrap_err().to_string();
        assert!(err.contains(".env:3:1:"), "{err}");
        assert!(err.contains("invalid name"), "{err}");
    }

    #[test]
    fn env_file_that_is_a_fifo_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pipe.env");
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let err = read_env_file(&path, &DEFAULTS).unwrap_err();
        assert!(
            matches!(
                err,
                Error::EnvFile(dotenv::FileError::File(
                    secret_file::Error::NotRegularFile { .. }
                ))
            ),
            "{err}"
        );
    }

    #[test]
    fn secrets_dir_skips_dotfiles_and_strips_one_newline() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("TOKEN"), "abc\n").unwrap();
        std::fs::write(dir.path().join("TWO"), "abc\n\n").unwrap();
        std::fs::write(dir.path().join(".hidden"), "x").unwrap();
        std::fs::create_dir(dir.path().join("..data")).unwrap();
        let set = read_secrets_dir(dir.path(), &DEFAULTS).unwrap();
        assert_eq!(set.len(), 2);
        assert_eq!(value(&set, "TOKEN"), "abc");
        assert_eq!(value(&set, "TWO"), "abc\n");
    }

    #[test]
    fn secrets_dir_skips_a_fifo_and_says_why() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("A"), "1").unwrap();
        nix::unistd::mkfifo(&dir.path().join("PIPE"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let set = read_secrets_dir(dir.path(), &DEFAULTS).unwrap();
        assert_eq!(set.len(), 1);
        assert!(set.skipped("PIPE").unwrap().contains("named pipe"));
    }

    #[test]
    fn secrets_dir_refuses_links_out_of_the_dir() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("loot"), "root-only").unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path().join("loot"), dir.path().join("LOOT")).unwrap();
        let err = read_secrets_dir(dir.path(), &DEFAULTS).unwrap_err();
        assert!(
            matches!(err, Error::File(secret_file::Error::ExternalLink { .. })),
            "{err}"
        );
        let allowed = FileOptions {
            allow_external_links: true,
            ..DEFAULTS
        };
        let set = read_secrets_dir(dir.path(), &allowed).unwrap();
        assert_eq!(value(&set, "LOOT"), "root-only");
    }

    #[test]
    fn strict_permissions_refuse_a_group_writable_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("A");
        std::fs::write(&path, "1").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(read_secrets_dir(dir.path(), &DEFAULTS).is_ok());
        let strict = FileOptions {
            strict_permissions: true,
            ..DEFAULTS
        };
        let err = read_secrets_dir(dir.path(), &strict).unwrap_err();
        assert!(
            err.to_string().contains("writable by group or others"),
            "{err}"
        );
        let env = dir.path().join("x.env");
        std::fs::write(&env, "A=1").unwrap();
        std::fs::set_permissions(&env, std::fs::Permissions::from_mode(0o620)).unwrap();
        assert!(read_env_file(&env, &strict).is_err());
    }

    #[test]
    fn relative_paths_become_absolute_once() {
        let start = Path::new("/srv/app");
        assert_eq!(
            absolute(start, Path::new("rt.env")),
            Path::new("/srv/app/rt.env")
        );
        assert_eq!(
            absolute(start, Path::new("./rt.env")),
            Path::new("/srv/app/rt.env")
        );
        assert_eq!(
            absolute(start, Path::new("../x/rt.env")),
            Path::new("/srv/x/rt.env")
        );
        assert_eq!(
            absolute(start, Path::new("/etc/a.env")),
            Path::new("/etc/a.env")
        );
    }

    #[test]
    fn plan_matches_only_watched_names() {
        let plan = WatchPlan::new(
            &[PathBuf::from("/nonexistent/conf/.env")],
            &[PathBuf::from("/run/secrets")],
        );
        let event = |kind, path: &str| notify::Event::new(kind).add_path(PathBuf::from(path));
        let modify = EventKind::Modify(notify::event::ModifyKind::Any);
        let is = |r: Relevance| match r {
            Relevance::None => "none",
            Relevance::Content => "content",
            Relevance::Structure => "structure",
        };
        assert_eq!(
            is(plan.classify(&event(modify, "/nonexistent/conf/.env"))),
            "content"
        );
        assert_eq!(
            is(plan.classify(&event(modify, "/nonexistent/conf/other"))),
            "none"
        );
        assert_eq!(
            is(plan.classify(&event(modify, "/run/secrets/..data"))),
            "content"
        );
        assert_eq!(
            is(plan.classify(&event(modify, "/nonexistent/conf"))),
            "structure"
        );
        assert_eq!(
            is(plan.classify(&event(modify, "/run/secrets"))),
            "structure"
        );
        assert_eq!(
            is(plan.classify(&event(
                EventKind::Access(AccessKind::Open(AccessMode::Read)),
                "/nonexistent/conf/.env"
            ))),
            "none"
        );
        assert_eq!(
            is(plan.classify(&event(
                EventKind::Access(AccessKind::Close(AccessMode::Write)),
                "/nonexistent/conf/.env"
            ))),
            "content"
        );
    }
}

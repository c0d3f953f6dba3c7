//! The one way either program reads a file that holds secrets or credentials: agent-run's
//! env files, secrets-directory files, token / role-id / secret-id files and fallback, and
//! the `.env` file `agent-vault secrets import` reads. Shared, so it sits at the root.
//!
//! Why not `std::fs::read`: a FIFO, a device or a `/proc` file can block a read for ever
//! (and the supervisor must never wait on a source), a huge or sparse file would be read
//! whole into memory, and a `Vec` that grows while reading leaves partial copies behind.
//! So the file is opened non-blocking, must be a regular file on a real filesystem, must be
//! at most `limit` bytes, and is read into a buffer sized once and wiped on drop. On request
//! ([`Checks`]) it must also lie inside a given directory after every symlink, and pass
//! ssh's ownership and mode rule ([`check_permissions`]).

use std::fmt;
use std::fs::{File, Metadata, OpenOptions};
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use nix::sys::statfs::{fstatfs, PROC_SUPER_MAGIC, SYSFS_MAGIC};
use zeroize::Zeroizing;

/// Why a secret file was not read. Carries paths, never content.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("cannot read {}: {source}", Shown(.path))]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A FIFO, device, socket or `/proc` file where a secret file was expected: reading it
    /// could block the launcher for ever.
    #[error("{} is {what}: only regular files are read for secrets and credentials", Shown(.path))]
    NotRegularFile { path: PathBuf, what: &'static str },
    #[error("{} is larger than {limit} bytes: refused before reading it", Shown(.path))]
    FileTooLarge { path: PathBuf, limit: u64 },
    /// A secrets-dir entry whose real file lies outside the directory (`LOOT -> /etc/shadow`):
    /// agent-run often runs as root and must not read files for whoever can write the dir.
    #[error("{} leads outside the secrets directory {}: refused (pass --allow-external-links to allow links out of secrets directories)", Shown(.path), Shown(.dir))]
    ExternalLink { path: PathBuf, dir: PathBuf },
    /// `--strict-permissions`: a file others could have written (or swapped) is not trusted.
    #[error("{} is {why}: refused (--strict-permissions)", Shown(.path))]
    InsecurePermissions { path: PathBuf, why: String },
}

/// A path or name as it may be printed in a log line or an error: control characters
/// escaped, so a file name with a newline cannot forge a line.
pub struct Shown<'a, T: ?Sized>(pub &'a T);

impl<T: AsRef<std::ffi::OsStr> + ?Sized> fmt::Display for Shown<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.as_ref().to_string_lossy().chars() {
            if c.is_control() {
                write!(f, "{}", c.escape_default())?;
            } else {
                fmt::Write::write_char(f, c)?;
            }
        }
        Ok(())
    }
}

/// One value from a secrets directory: the largest string `execve` accepts
/// (`MAX_ARG_STRLEN`, 32 pages), so a larger file could never reach the child anyway.
pub const MAX_VALUE_FILE_BYTES: u64 = 128 * 1024;
/// A whole dotenv file: the kernel's usual limit for argv + environment together.
pub const MAX_ENV_FILE_BYTES: u64 = 2 * 1024 * 1024;
/// A token, role id or secret id.
pub const MAX_CREDENTIAL_FILE_BYTES: u64 = 64 * 1024;

/// Reads `path` whole, refusing anything that is not a regular file of at most `limit`
/// bytes. Never blocks on the file itself (O_NONBLOCK): a FIFO or device is refused after
/// `open`, before any read.
pub fn read(path: &Path, limit: u64) -> Result<Zeroizing<Vec<u8>>, Error> {
    read_with(path, limit, &Checks::default())
}

/// `--strict-permissions` for the credential files (token, role id, secret id, JWT), which
/// are read deep inside the store clients: set once by the launcher before any source runs.
static STRICT_CREDENTIALS: AtomicBool = AtomicBool::new(false);

/// Makes [`read_credential`] refuse, instead of warn about, what [`check_permissions`] finds.
pub fn set_strict_credentials(strict: bool) {
    STRICT_CREDENTIALS.store(strict, Ordering::Relaxed);
}

/// Reads a token, role-id, secret-id or JWT file: [`read`]'s checks, the permission rule
/// (strict with `--strict-permissions`), and one more that is never a mere warning: a
/// credential file that *anyone* may write (`o+w`, e.g. 0666) is refused, since whoever
/// rewrites it chooses which identity agent-run uses.
pub fn read_credential(path: &Path) -> Result<Zeroizing<Vec<u8>>, Error> {
    read_with(
        path,
        MAX_CREDENTIAL_FILE_BYTES,
        &Checks {
            strict_permissions: STRICT_CREDENTIALS.load(Ordering::Relaxed),
            refuse_world_writable: true,
            ..Checks::default()
        },
    )
}

/// What else to verify about a file before reading it, beyond [`read`]'s own checks.
#[derive(Debug, Default, Clone, Copy)]
pub struct Checks<'a> {
    /// The file actually opened (after every symlink) must lie under this directory, which
    /// must be canonical. Checked on the open descriptor, so a link swapped between a check
    /// and the open cannot slip through.
    pub within: Option<&'a Path>,
    /// Refuse instead of warn when [`check_permissions`] finds a problem.
    pub strict_permissions: bool,
    /// Refuse a file any user may write, even without `strict_permissions`.
    pub refuse_world_writable: bool,
}

/// [`read`], plus the [`Checks`].
pub fn read_with(path: &Path, limit: u64, checks: &Checks) -> Result<Zeroizing<Vec<u8>>, Error> {
    let read_err = |source| Error::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(read_err)?;
    let meta = file.metadata().map_err(read_err)?;
    let len = check_regular(&file, &meta, path, limit)?;
    if let Some(root) = checks.within {
        check_within(&file, path, root)?;
    }
    let world_writable = meta.mode() & 0o002 != 0;
    check_permissions(
        path,
        &meta,
        checks.strict_permissions || (checks.refuse_world_writable && world_writable),
    )?;
    // +1: a file that grew since fstat shows up as longer than its size and is refused below
    // instead of being cut silently or re-growing the buffer.
    let mut buf = Zeroizing::new(Vec::with_capacity(len as usize + 1));
    (&mut file)
        .take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(read_err)?;
    if buf.len() as u64 > limit {
        return Err(Error::FileTooLarge {
            path: path.to_path_buf(),
            limit,
        });
    }
    Ok(buf)
}

/// ssh's rule for key files: a file that another user could have written is not trusted.
/// Writable by group or others, or owned by a user who is neither root nor agent-run's
/// own: a warning, or [`Error::InsecurePermissions`] when `strict`. Token-file readers call
/// this too, with the metadata of the descriptor they read.
pub fn check_permissions(path: &Path, meta: &Metadata, strict: bool) -> Result<(), Error> {
    let mode = meta.mode() & 0o7777;
    let owner = meta.uid();
    let euid = nix::unistd::geteuid().as_raw();
    let why = if mode & 0o022 != 0 {
        format!("writable by group or others (mode {mode:04o})")
    } else if owner != 0 && owner != euid {
        format!("owned by uid {owner}, neither root nor agent-run's user (uid {euid})")
    } else {
        return Ok(());
    };
    if strict {
        return Err(Error::InsecurePermissions {
            path: path.to_path_buf(),
            why,
        });
    }
    tracing::warn!(path = %Shown(path), problem = %why, "secret file has unsafe permissions; --strict-permissions would refuse it");
    Ok(())
}

/// The open descriptor's real path must be under `root`. `/proc/self/fd` names the file
/// we actually hold; without /proc, the path is resolved again and must name the same inode.
fn check_within(file: &File, path: &Path, root: &Path) -> Result<(), Error> {
    let real = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).or_else(|_| {
        let real = std::fs::canonicalize(path)?;
        let (held, named) = (file.metadata()?, std::fs::metadata(&real)?);
        if (held.dev(), held.ino()) == (named.dev(), named.ino()) {
            Ok(real)
        } else {
            Err(std::io::Error::other(
                "the file changed while it was opened",
            ))
        }
    });
    match real {
        Ok(real) if real.starts_with(root) && real != root => Ok(()),
        Ok(_) => Err(Error::ExternalLink {
            path: path.to_path_buf(),
            dir: root.to_path_buf(),
        }),
        Err(source) => Err(Error::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// What a file is, in words, when it is not a regular file (`None` for a regular file).
pub fn not_regular(kind: std::fs::FileType) -> Option<&'static str> {
    if kind.is_fifo() {
        Some("a named pipe (FIFO)")
    } else if kind.is_char_device() || kind.is_block_device() {
        Some("a device")
    } else if kind.is_socket() {
        Some("a socket")
    } else if kind.is_dir() {
        Some("a directory")
    } else if !kind.is_file() {
        Some("not a regular file")
    } else {
        None
    }
}

/// The file's size, if it is a regular file on a filesystem whose sizes mean something.
fn check_regular(file: &File, meta: &Metadata, path: &Path, limit: u64) -> Result<u64, Error> {
    let refused = if let Some(what) = not_regular(meta.file_type()) {
        Some(what)
    } else {
        // /proc and /sys files claim to be regular with size 0 and may block (/proc/kmsg).
        match fstatfs(file).map(|fs| fs.filesystem_type()) {
            Ok(fs) if fs == PROC_SUPER_MAGIC || fs == SYSFS_MAGIC => {
                Some("a kernel interface file (/proc or /sys)")
            }
            _ => None,
        }
    };
    if let Some(what) = refused {
        return Err(Error::NotRegularFile {
            path: path.to_path_buf(),
            what,
        });
    }
    if meta.len() > limit {
        return Err(Error::FileTooLarge {
            path: path.to_path_buf(),
            limit,
        });
    }
    Ok(meta.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v");
        std::fs::write(&path, b"abc").unwrap();
        assert_eq!(&read(&path, 16).unwrap()[..], b"abc");
    }

    #[test]
    fn refuses_a_fifo_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pipe");
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let err = read(&path, 16).unwrap_err();
        assert!(matches!(err, Error::NotRegularFile { .. }), "{err}");
        assert!(err.to_string().contains("named pipe"), "{err}");
    }

    #[test]
    fn refuses_devices_and_proc() {
        for (path, what) in [("/dev/zero", "device"), ("/proc/self/status", "/proc")] {
            let err = read(Path::new(path), 1 << 20).unwrap_err();
            assert!(err.to_string().contains(what), "{path}: {err}");
        }
    }

    #[test]
    fn refuses_before_reading_a_file_over_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        // Sparse: 1 GiB of size, no blocks; refused from fstat alone.
        let file = File::create(&path).unwrap();
        file.set_len(1 << 30).unwrap();
        let err = read(&path, 4096).unwrap_err();
        assert!(
            matches!(err, Error::FileTooLarge { limit: 4096, .. }),
            "{err}"
        );
    }
}

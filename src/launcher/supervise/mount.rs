//! `--mount[=PATH]` (as `doppler run --mount`): the secrets go to a file instead of the
//! child's environment, which then carries none of their values.
//!
//! Without PATH, an inherited `memfd` (no file on any filesystem) whose descriptor number
//! the child finds in `AGENT_RUN_MOUNT_FD`; with PATH, a 0600 file replaced atomically
//! (written aside, renamed over) in a tmpfs directory (a disk only with
//! `--mount-allow-disk`). Written at every start, emptied or removed when the child exits
//! (however it ends) and removed when agent-run ends. The content is built in one buffer
//! sized up front and wiped on drop; the values come from the locked environment block.

use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::launcher::env::EnvBlock;

/// The variable that tells the child which inherited descriptor holds its secrets.
pub const MOUNT_FD_VARIABLE: &str = "AGENT_RUN_MOUNT_FD";

/// tmpfs and ramfs: memory-backed.
const MEMORY_FILESYSTEMS: [i64; 2] = [0x0102_1994, 0x8584_58f6];

/// `--mount-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountFormat {
    /// `NAME="value"` lines, double-quoted with `\n`, `\r`, `\t`, `\"`, `\\`, `\$` escapes
    /// (what agent-run's own dotenv reader and python-dotenv read back).
    Dotenv,
    /// One JSON object, names to string values.
    Json,
}

/// `--mount` as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSettings {
    /// `None`: the memfd.
    pub path: Option<PathBuf>,
    pub format: MountFormat,
    pub allow_disk: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("--mount {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("cannot create the --mount memfd: {0}")]
    Memfd(nix::errno::Errno),
    #[error("cannot write the --mount secrets: {0}")]
    Write(std::io::Error),
}

/// Where the child reads its secrets.
#[derive(Debug)]
pub enum MountTarget {
    /// Inherited by the child (no close-on-exec; created before any other thread exists).
    Memfd(OwnedFd, MountFormat),
    File(PathBuf, MountFormat),
}

impl MountTarget {
    pub fn new(settings: &MountSettings) -> Result<MountTarget, Error> {
        let Some(path) = &settings.path else {
            let fd = nix::sys::memfd::memfd_create(
                c"agent-run-secrets",
                nix::sys::memfd::MFdFlags::empty(),
            )
            .map_err(Error::Memfd)?;
            return Ok(MountTarget::Memfd(fd, settings.format));
        };
        let bad = |reason: String| Error::File {
            path: path.clone(),
            reason,
        };
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let fs = nix::sys::statfs::statfs(dir).map_err(|e| bad(format!("{e}")))?;
        let kind = fs.filesystem_type().0 as i64;
        if !settings.allow_disk && !MEMORY_FILESYSTEMS.contains(&kind) {
            return Err(bad(format!(
                "{} is not a tmpfs (e.g. /dev/shm, /run): the secrets would land on a disk \
                 (--mount-allow-disk if that is really wanted)",
                dir.display()
            )));
        }
        Ok(MountTarget::File(path.clone(), settings.format))
    }

    /// The variable agent-run adds to the child's environment, if any.
    pub fn variable(&self) -> Option<(&'static str, String)> {
        match self {
            MountTarget::Memfd(fd, _) => Some((MOUNT_FD_VARIABLE, fd.as_raw_fd().to_string())),
            MountTarget::File(..) => None,
        }
    }

    /// Replaces the content with `secrets`, rendered in the configured format.
    pub fn write(&self, secrets: &EnvBlock) -> Result<(), Error> {
        let (MountTarget::Memfd(_, format) | MountTarget::File(_, format)) = self;
        let content = render(secrets, *format);
        let written = match self {
            MountTarget::Memfd(fd, _) => fd.try_clone().and_then(|fd| {
                let file = std::fs::File::from(fd);
                file.set_len(0)?;
                file.write_all_at(&content, 0)
            }),
            MountTarget::File(path, _) => write_file(path, &content),
        };
        drop(content);
        crate::sys::wipe_stack();
        written.map_err(Error::Write)
    }

    /// The child has exited: nothing of its secrets stays behind.
    pub fn clear(&self) {
        match self {
            MountTarget::Memfd(fd, _) => {
                if let Ok(fd) = fd.try_clone() {
                    let _ = std::fs::File::from(fd).set_len(0);
                }
            }
            MountTarget::File(path, _) => {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

impl Drop for MountTarget {
    fn drop(&mut self) {
        self.clear();
    }
}

fn write_file(path: &Path, content: &[u8]) -> std::io::Result<()> {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(format!(".agent-run-{}.tmp", std::process::id()));
    let tmp = path.with_file_name(name);
    let _ = std::fs::remove_file(&tmp);
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut file| file.write_all(content))
        .and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// The whole content in one buffer allocated at its worst-case size (every byte escaped
/// to six), so it never reallocates and leaves no copy behind; wiped on drop.
#[inline(never)]
fn render(secrets: &EnvBlock, format: MountFormat) -> Zeroizing<Vec<u8>> {
    let worst: usize = secrets
        .entries()
        .map(|(n, v)| 6 * (n.len() + v.len()) + 8)
        .sum::<usize>()
        + 4;
    let mut out = Zeroizing::new(Vec::with_capacity(worst));
    match format {
        MountFormat::Dotenv => {
            for (name, value) in secrets.entries() {
                out.extend_from_slice(name);
                out.extend_from_slice(b"=\"");
                for &b in value {
                    match b {
                        b'\n' => out.extend_from_slice(b"\\n"),
                        b'\r' => out.extend_from_slice(b"\\r"),
                        b'\t' => out.extend_from_slice(b"\\t"),
                        b'"' | b'\\' | b'$' => out.extend_from_slice(&[b'\\', b]),
                        b => out.push(b),
                    }
                }
                out.extend_from_slice(b"\"\n");
            }
        }
        MountFormat::Json => {
            out.push(b'{');
            for (i, (name, value)) in secrets.entries().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                json_string(&mut out, name);
                out.push(b':');
                json_string(&mut out, value);
            }
            out.extend_from_slice(b"}\n");
        }
    }
    debug_assert!(out.len() <= worst);
    out
}

fn json_string(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    for &b in bytes {
        match b {
            b'"' | b'\\' => out.extend_from_slice(&[b'\\', b]),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b if b < 0x20 => {
                out.extend_from_slice(b"\\u00");
                out.push(HEX[(b >> 4) as usize]);
                out.push(HEX[(b & 0xf) as usize]);
            }
            b => out.push(b),
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_dotenv_and_json_that_read_back() {
        let (_, block) = EnvBlock::test_block(&[("A", "x\"y\n$z\\"), ("B", "plain")])
            .split_off(&["A".to_owned(), "B".to_owned()]);
        let dotenv = render(&block, MountFormat::Dotenv);
        assert_eq!(
            String::from_utf8_lossy(&dotenv),
            "A=\"x\\\"y\\n\\$z\\\\\"\nB=\"plain\"\n"
        );
        let json = render(&block, MountFormat::Json);
        let parsed: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(parsed["A"], "x\"y\n$z\\");
        assert_eq!(parsed["B"], "plain");
    }
}

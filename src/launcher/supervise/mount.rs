//! `--mount[=PATH]` (as `doppler run --mount`): the secrets go to a file instead of the
//! child's environment, which then carries none of their values.
//!
//! Without PATH, an inherited `memfd` (no file on any filesystem) whose descriptor number
//! the child finds in `AGENT_RUN_MOUNT_FD`; with PATH, a 0600 file replaced atomically
//! (written aside, renamed over) in a tmpfs directory (a disk only with
//! `--mount-allow-disk`). Written at every start, emptied or removed when the child exits
//! (however it ends) and removed when agent-run ends. With `--mount-max-reads N`, PATH is
//! a named pipe instead, served to N readers at most (`pipe`). The content is built in one
//! buffer sized up front and wiped on drop; the values come from the locked environment
//! block.

use std::path::PathBuf;

use zeroize::Zeroizing;

use super::handoff::{self, Handoff};
use super::pipe::NamedPipe;
use crate::launcher::env::EnvBlock;

/// The variable that tells the child which inherited descriptor holds its secrets.
pub const MOUNT_FD_VARIABLE: &str = "AGENT_RUN_MOUNT_FD";

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
    /// `--mount-max-reads`: PATH is a named pipe, readable this many times per start
    /// (config makes sure there is a PATH and the number is at least 1).
    pub max_reads: Option<u32>,
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
pub struct MountTarget {
    sink: Sink,
    format: MountFormat,
}

#[derive(Debug)]
enum Sink {
    /// The memfd or the tmpfs file.
    Handoff(Handoff),
    /// `--mount-max-reads`.
    Pipe(NamedPipe),
}

impl MountTarget {
    pub fn new(settings: &MountSettings) -> Result<MountTarget, Error> {
        let file_error = |path: &PathBuf, reason: String| Error::File {
            path: path.clone(),
            reason: format!("{reason} (--mount-allow-disk if that is really wanted)"),
        };
        let sink = match (&settings.path, settings.max_reads) {
            (None, _) => Sink::Handoff(Handoff::memfd(c"agent-run-secrets").map_err(Error::Memfd)?),
            (Some(path), None) => Sink::Handoff(
                Handoff::file(path, settings.allow_disk).map_err(|r| file_error(path, r))?,
            ),
            (Some(path), Some(reads)) => {
                if !settings.allow_disk {
                    handoff::memory_backed(path).map_err(|r| file_error(path, r))?;
                }
                Sink::Pipe(NamedPipe::new(path, reads).map_err(|reason| Error::File {
                    path: path.clone(),
                    reason,
                })?)
            }
        };
        Ok(MountTarget {
            sink,
            format: settings.format,
        })
    }

    /// The variable agent-run adds to the child's environment, if any.
    pub fn variable(&self) -> Option<(&'static str, String)> {
        match &self.sink {
            Sink::Handoff(handoff) => handoff.variable(MOUNT_FD_VARIABLE),
            Sink::Pipe(_) => None,
        }
    }

    /// Replaces the content with `secrets`, rendered in the configured format. A pipe
    /// takes the rendered buffer itself (its writer thread wipes it when done).
    pub fn write(&mut self, secrets: &EnvBlock) -> Result<(), Error> {
        let content = render(secrets, self.format);
        let written = match &mut self.sink {
            Sink::Handoff(handoff) => {
                let replaced = handoff.replace(&content);
                drop(content);
                replaced
            }
            Sink::Pipe(pipe) => pipe.serve(content),
        };
        crate::sys::wipe_stack();
        written.map_err(Error::Write)
    }

    /// The child has exited: nothing of its secrets stays behind.
    pub fn clear(&mut self) {
        match &mut self.sink {
            Sink::Handoff(handoff) => handoff.clear(),
            Sink::Pipe(pipe) => pipe.clear(),
        }
    }
}

impl Drop for MountTarget {
    fn drop(&mut self) {
        self.clear();
    }
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

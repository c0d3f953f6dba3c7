//! The one dotenv reader of both programs (`agent-run --env-file`, `agent-vault secrets
//! import`): a small grammar of our own whose values are **literal bytes**.
//!
//! Why not a crate: dotenvy (the maintained one) always substitutes `$NAME` / `${NAME}` with
//! no switch to turn it off, which silently corrupted passwords such as `pa$word123`. The
//! literal-mode crate we found (adotenv) is young, has its own grammar, and decodes values
//! into its own `String`s, copies we could neither size nor wipe. This grammar is small
//! enough to read in one sitting:
//!
//! - Blank lines and lines whose first non-blank character is `#` are ignored. A UTF-8 byte
//!   order mark at the start of the file is skipped.
//! - `NAME=value`, optionally preceded by `export ` and with optional blanks around `=`.
//!   A name is `[A-Za-z_][A-Za-z0-9_]*` (what a shell can export).
//! - Unquoted values end at the end of the line or at a `#` preceded by a blank (a comment);
//!   leading and trailing blanks are trimmed; every other byte is kept as written.
//! - `'single quotes'`: fully literal, no escapes; may span lines.
//! - `"double quotes"`: `\n`, `\r`, `\t`, `\"`, `\\` and `\$` are escapes; any other
//!   backslash is kept as written; may span lines.
//! - After a closing quote only blanks and a `# comment` may follow.
//! - `$` is never special, in any quoting: there is no variable substitution.
//! - A name assigned twice keeps its later value.
//!
//! Errors carry the 1-based line and column and a reason, never the text of the line (it may
//! hold a value). Each value is built in a buffer allocated once at its exact decoded length,
//! so the only copy of a value is the one in the returned `SecretString`.

use std::path::{Path, PathBuf};

use secrecy::SecretString;

use crate::secret_file::{self, Shown};

/// One `NAME=value` of a file, with the line its assignment starts on.
pub struct Entry {
    pub name: String,
    pub value: SecretString,
    pub line: usize,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("name", &self.name)
            .field("value", &"[REDACTED]")
            .field("line", &self.line)
            .finish()
    }
}

/// Where and why a file is not valid dotenv. Never holds any text of the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {problem}")]
pub struct ParseError {
    pub line: usize,
    pub column: usize,
    pub problem: Problem,
}

/// What is wrong at that position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Problem {
    #[error("invalid name: a name must start with a letter or '_'")]
    NameStart,
    #[error("invalid name: a name may contain only letters, digits and '_'")]
    NameChar,
    #[error("expected '=' after the name")]
    MissingEquals,
    #[error("unterminated single-quoted value")]
    UnterminatedSingle,
    #[error("unterminated double-quoted value")]
    UnterminatedDouble,
    #[error("unexpected text after the closing quote (only a '# comment' may follow)")]
    AfterQuote,
    #[error("the value is not valid UTF-8")]
    NotUtf8,
}

/// Why an env file gave no entries: it could not be read, or it is not valid dotenv.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    #[error(transparent)]
    File(#[from] secret_file::Error),
    /// Where and why, never the line's text (it may hold a value).
    #[error("{}:{line}:{column}: not valid dotenv: {problem}", Shown(.path))]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        problem: Problem,
    },
}

/// Reads `path` through [`secret_file`] (regular files only, at most
/// [`MAX_ENV_FILE_BYTES`](secret_file::MAX_ENV_FILE_BYTES), wiped buffer) and parses it.
/// The one entry point of both programs.
pub fn read_file(path: &Path, checks: &secret_file::Checks) -> Result<Vec<Entry>, FileError> {
    let content = secret_file::read_with(path, secret_file::MAX_ENV_FILE_BYTES, checks)?;
    parse(&content).map_err(|e| FileError::Parse {
        path: path.to_path_buf(),
        line: e.line,
        column: e.column,
        problem: e.problem,
    })
}

/// Parses a whole file. Later assignments of a name replace earlier ones in place, so the
/// result has each name once, in order of first appearance.
pub fn parse(content: &[u8]) -> Result<Vec<Entry>, ParseError> {
    let mut parser = Parser {
        src: content,
        pos: 0,
        line: 1,
        line_start: 0,
    };
    if content.starts_with(b"\xEF\xBB\xBF") {
        parser.pos = 3;
        parser.line_start = 3;
    }
    let mut entries: Vec<Entry> = Vec::new();
    while let Some(entry) = parser.next_entry()? {
        match entries.iter_mut().find(|e| e.name == entry.name) {
            Some(existing) => *existing = entry,
            None => entries.push(entry),
        }
    }
    Ok(entries)
}

struct Parser<'a> {
    src: &'a [u8],
    pos: usize,
    /// 1-based line of `pos`.
    line: usize,
    /// Offset where the line of `pos` starts (for columns).
    line_start: usize,
}

fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.src.get(self.pos).copied()
    }

    fn error(&self, at: usize, problem: Problem) -> ParseError {
        // `at` is on the current line except for unterminated quotes, reported where the
        // quote opened (the caller passes that line's data).
        ParseError {
            line: self.line,
            column: at - self.line_start + 1,
            problem,
        }
    }

    fn skip_blanks(&mut self) {
        while self.peek().is_some_and(is_blank) {
            self.pos += 1;
        }
    }

    /// Moves past the end of the current line (and its `\n`).
    fn skip_line(&mut self) {
        while let Some(b) = self.peek() {
            self.pos += 1;
            if b == b'\n' {
                self.newline();
                return;
            }
        }
    }

    fn newline(&mut self) {
        self.line += 1;
        self.line_start = self.pos;
    }

    /// True at the end of a line: `\n`, `\r\n`, or the end of the file.
    fn at_line_end(&self) -> bool {
        match self.peek() {
            None | Some(b'\n') => true,
            Some(b'\r') => matches!(self.src.get(self.pos + 1), None | Some(b'\n')),
            _ => false,
        }
    }

    fn next_entry(&mut self) -> Result<Option<Entry>, ParseError> {
        loop {
            self.skip_blanks();
            match self.peek() {
                None => return Ok(None),
                Some(b'#') => self.skip_line(),
                _ if self.at_line_end() => self.skip_line(),
                _ => break,
            }
        }
        let line = self.line;
        if self.src[self.pos..].starts_with(b"export")
            && self.src.get(self.pos + 6).copied().is_some_and(is_blank)
        {
            self.pos += 6;
            self.skip_blanks();
        }
        let name = self.name()?;
        self.skip_blanks();
        if self.peek() != Some(b'=') {
            return Err(self.error(self.pos, Problem::MissingEquals));
        }
        self.pos += 1;
        self.skip_blanks();
        let value = match self.peek() {
            Some(b'\'') => self.single_quoted()?,
            Some(b'"') => self.double_quoted()?,
            _ => self.unquoted()?,
        };
        Ok(Some(Entry { name, value, line }))
    }

    fn name(&mut self) -> Result<String, ParseError> {
        let start = self.pos;
        match self.peek() {
            Some(b) if b == b'_' || b.is_ascii_alphabetic() => self.pos += 1,
            _ => return Err(self.error(start, Problem::NameStart)),
        }
        while let Some(b) = self.peek() {
            if b == b'_' || b.is_ascii_alphanumeric() {
                self.pos += 1;
            } else if b == b'=' || is_blank(b) {
                break;
            } else if self.at_line_end() {
                return Err(self.error(self.pos, Problem::MissingEquals));
            } else {
                return Err(self.error(self.pos, Problem::NameChar));
            }
        }
        // Only ASCII letters, digits and '_' were accepted above.
        Ok(String::from_utf8_lossy(&self.src[start..self.pos]).into_owned())
    }

    /// Up to the end of the line or a ` #` comment; blanks trimmed on both ends.
    fn unquoted(&mut self) -> Result<SecretString, ParseError> {
        let start = self.pos;
        let mut end = start;
        while !self.at_line_end() {
            let b = self.src[self.pos];
            if b == b'#' && self.pos > 0 && is_blank(self.src[self.pos - 1]) {
                break;
            }
            self.pos += 1;
            if !is_blank(b) {
                end = self.pos;
            }
        }
        let raw = &self.src[start..end];
        let text = std::str::from_utf8(raw).map_err(|_| self.error(start, Problem::NotUtf8))?;
        let value = SecretString::from(text);
        self.skip_line();
        Ok(value)
    }

    fn single_quoted(&mut self) -> Result<SecretString, ParseError> {
        let (open_line, open_line_start, open) = (self.line, self.line_start, self.pos);
        self.pos += 1;
        let start = self.pos;
        loop {
            match self.peek() {
                None => {
                    return Err(ParseError {
                        line: open_line,
                        column: open - open_line_start + 1,
                        problem: Problem::UnterminatedSingle,
                    })
                }
                Some(b'\'') => break,
                Some(b'\n') => {
                    self.pos += 1;
                    self.newline();
                }
                Some(_) => self.pos += 1,
            }
        }
        let raw = &self.src[start..self.pos];
        self.pos += 1;
        let text = std::str::from_utf8(raw).map_err(|_| ParseError {
            line: open_line,
            column: open - open_line_start + 1,
            problem: Problem::NotUtf8,
        })?;
        let value = SecretString::from(text);
        self.after_quote()?;
        Ok(value)
    }

    fn double_quoted(&mut self) -> Result<SecretString, ParseError> {
        let (open_line, open_line_start, open) = (self.line, self.line_start, self.pos);
        self.pos += 1;
        let start = self.pos;
        // First pass: find the closing quote and the decoded length, so the value's buffer
        // is allocated once at its final size.
        let mut decoded_len = 0;
        loop {
            match self.peek() {
                None => {
                    return Err(ParseError {
                        line: open_line,
                        column: open - open_line_start + 1,
                        problem: Problem::UnterminatedDouble,
                    })
                }
                Some(b'"') => break,
                Some(b'\\')
                    if self
                        .src
                        .get(self.pos + 1)
                        .is_some_and(|&b| escape(b).is_some()) =>
                {
                    self.pos += 2;
                    decoded_len += 1;
                }
                Some(b'\n') => {
                    self.pos += 1;
                    self.newline();
                    decoded_len += 1;
                }
                Some(_) => {
                    self.pos += 1;
                    decoded_len += 1;
                }
            }
        }
        let raw = &self.src[start..self.pos];
        self.pos += 1;
        let not_utf8 = ParseError {
            line: open_line,
            column: open - open_line_start + 1,
            problem: Problem::NotUtf8,
        };
        // Escapes only replace ASCII with ASCII, so the raw span is UTF-8 iff the value is.
        if std::str::from_utf8(raw).is_err() {
            return Err(not_utf8);
        }
        let mut bytes = zeroize::Zeroizing::new(Vec::with_capacity(decoded_len));
        let mut i = 0;
        while i < raw.len() {
            match raw[i] {
                b'\\' if raw.get(i + 1).is_some_and(|&b| escape(b).is_some()) => {
                    // Checked by the guard just above.
                    bytes.push(escape(raw[i + 1]).unwrap_or(b'\\'));
                    i += 2;
                }
                b => {
                    bytes.push(b);
                    i += 1;
                }
            }
        }
        debug_assert_eq!(bytes.len(), bytes.capacity());
        // The whole span was valid UTF-8 and escapes map ASCII to ASCII; `take` moves the
        // buffer (no copy) and leaves an empty Vec for the Zeroizing guard.
        let text = String::from_utf8(std::mem::take(&mut *bytes)).map_err(|e| {
            zeroize::Zeroize::zeroize(&mut e.into_bytes());
            not_utf8.clone()
        })?;
        let value = SecretString::from(text);
        self.after_quote()?;
        Ok(value)
    }

    /// After a closing quote: blanks, then an optional comment, then the end of the line.
    fn after_quote(&mut self) -> Result<(), ParseError> {
        self.skip_blanks();
        if self.at_line_end() || self.peek() == Some(b'#') {
            self.skip_line();
            Ok(())
        } else {
            Err(self.error(self.pos, Problem::AfterQuote))
        }
    }
}

/// The byte a double-quoted `\x` stands for, if `x` is one of our escapes.
fn escape(b: u8) -> Option<u8> {
    match b {
        b'n' => Some(b'\n'),
        b'r' => Some(b'\r'),
        b't' => Some(b'\t'),
        b'"' => Some(b'"'),
        b'\\' => Some(b'\\'),
        b'$' => Some(b'$'),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn values(text: &str) -> Vec<(String, String)> {
        parse(text.as_bytes())
            .unwrap()
            .into_iter()
            .map(|e| (e.name, e.value.expose_secret().to_owned()))
            .collect()
    }

    fn one(text: &str) -> String {
        let v = values(text);
        assert_eq!(v.len(), 1, "{text:?}");
        v[0].1.clone()
    }

    fn error(text: &str) -> ParseError {
        parse(text.as_bytes()).unwrap_err()
    }

    #[test]
    fn dollar_is_never_expanded() {
        assert_eq!(
            one("DB_PASSWORD=Xk9$mQ2vLp8$zR4wNt7"),
            "Xk9$mQ2vLp8$zR4wNt7"
        );
        assert_eq!(one("P=pa$word123"), "pa$word123");
        assert_eq!(one("P=x${HOME}y"), "x${HOME}y");
        assert_eq!(one("P=\"pa$$w0rd\""), "pa$$w0rd");
        assert_eq!(one("P='pa$$w0rd'"), "pa$$w0rd");
        assert_eq!(one("P=\"x${HOME}y\""), "x${HOME}y");
        assert_eq!(one("P=\"a\\$b\""), "a$b");
        assert_eq!(one("P=$"), "$");
    }

    #[test]
    fn unquoted_values() {
        assert_eq!(one("A=1"), "1");
        assert_eq!(one("A = 1 "), "1");
        assert_eq!(one("  export   A=  two words  # comment"), "two words");
        assert_eq!(one("A=a#b"), "a#b");
        assert_eq!(one("A=a #b"), "a");
        assert_eq!(one("A="), "");
        assert_eq!(one("A=#x"), "#x");
        assert_eq!(one("A= #x"), "");
        assert_eq!(one("A=\\n'\"\\"), "\\n'\"\\");
        assert_eq!(one("A=x=y\r\n"), "x=y");
        assert_eq!(one("export=1"), "1");
    }

    #[test]
    fn quoted_values() {
        assert_eq!(one("A='x\\ny'"), "x\\ny");
        assert_eq!(one("A='a # b' # c"), "a # b");
        assert_eq!(one("A='multi\nline'"), "multi\nline");
        assert_eq!(
            one("A=\"a\\nb\\tc\\rd\\\"e\\\\f\\qg\""),
            "a\nb\tc\rd\"e\\f\\qg"
        );
        assert_eq!(one("A=\"multi\nline\""), "multi\nline");
        assert_eq!(one("A=\"it's\""), "it's");
        assert_eq!(one("A='say \"hi\"'"), "say \"hi\"");
        assert_eq!(one("A=\"\""), "");
        assert_eq!(one("\u{feff}A=\"ü\""), "ü");
    }

    #[test]
    fn lines_and_later_wins() {
        let entries = parse(b"# c\n\nA=1\nB='x\ny'\nA=3\nexport C=4\n").unwrap();
        let got: Vec<_> = entries.iter().map(|e| (e.name.as_str(), e.line)).collect();
        assert_eq!(got, [("A", 6), ("B", 4), ("C", 7)]);
        assert_eq!(entries[0].value.expose_secret(), "3");
    }

    #[test]
    fn errors_give_line_column_and_reason() {
        assert_eq!(
            error("A=1\n1KEY=2\n"),
            ParseError {
                line: 2,
                column: 1,
                problem: Problem::NameStart
            }
        );
        assert_eq!(error("A=1\n\nKEY-X=2").problem, Problem::NameChar);
        assert_eq!(error("A=1\n\nKEY-X=2").column, 4);
        assert_eq!(error("JUSTTEXT\n").problem, Problem::MissingEquals);
        let e = error("A=1\nB='s3cr3t\nmore\n");
        assert_eq!(
            (e.line, e.column, e.problem),
            (2, 3, Problem::UnterminatedSingle)
        );
        let e = error("A=\"s3cr3t");
        assert_eq!(e.problem, Problem::UnterminatedDouble);
        let e = error("A='x' s3cr3t\n");
        assert_eq!((e.line, e.column, e.problem), (1, 7, Problem::AfterQuote));
        assert_eq!(parse(b"A=\xff\n").unwrap_err().problem, Problem::NotUtf8);
        assert!(!e.to_string().contains("s3cr3t"), "{e}");
        assert!(error("1KEY=2").to_string().contains("invalid name"));
    }

    #[test]
    fn every_printable_ascii_round_trips() {
        let all: String = (0x20u8..0x7f).map(char::from).collect();
        // Single quotes: everything but the quote itself is literal.
        let single: String = all.chars().filter(|&c| c != '\'').collect();
        assert_eq!(one(&format!("A='{single}'")), single);
        // Double quotes: escape `"` and `\`.
        let escaped = all.replace('\\', "\\\\").replace('"', "\\\"");
        assert_eq!(one(&format!("A=\"{escaped}\"")), all);
    }
}

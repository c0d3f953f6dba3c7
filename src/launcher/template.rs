//! `@{NAME}` references inside an `--env` value (Writer Agent Builder's `@{vault.KEY}` in
//! a header): `--env 'AUTHORIZATION=Bearer @{STRIPE_KEY}'`. This module only splits the
//! command line's text into literal pieces and the names referenced; the value itself is
//! written piece by piece into the `EnvBlock` by `env::compose`, so no composed plaintext
//! exists anywhere else.
//!
//! Only `--env` specs are templates: a value that comes from a source is never scanned,
//! and a referenced value that itself contains `@{X}` is copied as it is (no recursion),
//! so whoever writes a source cannot make agent-run pull in a secret the operator did not
//! name. `\@{` is a literal `@{`; any other backslash is kept as it is.

/// One piece of a template, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Text from the command line (not a secret).
    Text(String),
    /// `@{NAME}`: the value of the secret `NAME`.
    Ref(String),
}

/// An `--env` value with at least one `@{NAME}` reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub pieces: Vec<Piece>,
}

impl Template {
    /// The names referenced, in order of first appearance, without repeats.
    pub fn references(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for piece in &self.pieces {
            if let Piece::Ref(name) = piece {
                if !names.contains(&name.as_str()) {
                    names.push(name);
                }
            }
        }
        names
    }
}

/// What a value's text turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// No reference: the text with each `\@{` unescaped.
    Literal(String),
    Template(Template),
}

/// Why a value is not a well-formed template (the caller names the spec).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// `@{` without a closing `}`.
    Unterminated,
    /// `@{}`.
    Empty,
}

/// Splits `text` into pieces. A reference's name is everything up to the next `}` (the
/// sources' names are not all environment names: `--env X=@{api-key}` is fine).
pub fn parse(text: &str) -> Result<Parsed, Problem> {
    let mut pieces = Vec::new();
    let mut literal = String::new();
    let mut rest = text;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("\\@{") {
            literal.push_str("@{");
            rest = after;
        } else if let Some(after) = rest.strip_prefix("@{") {
            let end = after.find('}').ok_or(Problem::Unterminated)?;
            if end == 0 {
                return Err(Problem::Empty);
            }
            if !literal.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut literal)));
            }
            pieces.push(Piece::Ref(after[..end].to_owned()));
            rest = &after[end + 1..];
        } else {
            // A char boundary: the prefixes above are ASCII.
            let c = rest.chars().next().unwrap_or_default();
            literal.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    if pieces.is_empty() {
        return Ok(Parsed::Literal(literal));
    }
    if !literal.is_empty() {
        pieces.push(Piece::Text(literal));
    }
    Ok(Parsed::Template(Template { pieces }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Piece {
        Piece::Text(s.into())
    }
    fn reference(s: &str) -> Piece {
        Piece::Ref(s.into())
    }

    #[test]
    fn splits_text_and_references() {
        assert_eq!(
            parse("Bearer @{STRIPE_KEY}").unwrap(),
            Parsed::Template(Template {
                pieces: vec![text("Bearer "), reference("STRIPE_KEY")]
            })
        );
        let Parsed::Template(t) = parse("@{A}:@{b-c}/@{A}").unwrap() else {
            panic!("a template")
        };
        assert_eq!(
            t.pieces,
            [
                reference("A"),
                text(":"),
                reference("b-c"),
                text("/"),
                reference("A")
            ]
        );
        assert_eq!(t.references(), ["A", "b-c"]);
    }

    #[test]
    fn escapes_and_plain_text() {
        assert_eq!(parse("plain").unwrap(), Parsed::Literal("plain".into()));
        assert_eq!(parse("").unwrap(), Parsed::Literal(String::new()));
        assert_eq!(parse("a\\@{B}").unwrap(), Parsed::Literal("a@{B}".into()));
        assert_eq!(parse("a\\b@c}").unwrap(), Parsed::Literal("a\\b@c}".into()));
        assert_eq!(parse("é@x{").unwrap(), Parsed::Literal("é@x{".into()));
        assert_eq!(
            parse("\\@{X} @{Y}").unwrap(),
            Parsed::Template(Template {
                pieces: vec![text("@{X} "), reference("Y")]
            })
        );
    }

    #[test]
    fn malformed_references() {
        assert_eq!(parse("Bearer @{KEY"), Err(Problem::Unterminated));
        assert_eq!(parse("@{"), Err(Problem::Unterminated));
        assert_eq!(parse("x @{} y"), Err(Problem::Empty));
    }
}

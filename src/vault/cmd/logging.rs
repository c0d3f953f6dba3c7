//! agent-vault's log output on stderr (issue 13 item 7): `tracing` lines as text or, with
//! `--log-format json`, as JSON objects; and the lines that are not `tracing` events — the
//! "listening" notice a supervisor waits for, "stopped", and the fatal error the binary
//! prints — in the same format, so with `json` every line on stderr parses.

use std::io::{IsTerminal, Write};
use std::sync::OnceLock;

use super::flags::LogFormat;

static FORMAT: OnceLock<LogFormat> = OnceLock::new();

/// Installs the subscriber (once, from the binary) and remembers the format for
/// [`notice`] and [`fatal`].
pub fn install(level: tracing::Level, format: LogFormat) {
    let _ = FORMAT.set(format);
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn format() -> LogFormat {
    FORMAT.get().copied().unwrap_or(LogFormat::Text)
}

/// One JSON line in the shape of tracing-subscriber's: timestamp, level, fields (with
/// `message`), target.
fn json_line(level: &str, message: &str, fields: &[(&str, &str)]) -> String {
    let mut map = serde_json::Map::new();
    map.insert("message".into(), message.into());
    for (name, value) in fields {
        map.insert((*name).into(), (*value).into());
    }
    serde_json::json!({
        "timestamp": humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string(),
        "level": level,
        "fields": map,
        "target": "agent_vault",
    })
    .to_string()
}

/// A line that is always shown, whatever the level: text `agent-vault MESSAGE VALUE…`, or
/// an INFO JSON object with `fields`.
pub fn notice(text: &str, message: &str, fields: &[(&str, &str)]) {
    let line = match format() {
        LogFormat::Text => text.to_owned(),
        LogFormat::Json => json_line("INFO", message, fields),
    };
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// The error that ends the program: `agent-vault: ERROR` or an ERROR JSON object.
pub fn fatal(error: &str) {
    print_error(format(), error);
}

/// As [`fatal`], in a given format (flag errors come before the logger exists).
pub fn print_error(format: LogFormat, error: &str) {
    let line = match format {
        LogFormat::Text => format!("agent-vault: {error}"),
        LogFormat::Json => json_line("ERROR", error, &[]),
    };
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// The format asked for on a command line clap refused: `--log-format json` (or `=json`)
/// among the arguments, else `AGENT_VAULT_LOG_FORMAT=json`.
pub fn format_of_refused_args(args: &[std::ffi::OsString]) -> LogFormat {
    let text: Vec<&str> = args.iter().filter_map(|a| a.to_str()).collect();
    let flag = text.iter().enumerate().find_map(|(i, arg)| {
        if let Some(value) = arg.strip_prefix("--log-format=") {
            Some(value)
        } else if *arg == "--log-format" {
            text.get(i + 1).copied()
        } else {
            None
        }
    });
    let env = std::env::var("AGENT_VAULT_LOG_FORMAT").ok();
    match flag.or(env.as_deref()) {
        Some(value) if value.eq_ignore_ascii_case("json") => LogFormat::Json,
        _ => LogFormat::Text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_parse_and_carry_the_fields() {
        let line = json_line("INFO", "agent-vault listening", &[("address", "http://x")]);
        let value: serde_json::Value = serde_json::from_str(&line).expect("JSON");
        assert_eq!(value["fields"]["address"], "http://x");
        assert_eq!(value["level"], "INFO");
        let args: Vec<std::ffi::OsString> = ["agent-vault", "serve", "--log-format", "json"]
            .iter()
            .map(Into::into)
            .collect();
        assert_eq!(format_of_refused_args(&args), LogFormat::Json);
    }
}

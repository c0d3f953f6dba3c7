//! `agent-vault mcp`: a Model Context Protocol server on stdin/stdout, so an assistant can
//! manage agents' entries and tokens without a value or a token ever entering its context.
//! This file owns the protocol: JSON-RPC 2.0, one message per line (the MCP stdio transport),
//! the `initialize` handshake, `ping`, `tools/list` and `tools/call`. What each tool does, and
//! what it refuses, is `tools`.
//!
//! Hand-written rather than built on `rmcp` (the official Rust SDK, 3.11): its server side is
//! async only, its `server` feature pulls in schemars, chrono, futures, uuid and a second
//! sha2, and it needs Rust 1.88 where this crate's `rust-version` is 1.85, while this server
//! is five methods over the admin CLI's blocking `protocol::Client` and needs no runtime. The
//! tests speak to it with the official Python SDK (`tests/mcp/mcp_test.py`), so what a real
//! client sends is covered.
//!
//! stdout carries the protocol and nothing else: logs go to stderr (the binary's subscriber),
//! and this module is the only writer of stdout while it runs. Requests are answered one at a
//! time, in order; every store call has the client's own timeout, so a request never hangs.

mod tools;

use std::io::{BufRead, Write};

use serde_json::{json, Map, Value};
use tracing::{debug, warn};
use zeroize::Zeroizing;

use super::flags::McpArgs;
use super::{connect, Error, Result};
use tools::Tools;

/// The protocol revisions this server speaks: it answers a client's own revision when it is
/// one of these, else the newest (the client then decides whether it can go on). The
/// methods used here are the same in all three.
const PROTOCOL_VERSIONS: [&str; 3] = ["2025-06-18", "2025-03-26", "2024-11-05"];

/// The longest message read: room for the largest value the store accepts with JSON
/// escaping to spare. A longer line is answered with an error and skipped, not buffered
/// whole.
const MAX_MESSAGE: usize = 1 << 20;

/// What the server tells the client about itself in `initialize` (shown to the model by
/// most clients): the one rule an assistant needs to know before it calls anything.
const INSTRUCTIONS: &str = "agent-vault holds per-agent secrets and plain variables. Through \
    these tools you can list agents, their entries (secrets show only a masked preview such \
    as ****1234), project variables, tokens and the audit trail; set plain (non-secret) \
    variables; and revoke tokens. No tool ever returns a secret's value or a token. Setting a \
    secret's value and issuing a token are refused: tell the user the terminal command the \
    refusal names, so the value or token never passes through this conversation.";

/// JSON-RPC error codes (JSON-RPC 2.0, section 5.1).
mod rpc {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;
}

/// A JSON-RPC error answer. Its message names the method or tool, never an argument.
struct RpcError {
    code: i64,
    message: String,
}

impl RpcError {
    fn new(code: i64, message: impl Into<String>) -> RpcError {
        RpcError {
            code,
            message: message.into(),
        }
    }
}

pub(super) fn run(args: McpArgs) -> Result<()> {
    // Before reading anything: no token or a refused address is a usage error at start,
    // not an error on every call.
    let client = connect(&args.connect)?;
    let mut server = Server::new(Tools::new(client));
    serve(
        &mut server,
        std::io::stdin().lock(),
        std::io::stdout().lock(),
    )
}

/// Reads messages until stdin closes (the client ending the session), answering each.
fn serve(server: &mut Server, mut input: impl BufRead, mut output: impl Write) -> Result<()> {
    // Wiped when dropped: a `set_plain_variable` line carries a value, and a model may have
    // sent a secret where it should not have.
    let mut line = Zeroizing::new(Vec::with_capacity(8192));
    loop {
        line.clear();
        let read = <&mut _ as std::io::Read>::take(&mut input, MAX_MESSAGE as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(Error::io("reading an MCP message from stdin"))?;
        if read == 0 {
            return Ok(());
        }
        let answer = if line.len() > MAX_MESSAGE && !line.ends_with(b"\n") {
            skip_line(&mut input)?;
            Some(error_answer(
                Value::Null,
                RpcError::new(
                    rpc::INVALID_REQUEST,
                    format!("message longer than {MAX_MESSAGE} bytes"),
                ),
            ))
        } else if line.iter().all(u8::is_ascii_whitespace) {
            None
        } else {
            server.answer_line(&line)
        };
        if let Some(answer) = answer {
            let mut text = serde_json::to_vec(&answer)?;
            text.push(b'\n');
            output
                .write_all(&text)
                .and_then(|()| output.flush())
                .map_err(Error::io("writing an MCP answer to stdout"))?;
        }
    }
}

/// Discards the rest of an over-long line, a bounded piece at a time.
fn skip_line(input: &mut impl BufRead) -> Result<()> {
    loop {
        let buf = input
            .fill_buf()
            .map_err(Error::io("reading an MCP message from stdin"))?;
        if buf.is_empty() {
            return Ok(());
        }
        match buf.iter().position(|&b| b == b'\n') {
            Some(end) => {
                input.consume(end + 1);
                return Ok(());
            }
            None => {
                let len = buf.len();
                input.consume(len);
            }
        }
    }
}

fn error_answer(id: Value, error: RpcError) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": error.code, "message": error.message}})
}

/// The session: the negotiated revision and the tools.
struct Server {
    tools: Tools,
    /// Set by `initialize`; until then the newest.
    version: &'static str,
    initialized: bool,
}

impl Server {
    fn new(tools: Tools) -> Server {
        Server {
            tools,
            version: PROTOCOL_VERSIONS[0],
            initialized: false,
        }
    }

    /// One line: a message or (2025-03-26) a batch of them. `None` when nothing is owed
    /// (notifications, responses).
    fn answer_line(&mut self, line: &[u8]) -> Option<Value> {
        let message: Value = match serde_json::from_slice(line) {
            Ok(message) => message,
            Err(_) => {
                return Some(error_answer(
                    Value::Null,
                    RpcError::new(rpc::PARSE_ERROR, "the line is not JSON"),
                ))
            }
        };
        match message {
            Value::Array(batch) if batch.is_empty() => Some(error_answer(
                Value::Null,
                RpcError::new(rpc::INVALID_REQUEST, "an empty batch"),
            )),
            Value::Array(batch) => {
                let answers: Vec<Value> = batch
                    .into_iter()
                    .filter_map(|message| self.answer(message))
                    .collect();
                (!answers.is_empty()).then_some(Value::Array(answers))
            }
            message => self.answer(message),
        }
    }

    fn answer(&mut self, message: Value) -> Option<Value> {
        let Value::Object(mut message) = message else {
            return Some(error_answer(
                Value::Null,
                RpcError::new(rpc::INVALID_REQUEST, "a message must be a JSON object"),
            ));
        };
        let id = message.remove("id");
        if message.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
            return Some(error_answer(
                id.unwrap_or(Value::Null),
                RpcError::new(rpc::INVALID_REQUEST, "\"jsonrpc\" must be \"2.0\""),
            ));
        }
        let Some(Value::String(method)) = message.remove("method") else {
            // A response to a request of ours: this server sends none, so there is nothing
            // to match it with.
            if message.contains_key("result") || message.contains_key("error") {
                return None;
            }
            return Some(error_answer(
                id.unwrap_or(Value::Null),
                RpcError::new(rpc::INVALID_REQUEST, "no \"method\""),
            ));
        };
        let params = message.remove("params").unwrap_or(Value::Null);
        let Some(id) = id else {
            self.notified(&method);
            return None;
        };
        if !(id.is_string() || id.is_i64() || id.is_u64()) {
            return Some(error_answer(
                Value::Null,
                RpcError::new(
                    rpc::INVALID_REQUEST,
                    "\"id\" must be a string or an integer",
                ),
            ));
        }
        Some(match self.request(&method, params) {
            Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
            Err(error) => error_answer(id, error),
        })
    }

    /// Notifications need no answer; the ones this server cares about only change its log.
    fn notified(&mut self, method: &str) {
        match method {
            "notifications/initialized" => {
                self.initialized = true;
                debug!("mcp client initialized");
            }
            _ => debug!(method, "mcp notification ignored"),
        }
    }

    fn request(&mut self, method: &str, params: Value) -> Result<Value, RpcError> {
        match method {
            "initialize" => {
                let (version, result) = initialize(&params);
                self.version = version;
                Ok(result)
            }
            "ping" => Ok(json!({})),
            "tools/list" => Ok(json!({"tools": tools::definitions()})),
            "tools/call" => {
                if !self.initialized {
                    // Clients send `notifications/initialized` first; one that does not
                    // still gets its answer, as the call itself is complete.
                    warn!("mcp tools/call before notifications/initialized");
                }
                let (name, arguments) = call_params(params)?;
                let mut result = self.tools.call(&name, arguments).ok_or_else(|| {
                    RpcError::new(
                        rpc::INVALID_PARAMS,
                        format!("unknown tool {name:?}: tools/list names every tool"),
                    )
                })?;
                // Structured results came with 2025-06-18; older clients get the text.
                if self.version != "2025-06-18" {
                    if let Value::Object(fields) = &mut result {
                        fields.remove("structuredContent");
                    }
                }
                Ok(result)
            }
            _ => Err(RpcError::new(
                rpc::METHOD_NOT_FOUND,
                format!("method {method:?} is not supported"),
            )),
        }
    }
}

/// `initialize`: the client's revision if this server speaks it, else the newest it does.
fn initialize(params: &Value) -> (&'static str, Value) {
    let asked = params.get("protocolVersion").and_then(Value::as_str);
    let version = PROTOCOL_VERSIONS
        .iter()
        .copied()
        .find(|v| Some(*v) == asked)
        .unwrap_or(PROTOCOL_VERSIONS[0]);
    let result = json!({
        "protocolVersion": version,
        "capabilities": {"tools": {"listChanged": false}},
        "serverInfo": {"name": "agent-vault", "title": "agent-vault", "version": crate::VERSION},
        "instructions": INSTRUCTIONS,
    });
    (version, result)
}

/// `tools/call`'s `name` and `arguments` (absent arguments are an empty object).
fn call_params(params: Value) -> Result<(String, Map<String, Value>), RpcError> {
    let invalid = |what: &str| RpcError::new(rpc::INVALID_PARAMS, what.to_string());
    let Value::Object(mut params) = params else {
        return Err(invalid("tools/call needs params with a tool \"name\""));
    };
    let Some(Value::String(name)) = params.remove("name") else {
        return Err(invalid("tools/call needs a tool \"name\" (a string)"));
    };
    match params.remove("arguments") {
        None | Some(Value::Null) => Ok((name, Map::new())),
        Some(Value::Object(arguments)) => Ok((name, arguments)),
        Some(_) => Err(invalid("tools/call \"arguments\" must be an object")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> Server {
        let client = crate::protocol::Client::new("http://127.0.0.1:9", None, None)
            .expect("a client needs no connection");
        Server::new(Tools::new(client))
    }

    fn exchange(input: &str) -> Vec<Value> {
        let mut out = Vec::new();
        serve(&mut server(), input.as_bytes(), &mut out).expect("served");
        String::from_utf8(out)
            .expect("utf-8")
            .lines()
            .map(|l| serde_json::from_str(l).expect("every line is JSON"))
            .collect()
    }

    #[test]
    fn handshake_picks_the_clients_revision_or_the_newest() {
        let answers = exchange(concat!(
            r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-03-26","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#,
            "\n",
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            "\n",
            r#"{"jsonrpc":"2.0","id":"two","method":"initialize","params":{"protocolVersion":"2099-01-01"}}"#,
            "\n",
            r#"{"jsonrpc":"2.0","id":3,"method":"ping"}"#,
            "\n",
        ));
        assert_eq!(answers.len(), 3, "{answers:?}");
        assert_eq!(answers[0]["id"], 1);
        assert_eq!(answers[0]["result"]["protocolVersion"], "2025-03-26");
        assert!(answers[0]["result"]["capabilities"]["tools"].is_object());
        assert_eq!(answers[1]["id"], "two");
        assert_eq!(answers[1]["result"]["protocolVersion"], "2025-06-18");
        assert_eq!(answers[2], json!({"jsonrpc":"2.0","id":3,"result":{}}));
    }

    #[test]
    fn protocol_errors_get_their_codes() {
        let answers = exchange(concat!(
            "not json\n",
            "\n",
            r#"{"jsonrpc":"2.0","id":1,"method":"resources/list"}"#,
            "\n",
            r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"no_such_tool"}}"#,
            "\n",
            r#"{"jsonrpc":"1.0","id":3,"method":"ping"}"#,
            "\n",
            r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"list_agents","arguments":[1]}}"#,
            "\n",
            "[]\n",
            r#"[{"jsonrpc":"2.0","id":5,"method":"ping"},{"jsonrpc":"2.0","method":"notifications/cancelled"}]"#,
            "\n",
            r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#,
            "\n",
        ));
        let codes: Vec<Value> = answers.iter().map(|a| a["error"]["code"].clone()).collect();
        assert_eq!(
            codes[..7],
            [
                json!(-32700),
                json!(-32601),
                json!(-32602),
                json!(-32600),
                json!(-32602),
                json!(-32600),
                Value::Null,
            ],
            "{answers:?}"
        );
        assert_eq!(answers[6], json!([{"jsonrpc":"2.0","id":5,"result":{}}]));
        assert_eq!(answers[7]["error"]["code"], -32600);
        assert_eq!(answers.len(), 8);
    }

    #[test]
    fn an_over_long_line_is_refused_and_skipped() {
        let mut input = "x".repeat(MAX_MESSAGE + 10);
        input.push('\n');
        input.push_str(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#);
        input.push('\n');
        let answers = exchange(&input);
        assert_eq!(answers.len(), 2, "{answers:?}");
        assert_eq!(answers[0]["error"]["code"], -32600);
        assert_eq!(answers[1]["result"], json!({}));
    }
}

//! The tools of `agent-vault mcp`: their definitions (name, description, JSON Schema of the
//! arguments, hints) and what each call does through the HTTP API, so the token's scopes
//! and the audit trail apply exactly as to the CLI.
//!
//! The rule of this file: nothing a tool returns carries a value or a token. Entries come
//! with their masked preview only (`value` is removed even from plain entries, so no tool
//! result is ever a way to read one); `set_secret` and `issue_token` are listed, so a model
//! finds them, and always refused with the terminal command to run instead: a value typed
//! into a conversation, or a token printed into one, is in the model's context, its
//! provider's logs and the transcript for good. Arguments are never logged.

use secrecy::SecretString;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tracing::info;

use crate::protocol::wire::{code, AuditQuery, Kind, PutResponse, PutSecretRequest, SecretMeta};
use crate::protocol::{self, Client};

/// Most audit records one `read_audit` returns when the call names no `limit`: the CLI's
/// 1,000 would flood a model's context.
const AUDIT_DEFAULT_LIMIT: u32 = 100;

/// The tools, each with what it may call.
pub(super) struct Tools {
    client: Client,
}

/// One tool as `tools/list` shows it.
struct Definition {
    name: &'static str,
    title: &'static str,
    description: &'static str,
    /// Properties of the arguments object, and which are required.
    properties: fn() -> Value,
    required: &'static [&'static str],
    /// The hints of `annotations`: reads only (`readOnlyHint`); else whether it destroys
    /// something (`destructiveHint`); whether calling it twice does no more than once (a set
    /// writes a new version each time).
    read_only: bool,
    destructive: bool,
    idempotent: bool,
}

fn no_properties() -> Value {
    json!({})
}

fn agent_property() -> Value {
    json!({"agent": {"type": "string", "description": "The agent's name, as `list_agents` shows it."}})
}

fn entry_properties() -> Value {
    json!({
        "agent": {"type": "string", "description": "The agent's name."},
        "key": {"type": "string", "description": "The entry's key (an environment variable name)."},
    })
}

fn set_plain_properties() -> Value {
    json!({
        "agent": {"type": "string", "description": "The agent's name."},
        "key": {"type": "string", "description": "The variable's name (an environment variable name)."},
        "value": {"type": "string", "description": "The value: configuration only (a region, a log level, a URL), never a credential."},
        "description": {"type": "string", "description": "What the variable is for (optional)."},
    })
}

fn set_project_properties() -> Value {
    json!({
        "key": {"type": "string", "description": "The variable's name (an environment variable name)."},
        "value": {"type": "string", "description": "The value: configuration only, never a credential."},
        "description": {"type": "string", "description": "What the variable is for (optional)."},
    })
}

fn set_secret_properties() -> Value {
    json!({
        "agent": {"type": "string", "description": "The agent's name (to fill in the command to run)."},
        "key": {"type": "string", "description": "The secret's key (to fill in the command to run)."},
    })
}

fn issue_token_properties() -> Value {
    json!({
        "scopes": {"type": "array", "items": {"type": "string"}, "description": "The scopes the token should have, e.g. `secrets:read:support-bot/*` (to fill in the command to run)."},
        "ttl": {"type": "string", "description": "Its lifetime, e.g. `30d` (to fill in the command to run)."},
    })
}

fn revoke_properties() -> Value {
    json!({"id": {"type": "string", "description": "The token's id, as `list_tokens` shows it (never the token itself)."}})
}

fn audit_properties() -> Value {
    json!({
        "agent": {"type": "string", "description": "Only records about this agent."},
        "since": {"type": "string", "description": "Only records at or after this time: a duration ago (`1h`, `30m`, `2d`), an RFC 3339 time, or unix seconds."},
        "limit": {"type": "integer", "minimum": 1, "maximum": 10000, "description": "The newest this many records (default 100)."},
    })
}

const DEFINITIONS: &[Definition] = &[
    Definition {
        name: "list_agents",
        title: "List agents",
        description: "The agents the store knows (those with entries of their own), with counts \
            of secrets and plain variables and the last time each was read at run time, and the \
            number of project-wide variables.",
        properties: no_properties,
        required: &[],
        read_only: true,
        destructive: false,
        idempotent: true,
    },
    Definition {
        name: "list_entries",
        title: "List an agent's entries",
        description: "An agent's secrets and plain variables: key, kind, description, version, \
            times and a masked preview (`****` and at most the last 4 characters). Never a value.",
        properties: agent_property,
        required: &["agent"],
        read_only: true,
        destructive: false,
        idempotent: true,
    },
    Definition {
        name: "describe_entry",
        title: "Describe one entry",
        description: "One entry's metadata and masked preview. Never its value.",
        properties: entry_properties,
        required: &["agent", "key"],
        read_only: true,
        destructive: false,
        idempotent: true,
    },
    Definition {
        name: "list_project_variables",
        title: "List project variables",
        description: "The project-wide variables every agent's token reads where its pattern \
            matches: metadata and masked previews, never a value.",
        properties: no_properties,
        required: &[],
        read_only: true,
        destructive: false,
        idempotent: true,
    },
    Definition {
        name: "set_plain_variable",
        title: "Set an agent's plain variable",
        description: "Create or change a plain (non-secret) variable of an agent, such as a \
            region or a log level. Refused for a key that holds a secret. Never use it for a \
            credential: secrets are set in a terminal (see `set_secret`).",
        properties: set_plain_properties,
        required: &["agent", "key", "value"],
        read_only: false,
        destructive: false,
        idempotent: false,
    },
    Definition {
        name: "set_project_variable",
        title: "Set a project plain variable",
        description: "Create or change a plain (non-secret) project-wide variable, read by every \
            agent. Refused for a key that holds a secret. Never use it for a credential.",
        properties: set_project_properties,
        required: &["key", "value"],
        read_only: false,
        destructive: false,
        idempotent: false,
    },
    Definition {
        name: "set_secret",
        title: "Set a secret (refused: use the terminal)",
        description: "Always refused: a secret's value must not pass through this conversation. \
            The answer is the terminal command for the user to run, which reads the value \
            without showing it. Do not ask the user for the value.",
        properties: set_secret_properties,
        required: &[],
        read_only: true,
        destructive: false,
        idempotent: true,
    },
    Definition {
        name: "list_tokens",
        title: "List tokens",
        description: "Every token's id, scopes, description, creation, expiry and revocation \
            time. Never a token itself.",
        properties: no_properties,
        required: &[],
        read_only: true,
        destructive: false,
        idempotent: true,
    },
    Definition {
        name: "issue_token",
        title: "Issue a token (refused: use the terminal)",
        description: "Always refused: a token is a credential and must not pass through this \
            conversation. The answer is the terminal command for the user to run.",
        properties: issue_token_properties,
        required: &[],
        read_only: true,
        destructive: false,
        idempotent: true,
    },
    Definition {
        name: "revoke_token",
        title: "Revoke a token",
        description: "Revoke a token by its id: it stops working at once (running agents using \
            it lose access). The last admin token cannot be revoked.",
        properties: revoke_properties,
        required: &["id"],
        read_only: false,
        destructive: true,
        idempotent: true,
    },
    Definition {
        name: "read_audit",
        title: "Read the audit trail",
        description: "Audit records, oldest first: time, token id, action, agent, key names, \
            remote address and outcome. Never a value.",
        properties: audit_properties,
        required: &[],
        read_only: true,
        destructive: false,
        idempotent: true,
    },
];

/// `tools/list`'s tools.
pub(super) fn definitions() -> Vec<Value> {
    DEFINITIONS
        .iter()
        .map(|d| {
            json!({
                "name": d.name,
                "title": d.title,
                "description": d.description,
                "inputSchema": {
                    "type": "object",
                    "properties": (d.properties)(),
                    "required": d.required,
                    "additionalProperties": false,
                },
                "annotations": {
                    "title": d.title,
                    "readOnlyHint": d.read_only,
                    "destructiveHint": d.destructive,
                    "idempotentHint": d.idempotent,
                    "openWorldHint": false,
                },
            })
        })
        .collect()
}

/// A tool's answer: a text for the model and, when it succeeded, the same as an object.
struct Outcome {
    error: bool,
    text: String,
    structured: Option<Value>,
}

impl Outcome {
    fn ok(value: Value) -> Outcome {
        Outcome {
            error: false,
            // Serializing a `Value` cannot fail.
            text: serde_json::to_string_pretty(&value).unwrap_or_default(),
            structured: Some(value),
        }
    }

    fn refused(text: String) -> Outcome {
        Outcome {
            error: true,
            text,
            structured: None,
        }
    }

    fn into_result(self) -> Value {
        let mut result = json!({
            "content": [{"type": "text", "text": self.text}],
            "isError": self.error,
        });
        if let Some(structured) = self.structured {
            result["structuredContent"] = structured;
        }
        result
    }
}

/// Arguments of tools that take none (an empty object).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoArgs {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentArgs {
    agent: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryArgs {
    agent: String,
    key: String,
}

/// `set_plain_variable` (with `agent`) and `set_project_variable` (without).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetPlainArgs {
    #[serde(default)]
    agent: Option<String>,
    key: String,
    value: SecretString,
    #[serde(default)]
    description: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeArgs {
    id: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditArgs {
    #[serde(default)]
    agent: Option<String>,
    #[serde(default)]
    since: Option<String>,
    #[serde(default)]
    limit: Option<u32>,
}

/// Arguments that do not fit a tool's schema: said to the model, which can try again. Only
/// the field's name and serde's reason; a wrong-typed `value` is not echoed (see `value`).
fn parse<T: DeserializeOwned>(tool: &str, arguments: Map<String, Value>) -> Result<T, Outcome> {
    serde_json::from_value(Value::Object(arguments)).map_err(|e| {
        let reason = e.to_string();
        // serde names a wrong-typed argument's content ("invalid type: string \"…\""):
        // said without it, as it may be a value.
        let reason = if ["invalid type", "invalid value", "invalid length"]
            .iter()
            .any(|kind| reason.contains(kind))
        {
            "a field has the wrong type".to_string()
        } else {
            reason
        };
        Outcome::refused(format!(
            "invalid arguments for {tool}: {reason}; see its inputSchema in tools/list"
        ))
    })
}

/// A store error, for the model: the server's message (names and codes, never a value) and
/// what to do about the ones a model can act on.
fn store_error(error: protocol::Error) -> Outcome {
    let hint = match &error {
        protocol::Error::Api { code, .. } if code == code::UNAUTHORIZED => {
            "\nThe token `agent-vault mcp` was started with is not valid (expired or revoked?): \
             the user must restart it with a valid AGENT_VAULT_TOKEN or --token-file."
        }
        protocol::Error::Api { code, .. } if code == code::FORBIDDEN => {
            "\nThe token `agent-vault mcp` was started with lacks the scope for this; an admin \
             token can do everything these tools do."
        }
        protocol::Error::Api { code, .. } if code == code::NOT_FOUND => {
            "\n`list_agents` and `list_entries` show what exists."
        }
        _ => "",
    };
    Outcome::refused(format!("{error}{hint}"))
}

/// An entry as a tool shows it: metadata and the masked preview, never `value`.
fn masked(mut meta: SecretMeta) -> SecretMeta {
    meta.value = None;
    meta
}

fn to_value<T: serde::Serialize>(value: &T) -> Value {
    // Wire types serialize to JSON by construction (no maps with non-string keys).
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// Quoted for a POSIX shell, so a hint's command can be pasted as it is.
fn shell_quote(text: &str) -> String {
    if !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:@%+=,".contains(&b))
    {
        return text.to_string();
    }
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// A string argument of a refused tool, if the model gave one (anything else is ignored).
fn text_arg(arguments: &Map<String, Value>, name: &str) -> Option<String> {
    arguments
        .get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

impl Tools {
    pub(super) fn new(client: Client) -> Tools {
        Tools { client }
    }

    /// `tools/call`: `None` for an unknown tool (a protocol error), else the tool's result,
    /// `isError` set when it failed or was refused.
    pub(super) fn call(&self, name: &str, arguments: Map<String, Value>) -> Option<Value> {
        let definition = DEFINITIONS.iter().find(|d| d.name == name)?;
        let outcome = match self.dispatch(definition.name, arguments) {
            Ok(outcome) | Err(outcome) => outcome,
        };
        info!(
            tool = definition.name,
            error = outcome.error,
            "mcp tool called"
        );
        Some(outcome.into_result())
    }

    fn dispatch(&self, name: &str, arguments: Map<String, Value>) -> Result<Outcome, Outcome> {
        let client = &self.client;
        Ok(match name {
            "list_agents" => {
                parse::<NoArgs>(name, arguments)?;
                Outcome::ok(to_value(&client.list_agents().map_err(store_error)?))
            }
            "list_entries" => {
                let args: AgentArgs = parse(name, arguments)?;
                let list = client
                    .list_secrets(&args.agent, false)
                    .map_err(store_error)?;
                let entries: Vec<SecretMeta> = list.secrets.into_iter().map(masked).collect();
                Outcome::ok(json!({"agent": list.agent, "entries": to_value(&entries)}))
            }
            "describe_entry" => {
                let args: EntryArgs = parse(name, arguments)?;
                let meta = client
                    .describe_secret(&args.agent, &args.key)
                    .map_err(store_error)?;
                Outcome::ok(to_value(&masked(meta)))
            }
            "list_project_variables" => {
                parse::<NoArgs>(name, arguments)?;
                let list = client.list_vars(false).map_err(store_error)?;
                let vars: Vec<SecretMeta> = list.vars.into_iter().map(masked).collect();
                Outcome::ok(json!({"vars": to_value(&vars)}))
            }
            "set_plain_variable" => {
                let args: SetPlainArgs = parse(name, arguments)?;
                if args.agent.is_none() {
                    return Err(Outcome::refused(
                        "set_plain_variable needs the agent (`set_project_variable` sets a \
                         project-wide variable)"
                            .into(),
                    ));
                }
                self.set_plain(args)?
            }
            "set_project_variable" => {
                let args: SetPlainArgs = parse(name, arguments)?;
                if args.agent.is_some() {
                    return Err(Outcome::refused(
                        "set_project_variable takes no agent (`set_plain_variable` sets an \
                         agent's variable)"
                            .into(),
                    ));
                }
                self.set_plain(args)?
            }
            "set_secret" => refuse_set_secret(&arguments),
            "list_tokens" => {
                parse::<NoArgs>(name, arguments)?;
                Outcome::ok(to_value(&client.list_tokens().map_err(store_error)?))
            }
            "issue_token" => refuse_issue_token(&arguments),
            "revoke_token" => {
                let args: RevokeArgs = parse(name, arguments)?;
                client.revoke_token(&args.id).map_err(store_error)?;
                Outcome::ok(json!({"revoked": args.id}))
            }
            "read_audit" => {
                let args: AuditArgs = parse(name, arguments)?;
                let list = client
                    .audit(&AuditQuery {
                        agent: args.agent,
                        since: args
                            .since
                            .as_deref()
                            .map(super::super::audit::since_to_absolute),
                        limit: Some(args.limit.unwrap_or(AUDIT_DEFAULT_LIMIT)),
                        after: None,
                    })
                    .map_err(store_error)?;
                Outcome::ok(to_value(&list))
            }
            // Every name in DEFINITIONS has an arm above.
            _ => unreachable!("tool {name} has a definition and no call"),
        })
    }

    /// Sets a plain variable, refusing a key that holds a secret: turning it plain would put
    /// a value the model chose in place of a credential, and show the new one in clear.
    /// (Checked first, then written: a secret created in between is replaced, as by
    /// `secrets set --plain`; the audit shows both.)
    fn set_plain(&self, args: SetPlainArgs) -> Result<Outcome, Outcome> {
        let client = &self.client;
        let (existing, what) = match &args.agent {
            Some(agent) => (
                client.describe_secret(agent, &args.key),
                format!("{agent}/{}", args.key),
            ),
            None => (
                client.describe_var(&args.key),
                format!("project variable {}", args.key),
            ),
        };
        match existing {
            Ok(meta) if meta.kind == Kind::Secret => {
                let command = match &args.agent {
                    Some(agent) => format!(
                        "agent-vault secrets set {} {} --stdin",
                        shell_quote(agent),
                        shell_quote(&args.key)
                    ),
                    None => format!("agent-vault vars set {} --stdin", shell_quote(&args.key)),
                };
                return Err(Outcome::refused(format!(
                    "Refused: {what} is a secret. A plain value set through MCP would replace \
                     the credential with one the model chose, readable in clear. To change the \
                     secret, the user runs in a terminal (the value is read from standard \
                     input, never shown):\n  {command} < file-with-the-value"
                )));
            }
            Ok(_) => {}
            Err(protocol::Error::Api { code: c, .. }) if c == code::NOT_FOUND => {}
            Err(e) => return Err(store_error(e)),
        }
        let request = PutSecretRequest {
            value: Some(args.value),
            description: args.description,
            kind: Some(Kind::Plain),
            allow_dangerous_name: false,
            allow_empty_value: false,
        };
        let put: PutResponse = match &args.agent {
            Some(agent) => client.put_secret(agent, &args.key, &request),
            None => client.put_var(&args.key, &request),
        }
        .map_err(store_error)?;
        Ok(Outcome::ok(json!({
            "created": put.created,
            "changed": put.changed,
            "entry": to_value(&masked(put.secret)),
        })))
    }
}

/// `set_secret`: the command the user runs instead. A value sent anyway is not stored, not
/// echoed, and said to be exposed.
fn refuse_set_secret(arguments: &Map<String, Value>) -> Outcome {
    let agent = text_arg(arguments, "agent").map_or_else(|| "AGENT".into(), |a| shell_quote(&a));
    let key = text_arg(arguments, "key").map_or_else(|| "KEY".into(), |k| shell_quote(&k));
    let prompt = format!("agent-vault secrets set {agent} {key}");
    let command = format!("{prompt} --stdin < file-with-the-value");
    let mut text = format!(
        "Refused: agent-vault's MCP server never takes a secret's value, so that it never \
         passes through a model's context (nor its logs or transcripts). Ask the user to run, \
         in a terminal:\n  {command}\nwhich reads the value from standard input without showing \
         it, or, for a masked prompt:\n  {prompt}\n(A project-wide secret: agent-vault vars set \
         {key} --stdin.) Do not ask the user for the value here. A non-secret setting can be \
         set with set_plain_variable."
    );
    if arguments.contains_key("value") {
        text.push_str(
            "\nThe value sent with this call was discarded, not stored; if it was a real \
             credential it has been exposed to this conversation: have it rotated.",
        );
    }
    Outcome::refused(text)
}

/// `issue_token`: the command the user runs instead (the token goes to a file, never to the
/// conversation).
fn refuse_issue_token(arguments: &Map<String, Value>) -> Outcome {
    let mut scopes: Vec<String> = arguments
        .get("scopes")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(Value::as_str)
                .map(|s| format!("--scope {}", shell_quote(s)))
                .collect()
        })
        .unwrap_or_default();
    if scopes.is_empty() {
        scopes.push("--scope 'secrets:read:AGENT/*'".into());
    }
    let ttl = text_arg(arguments, "ttl").unwrap_or_else(|| "30d".into());
    Outcome::refused(format!(
        "Refused: a token is a credential, and an MCP answer would put it into a model's \
         context. Ask the user to run, in a terminal:\n  agent-vault tokens issue {} --ttl {} \
         > agent.token\nand hand the file to the agent (agent-run --token-file agent.token). \
         `list_tokens` then shows its id, and `revoke_token` can revoke it.",
        scopes.join(" "),
        shell_quote(&ttl)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tools() -> Tools {
        Tools::new(
            Client::new("http://127.0.0.1:9", None, None).expect("a client needs no connection"),
        )
    }

    fn text(result: &Value) -> &str {
        result["content"][0]["text"].as_str().expect("a text")
    }

    #[test]
    fn every_tool_has_a_schema_and_a_call() {
        let definitions = definitions();
        assert_eq!(definitions.len(), DEFINITIONS.len());
        for d in &definitions {
            assert_eq!(d["inputSchema"]["type"], "object", "{d}");
            let properties = d["inputSchema"]["properties"].as_object().expect("object");
            for required in d["inputSchema"]["required"].as_array().expect("array") {
                assert!(
                    properties.contains_key(required.as_str().expect("name")),
                    "{d}"
                );
            }
            // An unknown argument is refused by every tool: dispatch reached its arm.
            let mut arguments = Map::new();
            arguments.insert("no_such_argument".into(), json!(1));
            let name = d["name"].as_str().expect("name");
            let result = tools().call(name, arguments).expect("a known tool");
            assert_eq!(result["isError"], true, "{name}: {result}");
        }
        assert!(tools().call("no_such_tool", Map::new()).is_none());
    }

    #[test]
    fn refusals_name_the_command_and_never_echo_a_value() {
        let mut arguments = Map::new();
        arguments.insert("agent".into(), json!("support-bot"));
        arguments.insert("key".into(), json!("OPENAI_API_KEY"));
        arguments.insert("value".into(), json!("sk-hunter2-never-echoed"));
        let result = tools().call("set_secret", arguments).expect("known");
        assert_eq!(result["isError"], true);
        assert!(
            text(&result).contains("agent-vault secrets set support-bot OPENAI_API_KEY --stdin")
        );
        assert!(text(&result).contains("rotated"));
        assert!(!result.to_string().contains("hunter2"));

        let mut arguments = Map::new();
        arguments.insert("scopes".into(), json!(["secrets:read:support-bot/*"]));
        let result = tools().call("issue_token", arguments).expect("known");
        assert_eq!(result["isError"], true);
        assert!(
            text(&result).contains(
                "agent-vault tokens issue --scope 'secrets:read:support-bot/*' --ttl 30d"
            ),
            "{result}"
        );
    }

    #[test]
    fn a_wrong_typed_value_is_not_echoed() {
        let mut arguments = Map::new();
        arguments.insert("key".into(), json!("REGION"));
        arguments.insert("value".into(), json!("eu-west-1"));
        arguments.insert("description".into(), json!(["hunter2-in-a-list"]));
        let result = tools()
            .call("set_project_variable", arguments)
            .expect("known");
        assert_eq!(result["isError"], true);
        assert!(!result.to_string().contains("hunter2"), "{result}");
        let mut arguments = Map::new();
        arguments.insert("limit".into(), json!("hunter2-as-limit"));
        let result = tools().call("read_audit", arguments).expect("known");
        assert!(!result.to_string().contains("hunter2"), "{result}");
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(shell_quote("support-bot"), "support-bot");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote("secrets:read:x/*"), "'secrets:read:x/*'");
        assert_eq!(shell_quote(""), "''");
    }
}

//! `agent-vault vars …`: project-wide variables, shared by every agent.

use super::flags::VarsCommand;
use super::output::{print_entries, print_json, report_put};
use super::secrets::put_request;
use super::{connect, read_value, Result};

pub(super) fn run(cmd: VarsCommand) -> Result<()> {
    match cmd {
        VarsCommand::Set {
            key,
            value,
            description,
            plain,
            connect: c,
        } => {
            let client = connect(&c)?;
            let value = read_value(&value, &key)?;
            let response =
                client.put_var(&key, &put_request(Some(value), description, Some(plain)))?;
            report_put(c.json, &format!("project variable {key}"), &response)
        }
        VarsCommand::List { values, connect: c } => {
            let list = connect(&c)?.list_vars(values)?;
            if c.json {
                return print_json(&list);
            }
            print_entries(&list.vars);
            Ok(())
        }
        VarsCommand::Delete { key, connect: c } => {
            connect(&c)?.delete_var(&key)?;
            if c.json {
                return print_json(&serde_json::json!({"deleted": key}));
            }
            println!("deleted project variable {key}");
            Ok(())
        }
    }
}

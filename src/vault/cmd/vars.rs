//! `agent-vault vars …`: project-wide variables, shared by every agent (set, update,
//! import, list, delete: `secrets`' rules, through the same helpers).

use super::flags::VarsCommand;
use super::output::{print_entries, print_json};
use super::{connect, Result};

pub(super) fn run(cmd: VarsCommand) -> Result<()> {
    match cmd {
        VarsCommand::Set { key, set } => {
            let what = format!("project variable {key}");
            super::secrets::set(set, &key, &what, |client, req| client.put_var(&key, req))
        }
        VarsCommand::Update {
            key,
            value,
            description,
            labels,
            connect: c,
        } => super::secrets::update(
            super::secrets::Update {
                key: &key,
                what: &format!("project variable {key}"),
                value: &value,
                description,
                labels: &labels,
                connect: &c,
            },
            |client| client.describe_var(&key),
            |client, req| client.put_var(&key, req),
        ),
        VarsCommand::Import { import } => {
            super::secrets::import(import, |client, req| client.import_vars(req))
        }
        VarsCommand::List {
            values,
            tags,
            connect: c,
        } => {
            let query = crate::protocol::wire::ListQuery {
                values: Some(values),
                tag: super::secrets::tag_filter(&tags),
            };
            let list = connect(&c)?.list_vars(&query)?;
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

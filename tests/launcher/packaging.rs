//! The packaging recipes' contracts (issue 15): what `packaging/` promises, run for real.

use std::os::unix::fs::PermissionsExt;

use serde_json::json;

use crate::common::vault::start_vault;
use crate::common::{agent_run, Dir, Mode};

/// The systemd template unit passes the token as `LoadCredential=agent-run-token:...`:
/// agent-run finds it in `$CREDENTIALS_DIRECTORY` (a 0400 file, as systemd lays it out)
/// with no flag and no variable, and reads the store with it.
#[test]
fn reads_its_token_from_the_systemd_credentials_directory() {
    let vault = start_vault();
    vault.set("support-bot", "API_KEY", "value-cred-000001");
    let (_, token) = vault.issue(&["secrets:read:support-bot/*"], Some(json!("1h")));
    let dir = Dir::new("systemd-credential");
    let creds = dir.join("credentials");
    std::fs::create_dir(&creds).unwrap();
    let file = creds.join("agent-run-token");
    std::fs::write(&file, &token).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o400)).unwrap();
    std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o500)).unwrap();

    let args = [
        "--store",
        &vault.addr,
        "--once",
        "--",
        "sh",
        "-c",
        "echo \"API_KEY=$API_KEY\"",
    ];
    let out = agent_run(Mode::Plain, args)
        .env("CREDENTIALS_DIRECTORY", creds.to_str().unwrap())
        .run(&dir);
    out.assert_code(0);
    assert!(
        out.stdout.contains("API_KEY=value-cred-000001"),
        "{}",
        out.description
    );
    assert!(!out.stderr.contains(&token), "{}", out.description);
}

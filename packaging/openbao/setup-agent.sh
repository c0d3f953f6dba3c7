#!/usr/bin/env bash
# One agent on OpenBao/Vault: a read-only policy on its KV path and an AppRole bound to that
# policy alone. Prints the role id and writes a fresh secret id to a file for agent-run.
#
#   setup-agent.sh AGENT MOUNT/PATH SECRET_ID_FILE [ROLE_ID_FILE]
#   e.g. setup-agent.sh support-bot secret/agents/support-bot /run/agent-run/secret-id
#
# Needs `bao` (or `vault`, via BAO_BIN=vault) on PATH, BAO_ADDR/VAULT_ADDR and an admin
# token in BAO_TOKEN/VAULT_TOKEN. Idempotent: re-running rotates the secret id only.
# Token lifetimes come from TOKEN_TTL / TOKEN_MAX_TTL (default 1h / 24h); agent-run renews
# at 2/3 of the TTL and logs in again when the token reaches its max TTL.
set -euo pipefail

agent=${1:?usage: setup-agent.sh AGENT MOUNT/PATH SECRET_ID_FILE [ROLE_ID_FILE]}
kv_path=${2:?usage: setup-agent.sh AGENT MOUNT/PATH SECRET_ID_FILE [ROLE_ID_FILE]}
secret_id_file=${3:?usage: setup-agent.sh AGENT MOUNT/PATH SECRET_ID_FILE [ROLE_ID_FILE]}
role_id_file=${4:-}
bao=${BAO_BIN:-bao}
approle_mount=${APPROLE_MOUNT:-approle}
here=$(cd "$(dirname "$0")" && pwd)

mount=${kv_path%%/*}
agent_path=${kv_path#*/}
# One segment, as OpenBao's policy and role names are: a hierarchical agent-vault agent
# (production/openai) is given as production.openai (`agent-vault migrate openbao` prints it so).
case "$agent" in *[!A-Za-z0-9_.-]*|'') echo "agent name must be [A-Za-z0-9_.-]+ (production/openai: production.openai)" >&2; exit 2 ;; esac
[ "$mount" != "$kv_path" ] || { echo "MOUNT/PATH needs a mount and a path: $kv_path" >&2; exit 2; }

# AppRole auth, once per cluster. Two setups running at once may both find it missing: the
# loser's "already in use" is success, so check again before giving up.
approle_enabled() { "$bao" auth list -format=json | grep "\"$approle_mount/\"" >/dev/null; }
if ! approle_enabled; then
    "$bao" auth enable -path="$approle_mount" approle >/dev/null 2>&1 || approle_enabled ||
        "$bao" auth enable -path="$approle_mount" approle >/dev/null
fi

sed -e "s|@MOUNT@|$mount|g" -e "s|@AGENT_PATH@|$agent_path|g" "$here/agent-policy.hcl.tmpl" |
    "$bao" policy write "agent-$agent" - >/dev/null

"$bao" write "auth/$approle_mount/role/$agent" \
    token_policies="agent-$agent" \
    token_ttl="${TOKEN_TTL:-1h}" token_max_ttl="${TOKEN_MAX_TTL:-24h}" \
    secret_id_ttl=0 token_type=service >/dev/null

role_id=$("$bao" read -field=role_id "auth/$approle_mount/role/$agent/role-id")
umask 077
"$bao" write -f -field=secret_id "auth/$approle_mount/role/$agent/secret-id" >"$secret_id_file"
if [ -n "$role_id_file" ]; then
    printf '%s\n' "$role_id" >"$role_id_file"
fi
echo "$role_id"

#!/bin/sh
# An example agent (stands in for `node agent.js`): reports which secrets it was started
# with, as masked previews, and runs until it is told to stop.
mask() {
    value=$1
    if [ "${#value}" -ge 12 ]; then printf '****%s' "${value#"${value%????}"}"; elif [ -n "$value" ]; then printf '****'; else printf '<unset>'; fi
}
echo "agent $$ started: OPENAI_API_KEY=$(mask "$OPENAI_API_KEY") STRIPE_KEY=$(mask "$STRIPE_KEY") REGION=${REGION:-<unset>}"
trap 'echo "agent $$ got SIGTERM, exiting"; exit 0' TERM
trap 'echo "agent $$ got SIGINT, exiting"; exit 0' INT
while :; do sleep 1 & wait $!; done

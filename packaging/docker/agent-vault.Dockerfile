# syntax=docker/dockerfile:1
# agent-vault, the store, as a `scratch` image: the static binary, a numeric non-root user and
# its data directory as a volume. Build from the repository root:
#
#   docker build -f packaging/docker/agent-vault.Dockerfile -t agent-vault .
#
# The master key stays out of the data volume: pass it as a Docker secret and point
# --master-key-file at it (the flag comes with the operations work of issue 15, branch
# i15-ops; until it is merged the store takes the key from AGENT_VAULT_MASTER_KEY or
# master.key in the data directory). Initialise the volume once:
#
#   docker run --rm -v agent-vault-data:/var/lib/agent-vault agent-vault \
#       init --data-dir /var/lib/agent-vault --admin-token-file /var/lib/agent-vault/admin-token
#
# The server listens on 0.0.0.0:8377 inside the container: give it --tls-cert/--tls-key, or
# keep the port on a private network behind a TLS-terminating proxy (--allow-insecure-http).

FROM rust:1-bookworm AS build
# The git revision --version prints (a build context has no .git of a worktree, or none at
# all): docker build --build-arg AGENT_RUN_GIT_REV=$(git rev-parse --short=12 HEAD) ...
ARG AGENT_RUN_GIT_REV=unknown
# python3 writes the SBOM (scripts/sbom.py).
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends python3 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN out=$(AGENT_RUN_RELEASE= bash scripts/build-release.sh) \
 && mkdir -p /out/data \
 && cp "$out/agent-vault" /out/

FROM scratch AS agent-vault
COPY --from=build /out/agent-vault /usr/local/bin/agent-vault
# An empty directory owned by the runtime user: a new named volume takes its owner and mode.
COPY --from=build --chown=65532:65532 --chmod=0700 /out/data /var/lib/agent-vault
USER 65532:65532
VOLUME ["/var/lib/agent-vault"]
EXPOSE 8377
ENV AGENT_VAULT_DATA_DIR=/var/lib/agent-vault \
    AGENT_VAULT_LISTEN=0.0.0.0:8377
ENTRYPOINT ["/usr/local/bin/agent-vault"]
CMD ["serve", "--master-key-file", "/run/secrets/master-key"]

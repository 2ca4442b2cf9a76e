# okta-pendo-sync in a container: `run` as PID 1, config and state as volumes, secrets as files.
#
#   docker build -t okta-pendo-sync .
#   docker run -d --name okta-pendo-sync \
#     -v /srv/okta-pendo-sync/config.toml:/etc/okta-pendo-sync/config.toml:ro \
#     -v /srv/okta-pendo-sync/secrets:/run/secrets:ro \
#     -v okta-pendo-sync-state:/var/lib/okta-pendo-sync \
#     okta-pendo-sync
#
# In config.toml: api_token_file = "/run/secrets/okta-token",
# integration_key_file = "/run/secrets/pendo-key", [server] listen = "127.0.0.1:9184" for the
# health check, which runs inside the container. To scrape /metrics from outside, listen on the
# container's own interface address (not 0.0.0.0) and publish the port.

ARG RUST_VERSION=1.95
ARG DEBIAN=bookworm
# The runtime base; scripts/container-smoke.sh substitutes a locally made Debian image.
ARG RUNTIME_BASE=debian:bookworm-slim

FROM rust:${RUST_VERSION}-slim-${DEBIAN} AS build
WORKDIR /src
RUN apt-get update && apt-get install -y --no-install-recommends cmake clang && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cargo build --release --locked --bin okta-pendo-sync \
 && install -m 0755 target/release/okta-pendo-sync /usr/local/bin/okta-pendo-sync

FROM ${RUNTIME_BASE} AS runtime-base
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/okta-pendo-sync --shell /usr/sbin/nologin okta-pendo-sync \
 && install -d -o okta-pendo-sync -g okta-pendo-sync -m 0700 /var/lib/okta-pendo-sync \
 && install -d -m 0755 /etc/okta-pendo-sync
COPY config/okta-pendo-sync.toml /usr/share/doc/okta-pendo-sync/config.example.toml
USER okta-pendo-sync
VOLUME ["/var/lib/okta-pendo-sync"]
ENV OKTA_PENDO_SYNC_CONFIG=/etc/okta-pendo-sync/config.toml
EXPOSE 9184
# Needs [server] listen in the config; /healthz answers 200 while the scheduler is alive.
HEALTHCHECK --interval=60s --timeout=5s --start-period=30s --retries=3 \
  CMD curl -fsS http://127.0.0.1:9184/healthz || exit 1
# The binary is PID 1: it handles SIGTERM itself (records the run, exits 0).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/okta-pendo-sync"]
CMD ["run"]

# A binary built outside (scripts/container-smoke.sh): `--target prebuilt`, with the binary at
# ./okta-pendo-sync in the build context.
FROM runtime-base AS prebuilt
COPY okta-pendo-sync /usr/local/bin/okta-pendo-sync

# The default image: the binary built in the first stage.
FROM runtime-base AS runtime
COPY --from=build /usr/local/bin/okta-pendo-sync /usr/local/bin/okta-pendo-sync

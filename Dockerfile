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
# health check, which runs inside the container (`okta-pendo-sync health`). To scrape /metrics
# from outside, listen on the container's own interface address (not 0.0.0.0) and publish the
# port.
#
# The runtime is distroless's static image (CA certificates, a non-root user 65532, time zones;
# no shell, no package manager, no C library) plus the C libraries the binary links, copied from
# the build stage by scripts/runtime-libs.sh (glibc and libgcc_s: about 2.5 MB, where the cc
# image would bring libssl and libstdc++ too). The binary is the only program in it.

ARG RUST_VERSION=1.95
ARG DEBIAN=bookworm
# The runtime base; scripts/container-smoke.sh substitutes an equivalent one made from local
# files. Debian 12, as the build stage: the libraries copied from it match.
ARG RUNTIME_BASE=gcr.io/distroless/static-debian12:nonroot

FROM rust:${RUST_VERSION}-slim-${DEBIAN} AS build
WORKDIR /src
COPY . .
# ring and the bundled SQLite need only the C compiler the image has: no cmake, no clang.
RUN cargo build --release --locked --bin okta-pendo-sync \
 && install -m 0755 target/release/okta-pendo-sync /usr/local/bin/okta-pendo-sync \
 && install -d -m 0700 /state \
 && scripts/runtime-libs.sh /usr/local/bin/okta-pendo-sync /runtime-libs

FROM ${RUNTIME_BASE} AS runtime-base
COPY config/okta-pendo-sync.toml /usr/share/doc/okta-pendo-sync/config.example.toml
# distroless's nonroot user; by number, so that any base will do.
USER 65532:65532
ENV OKTA_PENDO_SYNC_CONFIG=/etc/okta-pendo-sync/config.toml
EXPOSE 9184
# Needs [server] listen in the config; /healthz answers 200 while the scheduler is alive. The
# probe is the binary itself: it reads only server.listen and exits 0 or 1.
HEALTHCHECK --interval=60s --timeout=5s --start-period=30s --retries=3 \
  CMD ["/usr/local/bin/okta-pendo-sync", "health", "--timeout", "3s"]
# The binary is PID 1: it handles SIGTERM itself (records the run, exits 0).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/okta-pendo-sync"]
CMD ["run"]

# A binary built outside (scripts/container-smoke.sh): `--target prebuilt`, with the binary at
# ./okta-pendo-sync, its libraries under ./runtime-libs (scripts/runtime-libs.sh) and an empty
# folder ./state (mode 0700) in the build context.
FROM runtime-base AS prebuilt
COPY runtime-libs/ /
COPY --chown=65532:65532 state /var/lib/okta-pendo-sync
VOLUME ["/var/lib/okta-pendo-sync"]
COPY okta-pendo-sync /usr/local/bin/okta-pendo-sync

# The default image: the binary built in the first stage, and the state folder owned by the
# runtime user.
FROM runtime-base AS runtime
COPY --from=build /runtime-libs/ /
COPY --from=build --chown=65532:65532 /state /var/lib/okta-pendo-sync
VOLUME ["/var/lib/okta-pendo-sync"]
COPY --from=build /usr/local/bin/okta-pendo-sync /usr/local/bin/okta-pendo-sync

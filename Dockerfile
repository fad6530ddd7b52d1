# syntax=docker/dockerfile:1
# The one Switchyard image: every role is `switchyard <role>` (router, subgraph, worker,
# migrate; `dev` for a demo). The Helm chart (charts/switchyard) runs it non-root with a
# read-only root filesystem and mounts the router's config, supergraph and manifest.
#
#   docker build -t switchyard:0.1.0 .
#
# Build stage: the toolchain pinned in docs (Rust 1.95) and protoc, which apollo-router's build
# needs. The explorer's web bundle is committed (router/explorer/dist), so no Node.js here.
FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends protobuf-compiler \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY bench bench
COPY cli cli
COPY router router
COPY subgraphs subgraphs
COPY wire wire
COPY schema schema
COPY persisted-queries persisted-queries
COPY supergraph.yaml ./
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p switchyard \
 && cp target/release/switchyard /usr/local/bin/switchyard

# Runtime stage: Debian slim (glibc, as built) with CA certificates for APNs, FCM, JWKS and
# TLS to PostgreSQL and Redis; nothing else.
FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 switchyard \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /srv/switchyard --shell /usr/sbin/nologin switchyard
COPY --from=build /usr/local/bin/switchyard /usr/local/bin/switchyard
WORKDIR /srv/switchyard
# The defaults `switchyard router` and `switchyard dev` read (the chart mounts its own).
COPY router/router.yaml router/router.production.yaml router/
COPY schema schema
COPY persisted-queries persisted-queries
COPY supergraph.yaml ./
USER 10001:10001
EXPOSE 4000 8088 9090
ENTRYPOINT ["/usr/local/bin/switchyard"]
CMD ["router", "--config", "router/router.production.yaml"]

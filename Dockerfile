# syntax=docker/dockerfile:1
# The poolnet-operator image, for release pipelines (no container engine runs in this repo's
# CI; README.md "Install on AKS" says what a pipeline runs). Two stages:
#   build:   `cargo build --release --locked -p poolnet-operator` for the musl target, so the
#            binary is fully static (rustls + ring: no OpenSSL, no libc at run time);
#   runtime: `scratch` with that binary, the CA bundle and nothing else; it runs as the
#            unprivileged uid/gid 65532 the chart's Pod Security settings expect.
#
#   docker buildx build --platform linux/amd64,linux/arm64 \
#     --build-arg VERSION=0.1.0 --build-arg REVISION="$(git rev-parse HEAD)" \
#     --build-arg CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)" -t <registry>/poolnet-operator:0.1.0 .
#
# The builder runs on the target platform, so the target triple is its own architecture with
# musl. Under emulation (QEMU) the foreign architecture builds many times slower; a pipeline
# with native amd64 and arm64 builders (buildx --append, or one job per platform and
# `docker buildx imagetools create`) avoids that.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add "$(uname -m)-unknown-linux-musl"
# ring's C and assembly go through musl's gcc wrapper on either architecture.
ENV CC_x86_64_unknown_linux_musl=musl-gcc \
    CC_aarch64_unknown_linux_musl=musl-gcc
WORKDIR /src
# The whole workspace: cargo needs every member's manifest to resolve the locked graph.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    target="$(uname -m)-unknown-linux-musl" \
 && cargo build --release --locked -p poolnet-operator --target "$target" \
 && install -D -m 0755 "target/$target/release/poolnet-operator" /out/poolnet-operator \
 && /out/poolnet-operator --version

FROM scratch AS runtime
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
ARG SOURCE=""
LABEL org.opencontainers.image.title="poolnet-operator" \
      org.opencontainers.image.description="Declarative network exposure of AKS node pools: a Kubernetes operator driving NSGs, ASGs, public IP prefixes, route tables and agent pools through ARM" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0"
# The Kubernetes client's TLS stack loads the system CA bundle (rustls-native-certs finds it
# at this path); ARM and Entra ID are reached with rustls' bundled roots.
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/poolnet-operator /poolnet-operator
# Numeric, so `runAsNonRoot: true` can verify it without an /etc/passwd.
USER 65532:65532
EXPOSE 9090 9443
ENTRYPOINT ["/poolnet-operator"]

# syntax=docker/dockerfile:1
#
# The controller image: `docker build -t workload-variant-autoscaler:0.1.0 .`
# Stage 1 builds the dependencies alone (a layer that changes only with Cargo.lock), stage 2
# the project, and the runtime is distroless, running as the non-root user 65532.
#
# Base images are pinned by digest, so a rebuild uses the bytes that were reviewed, not
# whatever the tag points at that day. To move to a newer image, look its digest up
# (`docker buildx imagetools inspect rust:1.95-bookworm`) and change it here, or override the
# argument at build time.

ARG BUILD_IMAGE=rust:1.95-bookworm@sha256:6258907abe69656e41cd992e0b705cdcfabcbbe3db374f92ed2d47121282d4a1
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot@sha256:9dac0a79194e45a7da0158a9c6da57b217585af0786db3845d1f0ec1a0dd182f

FROM ${BUILD_IMAGE} AS build
WORKDIR /build

# Dependencies: the manifests and the lock file with stub sources, so this layer is reused
# until a dependency changes.
COPY Cargo.toml Cargo.lock ./
COPY actors/Cargo.toml actors/Cargo.toml
COPY sim/Cargo.toml sim/Cargo.toml
COPY storage/Cargo.toml storage/Cargo.toml
# The build script compiles KEDA's external scaler protocol (pure Rust, no protoc).
COPY build.rs build.rs
COPY proto proto
RUN mkdir -p src benches actors/src actors/benches sim/src storage/src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs actors/src/lib.rs sim/src/lib.rs storage/src/lib.rs \
 && echo 'fn main() {}' > benches/inventory.rs \
 && echo 'fn main() {}' > benches/soak.rs \
 && echo 'fn main() {}' > benches/scale.rs \
 && echo 'fn main() {}' > actors/benches/cycle.rs \
 && cargo build --release --locked --bin wva \
 && rm -rf src benches actors/src actors/benches sim/src storage/src

# The project itself.
COPY src src
COPY actors/src actors/src
COPY sim/src sim/src
COPY storage/src storage/src
COPY benches benches
COPY actors/benches actors/benches
# Stubs built above are older than the sources; touching makes cargo rebuild the four crates.
RUN touch src/main.rs src/lib.rs actors/src/lib.rs sim/src/lib.rs storage/src/lib.rs \
 && cargo build --release --locked --bin wva \
 && install -D -m 0755 target/release/wva /out/wva \
 && mkdir -p /out/var/lib/wva

FROM ${RUNTIME_IMAGE}
COPY --from=build /out/wva /usr/local/bin/wva
# The decision log's directory; the chart mounts a volume here.
COPY --from=build --chown=65532:65532 /out/var/lib/wva /var/lib/wva
USER 65532:65532
# The allocator returns freed memory promptly and commits as it goes: a resident size that tracks
# what is live (src/allocator.rs has the figures; tests/dockerfile.rs checks this list).
ENV MIMALLOC_PURGE_DELAY=10 \
    MIMALLOC_ARENA_EAGER_COMMIT=0
EXPOSE 8081 8443
ENTRYPOINT ["/usr/local/bin/wva"]
CMD ["run"]

# graftd from Debian packages only (deploy/install-deps.sh).
#   docker build -t graft .                       # Debian 12, LibTorch 1.13
#   docker build --build-arg DEBIAN=13 -t graft . # Debian 13, LibTorch 2.6
ARG DEBIAN=12

FROM debian:${DEBIAN} AS build
WORKDIR /src
COPY deploy/install-deps.sh deploy/install-deps.sh
RUN bash deploy/install-deps.sh && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DGRAFT_BUILD_TESTS=OFF -DGRAFT_BUILD_BENCH=OFF \
 && cmake --build build -j"$(nproc)" --target graftd graft \
 && mkdir -p /out && cp build/server/graftd build/client/graft /out/ \
 # The runtime packages: those that own the shared libraries the two binaries
 # load (deploy/check-runtime.sh proves the same list in a bare root).
 && bash deploy/runtime-packages.sh /out/graftd /out/graft > /out/runtime-packages.txt

FROM debian:${DEBIAN}
COPY --from=build /out/runtime-packages.txt /tmp/runtime-packages.txt
# Runtime libraries only: no compiler, headers, Python or test packages.
RUN apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      ca-certificates $(cat /tmp/runtime-packages.txt) \
 && rm -rf /var/lib/apt/lists/* /tmp/runtime-packages.txt
COPY --from=build /out/graftd /usr/local/bin/graftd
COPY --from=build /out/graft /usr/local/bin/graft
# graftd runs as an unprivileged user that owns only its data directory.
# /var/lib/graft-artifacts: the shared volume of a scale-out (--artifact_dir).
RUN useradd --system --uid 10001 --home-dir /var/lib/graft --shell /usr/sbin/nologin graft \
 && mkdir -p /var/lib/graft /var/lib/graft-artifacts && chown graft:graft /var/lib/graft /var/lib/graft-artifacts
ENV GRAFT_DATA_DIR=/var/lib/graft
VOLUME /var/lib/graft
USER 10001:10001
EXPOSE 50051 8000 9464
HEALTHCHECK --interval=10s --timeout=5s CMD ["graft", "health"]
ENTRYPOINT ["graftd"]
# In a container graftd must listen beyond loopback; tokens stay on (the first
# start writes /var/lib/graft/admin.token).
CMD ["--host=0.0.0.0"]

# graftd on Debian 12, built from Debian packages only (deploy/install-deps.sh).
FROM debian:12 AS build
WORKDIR /src
COPY deploy/install-deps.sh deploy/install-deps.sh
RUN bash deploy/install-deps.sh && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DGRAFT_BUILD_TESTS=OFF -DGRAFT_BUILD_BENCH=OFF \
 && cmake --build build -j"$(nproc)" --target graftd graft

FROM debian:12
COPY deploy/install-deps.sh /tmp/install-deps.sh
# Runtime libraries come with the same packages the build used.
RUN bash /tmp/install-deps.sh && rm -rf /var/lib/apt/lists/* /tmp/install-deps.sh
COPY --from=build /src/build/server/graftd /usr/local/bin/graftd
COPY --from=build /src/build/client/graft /usr/local/bin/graft
# graftd runs as an unprivileged user that owns only its data directory.
RUN useradd --system --uid 10001 --home-dir /var/lib/graft --shell /usr/sbin/nologin graft \
 && mkdir -p /var/lib/graft && chown graft:graft /var/lib/graft
ENV GRAFT_DATA_DIR=/var/lib/graft
VOLUME /var/lib/graft
USER 10001:10001
EXPOSE 50051 9464
HEALTHCHECK --interval=10s --timeout=5s CMD ["graft", "health"]
ENTRYPOINT ["graftd"]
# In a container graftd must listen beyond loopback; tokens stay on (the first
# start writes /var/lib/graft/admin.token).
CMD ["--host=0.0.0.0"]

# One image for the three programs: discovery, node and bench.
# Built from Debian 12 packages only, like the development machines.
FROM debian:12-slim AS build
# scripts/deps.sh build's list, in a layer of its own for the build cache.
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends \
        gcc make pkg-config libc6-dev libuv1-dev libwslay-dev libjansson-dev \
        node-llhttp libssl-dev libsqlite3-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN make BUILD=/out OPT="-O2 -g" programs

FROM debian:12-slim
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends \
        libuv1 libwslay1 libjansson4 libssl3 libsqlite3-0 curl \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/bin/discovery /usr/local/bin/dchat-discovery
COPY --from=build /out/bin/node /usr/local/bin/dchat-node
COPY --from=build /out/bin/bench /usr/local/bin/dchat-bench
# Not root: the programs need no privilege. A named volume on /data takes
# this ownership when it is first created.
RUN useradd --system --home-dir /data --shell /usr/sbin/nologin dchat \
    && mkdir -p /data && chown dchat:dchat /data
USER dchat
VOLUME /data
# client port (WebSocket + HTTP), sync port, discovery
EXPOSE 9000 9100 8080
# The node, configured by NODE_* variables (dchat-node --help); compose.yaml
# runs discovery and the bench from the same image with their own command.
CMD ["dchat-node", "--data-dir", "/data"]

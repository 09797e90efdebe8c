# Parley for deployment: Debian sid has every engine as a package (scripts/packages.txt is the
# same list the sysroot setup installs).
FROM debian:sid
COPY scripts/packages.txt /tmp/packages.txt
RUN apt-get -o Acquire::Check-Valid-Until=false update \
 && grep -v '^\s*#' /tmp/packages.txt | grep -v '^\s*$' \
    | xargs apt-get install -y --no-install-recommends \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/parley
COPY . .
RUN touch /.parley-sysroot && scripts/setup && cmake -S . -B build -G Ninja -DBUILD_TESTING=OFF && ninja -C build parley
# The Silero VAD model for hands-free turns comes from this npm package (no browser needed).
RUN npm ci --omit=dev --no-audit --no-fund --loglevel=error
EXPOSE 8000
# One image for every role of a cluster (docs/deploy.md): this command is a Parley node; give
# another command for llama-server, HAProxy (deploy/haproxy.cfg) or build/parley rpc-worker.
# Listening beyond loopback needs an API key: docker run -e PARLEY_API_KEY=... (see docs/configuration.md).
CMD ["sh", "-c", "exec build/parley serve --host 0.0.0.0 --api-key \"${PARLEY_API_KEY:?set PARLEY_API_KEY}\" ${PARLEY_ARGS:-}"]

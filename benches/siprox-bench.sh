#!/usr/bin/env bash
# Runs siprox in the foreground as the bench harness's PROXY_CMD:
#   PROXY_CMD="$PWD/benches/siprox-bench.sh" ../shared/bench/run-kamailio.sh call
# It writes a config and a route script for the harness's backends ($BACKEND_PORTS) into
# $RUN_DIR and execs the release binary (build it first: cargo build --release).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${SIPROX_BIN:-$here/../target/release/siprox}
dir=${RUN_DIR:-$(mktemp -d)}
backends=""
for p in ${BACKEND_PORTS:-5081 5082}; do backends="$backends\"sip:127.0.0.1:$p\", "; done
{ echo "fn backends() { [${backends%, }] }"; cat "$here/lb.rhai"; } > "$dir/lb.rhai"
cat > "$dir/siprox.toml" <<TOML
[core]
listen = ["udp:127.0.0.1:5060"]
script = "lb.rhai"
workers = ${SIPROX_WORKERS:-0}
log_level = "warn"

[mi]
listen = ""   # no management interface: the bench must not depend on port 8888 being free
TOML
exec "$bin" run -c "$dir/siprox.toml"

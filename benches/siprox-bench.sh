#!/usr/bin/env bash
# Runs siprox in the foreground as the bench harness's PROXY_CMD:
#   PROXY_CMD="$PWD/benches/siprox-bench.sh" ../shared/bench/run-kamailio.sh call
# It writes a config and a route script for the harness's backends ($BACKEND_PORTS) into
# $RUN_DIR and execs the release binary (build it first: cargo build --release).
#   SIPROX_ROUTE=ds (default)  benches/lb.rhai: dispatcher set 1, round robin, provisioned
#                              into a fresh SQLite database with `siprox ctl dispatcher add`
#   SIPROX_ROUTE=static        benches/lb-static.rhai: round robin over a list in the script
#   SIPROX_ROUTE=seed000       scripts/lb.rhai, seed 000's route: load_balance("1","pstn","1")
#                              with a dialog per call, written to the SQLite `dialog` table as
#                              it changes (db_mode $SIPROX_DLG_DB_MODE, default 1 as the seed);
#                              backends provisioned into `load_balancer` with pstn=100000
#   SIPROX_ROUTE=registrar     benches/registrar.rhai, the harness's kamailio-registrar.cfg:
#                              save/lookup, usrloc in memory (working mode single-instance-no-db)
#   SIPROX_ROUTE=registrar-auth the same with www_authorize/www_challenge (qop auth) in front of
#                              save; every user of $RUN_DIR/users.csv provisioned into the
#                              subscriber table with password "benchpw" (benches/register-auth.sh)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${SIPROX_BIN:-$here/../target/release/siprox}
dir=${RUN_DIR:-$(mktemp -d)}
route=${SIPROX_ROUTE:-ds}
ports=${BACKEND_PORTS:-5081 5082}
if [ "$route" = static ]; then
  backends=""
  for p in $ports; do backends="$backends\"sip:127.0.0.1:$p\", "; done
  { echo "fn backends() { [${backends%, }] }"; cat "$here/lb-static.rhai"; } > "$dir/lb.rhai"
elif [ "$route" = seed000 ]; then
  cp "$here/../scripts/lb.rhai" "$dir/lb.rhai"
elif [ "$route" = registrar ] || [ "$route" = registrar-auth ]; then
  auth=false; [ "$route" = registrar-auth ] && auth=true
  { echo "fn auth_on() { $auth }"; cat "$here/registrar.rhai"; } > "$dir/lb.rhai"
else
  cp "$here/lb.rhai" "$dir/lb.rhai"
fi
rm -f "$dir/bench.db"
cat > "$dir/siprox.toml" <<TOML
[core]
listen = ["udp:127.0.0.1:5060"]
script = "lb.rhai"
workers = ${SIPROX_WORKERS:-0}
log_level = "warn"

[db]
url = "sqlite://$dir/bench.db"

[mi]
listen = ""   # no management interface: the bench must not depend on port 8888 being free

[dialog]
db_mode = ${SIPROX_DLG_DB_MODE:-1}

[load_balancer]
probing_interval = 0   # the bench's backends do not answer OPTIONS

[auth]
calculate_ha1 = true   # the bench's subscribers carry plaintext passwords, as Kamailio's do
reload_interval = 0

[registrar]
max_expires = 7200     # as kamailio-registrar.cfg
TOML
if [ "$route" = seed000 ]; then
  "$bin" migrate -c "$dir/siprox.toml" > /dev/null
  for p in $ports; do
    sqlite3 "$dir/bench.db" "INSERT INTO load_balancer (group_id, dst_uri, resources) VALUES (1, 'sip:127.0.0.1:$p', 'pstn=100000')"
  done
elif [ "$route" = registrar-auth ]; then
  "$bin" migrate -c "$dir/siprox.toml" > /dev/null
  # One subscriber per AoR of the injection file (user;domain), password "benchpw".
  { echo "BEGIN;"
    tail -n +2 "$RUN_DIR/users.csv" | awk -F';' '{printf "INSERT INTO subscriber (username, domain, password) VALUES (\x27%s\x27, \x27%s\x27, \x27benchpw\x27);\n", $1, $2}'
    echo "COMMIT;"; } | sqlite3 "$dir/bench.db"
elif [ "$route" = registrar ]; then
  :
elif [ "$route" != static ]; then
  "$bin" migrate -c "$dir/siprox.toml" > /dev/null
  for p in $ports; do
    "$bin" ctl -c "$dir/siprox.toml" dispatcher add 1 "sip:127.0.0.1:$p" > /dev/null 2>&1 || true
  done
fi
exec "$bin" run -c "$dir/siprox.toml"

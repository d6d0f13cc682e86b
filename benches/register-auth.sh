#!/usr/bin/env bash
# REGISTER throughput with digest authentication, Kamailio then siprox, in one run of the
# shared harness (../shared/bench/run-kamailio.sh). The harness has no authenticated REGISTER
# scenario, so this copies it to a scratch folder with benches/uac-register-auth.xml in the
# place of scenarios/uac-register.xml, and runs its `register` step for each proxy:
#   Kamailio: benches/kamailio-registrar-auth.cfg (auth_db over an indexed SQLite table,
#             KAM_AUTH_DB=text for db_text; calculate_ha1) via benches/kamailio-auth.sh
#   siprox:   benches/siprox-bench.sh with SIPROX_ROUTE=registrar-auth
# Each user of the injection file is a subscriber with password benchpw; qop=auth on both.
# Usage: RATES="1000 2000" DURATION=8 benches/register-auth.sh   (build siprox --release first)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
harness=${HARNESS:-$here/../../shared/bench}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$harness"/. "$work/"
cp "$here/uac-register-auth.xml" "$work/scenarios/uac-register.xml"
# SIPp takes credentials from the injection file: a third field per user holding the
# [authentication …] keyword (SIPp expands keywords inside injected fields).
sed -i 's|awk .{printf "user%07d;127.0.0.1\\n", $1}.|awk '"'"'{printf "user%07d;127.0.0.1;[authentication username=user%07d password=benchpw]\\n", $1, $1}'"'"'|' "$work/run-kamailio.sh"
grep -q 'authentication username' "$work/run-kamailio.sh" || { echo "could not add credentials to the harness's users.csv" >&2; exit 2; }
export RATES=${RATES:-"1000 2000"} DURATION=${DURATION:-8}
echo "== Kamailio (auth_db over ${KAM_AUTH_DB:-sqlite})"
PROXY_CMD="$here/kamailio-auth.sh \"\$RUN_DIR\"" bash "$work/run-kamailio.sh" register
echo "== siprox (www_authorize, subscribers in memory)"
SIPROX_ROUTE=registrar-auth PROXY_CMD="$here/siprox-bench.sh" bash "$work/run-kamailio.sh" register

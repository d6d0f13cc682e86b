#!/usr/bin/env bash
# Kamailio for benches/register-auth.sh (PROXY_CMD): writes the db_text subscriber table for
# the users of $1/users.csv (password benchpw) and runs kamailio-registrar-auth.cfg in the
# foreground with the harness's worker and memory settings.
set -euo pipefail
run_dir=$1
here=$(cd "$(dirname "$0")" && pwd)
db="$run_dir/dbtext"
mkdir -p "$db"
printf 'table_name(string) table_version(int)\nsubscriber:7\n' > "$db/version"
{ echo "id(int,auto) username(string) domain(string) password(string)"
  tail -n +2 "$run_dir/users.csv" | awk -F';' '{printf "%d:%s:%s:benchpw\n", NR, $1, $2}'; } > "$db/subscriber"
exec kamailio -DD -E -f "$here/kamailio-registrar-auth.cfg" -A "DBURL=\"text://$db\"" -w "$run_dir" \
  -n "${KAM_CHILDREN:-2}" -m "${KAM_SHM:-512}" -M "${KAM_PKG:-16}"

#!/usr/bin/env bash
# Kamailio for benches/register-auth.sh (PROXY_CMD): writes the subscriber table for the users
# of $1/users.csv (password benchpw) and runs kamailio-registrar-auth.cfg in the foreground
# with the harness's worker and memory settings. KAM_AUTH_DB=sqlite (the default; package
# kamailio-sqlite-modules) keeps it in an indexed SQLite table, KAM_AUTH_DB=text in db_text.
set -euo pipefail
run_dir=$1
here=$(cd "$(dirname "$0")" && pwd)
kind=${KAM_AUTH_DB:-sqlite}
if [ "$kind" = text ]; then
  db="$run_dir/dbtext"
  mkdir -p "$db"
  printf 'table_name(string) table_version(int)\nsubscriber:7\n' > "$db/version"
  { echo "id(int,auto) username(string) domain(string) password(string)"
    tail -n +2 "$run_dir/users.csv" | awk -F';' '{printf "%d:%s:%s:benchpw\n", NR, $1, $2}'; } > "$db/subscriber"
  url="text://$db"
else
  db="$run_dir/kamailio.sqlite"
  rm -f "$db"
  { echo "BEGIN;"
    echo "CREATE TABLE version (table_name TEXT PRIMARY KEY, table_version INTEGER);"
    echo "INSERT INTO version VALUES ('subscriber', 7);"
    echo "CREATE TABLE subscriber (id INTEGER PRIMARY KEY, username TEXT, domain TEXT, password TEXT, ha1 TEXT DEFAULT '', ha1b TEXT DEFAULT '');"
    echo "CREATE UNIQUE INDEX subscriber_idx ON subscriber (username, domain);"
    tail -n +2 "$run_dir/users.csv" | awk -F';' '{printf "INSERT INTO subscriber (username, domain, password) VALUES (\x27%s\x27, \x27%s\x27, \x27benchpw\x27);\n", $1, $2}'
    echo "COMMIT;"; } | sqlite3 "$db"
  url="sqlite:///$db"   # Kamailio takes what follows "sqlite:///" as the path
fi
exec kamailio -DD -E -f "$here/kamailio-registrar-auth.cfg" -A "DBURL=\"$url\"" -A "WITH_$(echo "$kind" | tr a-z A-Z)" -w "$run_dir" \
  -n "${KAM_CHILDREN:-2}" -m "${KAM_SHM:-512}" -M "${KAM_PKG:-16}"

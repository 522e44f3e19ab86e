#!/usr/bin/env bash
# Stops what stack/up.sh started. Data stays in .stack/ (delete the folder to start afresh).
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STACK="$ROOT/.stack"
for pidfile in "$STACK"/run/*.pid; do
  [ -f "$pidfile" ] || continue
  pid=$(cat "$pidfile")
  kill "$pid" 2>/dev/null && echo "[stack] stopped $(basename "$pidfile" .pid) ($pid)"
  rm -f "$pidfile"
done
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
if [ -n "$PG_BIN" ] && [ -f "$STACK/pg/data/postmaster.pid" ]; then
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$STACK/pg/data" -m fast stop;
  else "$PG_BIN/pg_ctl" -D "$STACK/pg/data" -m fast stop; fi
fi
exit 0

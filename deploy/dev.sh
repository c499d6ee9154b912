#!/usr/bin/env bash
# The two set-up commands of the README:
#   deploy/dev.sh up     start RabbitMQ and Postgres if needed, install, run `deletion-worker up`
#   deploy/dev.sh test   start RabbitMQ and Postgres if needed, install, lint, type-check, run the tests
# Extra arguments after `test` go to pytest (e.g. `deploy/dev.sh test -m faults`).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=.venv
AMQP_HOST=127.0.0.1 AMQP_PORT=5672 PG_HOST=127.0.0.1 PG_PORT=5432

log() { printf 'dev.sh: %s\n' "$*" >&2; }

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

wait_port() {
  for _ in $(seq 1 90); do port_open "$1" "$2" && return 0; sleep 1; done
  log "nothing answers on $1:$2"; return 1
}

ensure_postgres() {
  port_open $PG_HOST $PG_PORT && return 0
  if command -v pg_ctlcluster >/dev/null 2>&1; then
    log "starting Postgres"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main start
  elif command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
    log "starting Postgres in Docker"
    docker compose -f deploy/compose.yaml up -d postgres
  elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing Postgres"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main start
  else
    log "Postgres is not running on $PG_HOST:$PG_PORT and cannot be started here"; return 1
  fi
  wait_port $PG_HOST $PG_PORT
}

ensure_rabbitmq() {
  port_open $AMQP_HOST $AMQP_PORT && return 0
  if command -v rabbitmq-server >/dev/null 2>&1; then
    log "starting RabbitMQ"
    rabbitmq-server -detached
  elif command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
    log "starting RabbitMQ in Docker"
    docker compose -f deploy/compose.yaml up -d rabbitmq
  elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing RabbitMQ"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server >/dev/null
    rabbitmq-server -detached
  else
    log "RabbitMQ is not running on $AMQP_HOST:$AMQP_PORT and cannot be started here"; return 1
  fi
  wait_port $AMQP_HOST $AMQP_PORT
  # The port opens before the node accepts logins; give it a moment to finish booting.
  command -v rabbitmqctl >/dev/null 2>&1 && timeout 60 rabbitmqctl await_startup >/dev/null 2>&1 || sleep 3
}

# The console's browser tests (tests/console) drive Debian's Chromium: Playwright's own
# browser download is not reachable from every machine, the Debian package is.
ensure_chromium() {
  [ -x /usr/bin/chromium ] && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing Chromium (the console's browser tests)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
  else
    log "no /usr/bin/chromium and no way to install it here: the console's browser tests will be skipped"
  fi
}

# uv installs exactly what uv.lock pins. It comes from PyPI through pip, into a directory of
# the venv of its own: `uv sync` removes from the venv whatever the lock does not name.
UV_VERSION=0.13.9
UV=$VENV/tools/bin/uv

ensure_uv() {
  if [ ! -x $UV ] || [ "$($UV --version | cut -d' ' -f2)" != "$UV_VERSION" ]; then
    log "installing uv $UV_VERSION"
    $VENV/bin/python -m pip install -q --upgrade --target $VENV/tools "uv==$UV_VERSION"
  fi
}

ensure_venv() {
  local stamp=$VENV/.installed
  if [ ! -x $VENV/bin/python ]; then
    log "creating $VENV"
    $PYTHON -m venv $VENV
  fi
  ensure_uv
  if [ ! -f $stamp ] || [ pyproject.toml -nt $stamp ] || [ uv.lock -nt $stamp ]; then
    log "installing the project and its dev tools, at the versions in uv.lock"
    # --locked: stop, rather than install something else, when uv.lock no longer matches
    # pyproject.toml (refresh it with `$UV lock`). Never a Python of uv's own: this one.
    UV_PROJECT_ENVIRONMENT=$VENV UV_PYTHON_DOWNLOADS=never $UV sync --locked --extra dev --python $VENV/bin/python
    touch $stamp
  fi
}

cmd=${1:-}
shift || true
case "$cmd" in
  up)
    ensure_postgres
    ensure_rabbitmq
    ensure_venv
    exec $VENV/bin/deletion-worker up "$@"
    ;;
  test)
    ensure_postgres
    ensure_rabbitmq
    ensure_venv
    ensure_chromium
    export DELETION_TEST_AMQP_URL=${DELETION_TEST_AMQP_URL:-amqp://guest:guest@$AMQP_HOST:$AMQP_PORT/}
    export DELETION_TEST_DATABASE_URL=${DELETION_TEST_DATABASE_URL:-postgresql://postgres@$PG_HOST:$PG_PORT/postgres}
    log "uv.lock"  # out of date with pyproject.toml: CI fails here, and says how to refresh it
    $UV lock --check
    log "ruff"
    $VENV/bin/ruff check .
    $VENV/bin/ruff format --check .
    log "mypy"
    $VENV/bin/mypy
    log "pytest"
    exec $VENV/bin/python -m pytest "$@"
    ;;
  *)
    echo "usage: deploy/dev.sh up|test [args]" >&2
    exit 2
    ;;
esac

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

ensure_venv() {
  local stamp=$VENV/.installed
  if [ ! -x $VENV/bin/python ]; then
    log "creating $VENV"
    $PYTHON -m venv $VENV
  fi
  if [ ! -f $stamp ] || [ pyproject.toml -nt $stamp ]; then
    log "installing the project and its dev tools"
    $VENV/bin/python -m pip install -q --upgrade pip
    $VENV/bin/python -m pip install -q -e '.[dev]'
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
    export DELETION_TEST_AMQP_URL=${DELETION_TEST_AMQP_URL:-amqp://guest:guest@$AMQP_HOST:$AMQP_PORT/}
    export DELETION_TEST_DATABASE_URL=${DELETION_TEST_DATABASE_URL:-postgresql://postgres@$PG_HOST:$PG_PORT/postgres}
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

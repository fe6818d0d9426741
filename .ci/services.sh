#!/usr/bin/env bash
# Makes sure the servers the tests need are up: Redis on 127.0.0.1:6379 and PostgreSQL on
# 127.0.0.1:5432 (trust auth, database `test`). Installs nothing when they already run.
set -uo pipefail

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  for _ in $(seq 1 50); do port_open "$1" && return 0; sleep 0.2; done
  return 1
}

if [ -n "${IDEM_REDIS_URL:-}" ]; then
  echo "services: using IDEM_REDIS_URL=$IDEM_REDIS_URL"
elif ! port_open 6379; then
  echo "services: starting redis-server on 127.0.0.1:6379"
  if ! command -v redis-server >/dev/null; then
    apt-get update -qq && apt-get install -y -qq redis-server >/dev/null
  fi
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_port 6379 || { echo "services: redis did not start" >&2; exit 1; }
fi

if [ -n "${IDEM_DATABASE_URL:-}" ]; then
  echo "services: using IDEM_DATABASE_URL=$IDEM_DATABASE_URL"
elif ! port_open 5432; then
  echo "services: starting PostgreSQL on 127.0.0.1:5432"
  if ! ls /etc/postgresql >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq postgresql >/dev/null
  fi
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
  wait_port 5432 || { echo "services: postgres did not start" >&2; exit 1; }
fi

if ! port_open 6379 && [ -z "${IDEM_REDIS_URL:-}" ]; then echo "services: redis unreachable" >&2; exit 1; fi
exit 0

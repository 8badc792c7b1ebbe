#!/usr/bin/env bash
# Source this file: it makes sure PostgreSQL and Redis answer, and exports
#   PG_ADMIN_URL   a superuser URL on the server (tests create their databases there)
#   DATABASE_URL   the development database (make dev)
#   REDIS_URL
#   PGBOUNCER_URL      a private PgBouncer in transaction mode (when pgbouncer is installed)
#   REDIS_CLUSTER_URL  a private 3+3 Redis Cluster (redis+cluster://…)
# It uses the servers at DATABASE_URL/REDIS_URL (default: 127.0.0.1:5432 and :6379). When none
# answers there, it starts private ones from the installed binaries under .local/ (gitignored),
# or stops with a message naming exactly what to install. Idempotent: run it as often as you like.

_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_local="$_root/.local"
mkdir -p "$_local"

_fail() { echo "error: $*" >&2; return 1; }

# host and port of a URL like scheme://user@host:port/db
_hostport() { local u="${1#*://}"; u="${u#*@}"; u="${u%%/*}"; u="${u%%\?*}"; echo "${u%:*} ${u##*:}"; }

_tcp_up() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

_pg_bin() {
  local b
  for b in "$(command -v "$1" 2>/dev/null)" /usr/lib/postgresql/*/bin/"$1" /usr/local/bin/"$1"; do
    [ -n "$b" ] && [ -x "$b" ] && { echo "$b"; return 0; }
  done
  return 1
}

_ensure_postgres() {
  local default="postgres://postgres@127.0.0.1:5432/postgres"
  PG_ADMIN_URL="${PG_ADMIN_URL:-$default}"
  read -r host port <<<"$(_hostport "$PG_ADMIN_URL")"
  if _tcp_up "$host" "$port"; then
    export PG_ADMIN_URL; return 0
  fi
  # Nothing there: run a private server on 55432.
  local dir="$_local/postgres" pport=55432
  PG_ADMIN_URL="postgres://postgres@127.0.0.1:$pport/postgres"
  export PG_ADMIN_URL
  _tcp_up 127.0.0.1 "$pport" && return 0
  local initdb pg_ctl
  initdb="$(_pg_bin initdb)" && pg_ctl="$(_pg_bin pg_ctl)" || \
    _fail "no PostgreSQL answers at $host:$port and initdb/pg_ctl are not installed. Install PostgreSQL (Debian: apt-get install postgresql) or set DATABASE_URL to a running server." || return 1
  local runas=()
  if [ "$(id -u)" = 0 ]; then
    # PostgreSQL refuses to run as root: use the postgres user when it exists.
    id postgres >/dev/null 2>&1 || { _fail "running as root and there is no 'postgres' user to run a private PostgreSQL"; return 1; }
    runas=(runuser -u postgres --)
    mkdir -p "$dir"; chown postgres "$dir"
  fi
  if [ ! -s "$dir/PG_VERSION" ]; then
    echo "starting a private PostgreSQL in $dir (port $pport)" >&2
    "${runas[@]}" "$initdb" -D "$dir" -U postgres --auth=trust >/dev/null || { _fail "initdb failed"; return 1; }
  fi
  "${runas[@]}" "$pg_ctl" -D "$dir" -l "$dir/server.log" -w -o "-p $pport -k /tmp -c listen_addresses=127.0.0.1" start >/dev/null \
    || { _fail "private PostgreSQL did not start; see $dir/server.log"; return 1; }
}

_ensure_redis() {
  REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"
  read -r host port <<<"$(_hostport "$REDIS_URL")"
  if _tcp_up "$host" "$port"; then export REDIS_URL; return 0; fi
  local rport=56379
  REDIS_URL="redis://127.0.0.1:$rport"
  export REDIS_URL
  _tcp_up 127.0.0.1 "$rport" && return 0
  command -v redis-server >/dev/null 2>&1 || \
    { _fail "no Redis answers at $host:$port and redis-server is not installed. Install Redis (Debian: apt-get install redis-server) or set REDIS_URL to a running server."; return 1; }
  echo "starting a private Redis on port $rport" >&2
  mkdir -p "$_local/redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port "$rport" --save "" --appendonly no \
    --dir "$_local/redis" --logfile "$_local/redis/redis.log" --pidfile "$_local/redis/redis.pid" >/dev/null \
    || { _fail "private Redis did not start"; return 1; }
  local i; for i in $(seq 50); do _tcp_up 127.0.0.1 "$rport" && return 0; sleep 0.1; done
  _fail "private Redis did not answer on $rport"
}

# A private PgBouncer (transaction pooling, ops/pgbouncer.ini) in front of that PostgreSQL, for the
# suites that run behind it. Optional: without the binary PGBOUNCER_URL stays unset and those
# runs say so.
_ensure_pgbouncer() {
  local bin; bin="$(command -v pgbouncer || ls /usr/sbin/pgbouncer 2>/dev/null)" || return 0
  [ -x "$bin" ] || return 0
  local dir="$_local/pgbouncer" lport=56432
  read -r host port <<<"$(_hostport "$PG_ADMIN_URL")"
  export PGBOUNCER_URL="postgres://postgres@127.0.0.1:$lport/postgres"
  _tcp_up 127.0.0.1 "$lport" && return 0
  mkdir -p "$dir"
  sed -e "s|@PG_HOST@|$host|; s|@PG_PORT@|$port|; s|@LISTEN_PORT@|$lport|; s|@DIR@|$dir|g" \
    -e "s|@AUTH_TYPE@|trust|; s|@CLIENT_TLS_SSLMODE@|disable|; s|@SERVER_TLS_SSLMODE@|disable|" \
    -e "s|@CLIENT_TLS_CERT@||; s|@CLIENT_TLS_KEY@||; s|@SERVER_TLS_CA@||" \
    "$_root/ops/pgbouncer.ini" > "$dir/pgbouncer.ini"
  echo '"postgres" ""' > "$dir/users.txt"
  local runas=()
  if [ "$(id -u)" = 0 ]; then
    # PgBouncer refuses to run as root.
    id postgres >/dev/null 2>&1 || { unset PGBOUNCER_URL; return 0; }
    chown -R postgres "$dir"; runas=(-u postgres)
  fi
  echo "starting a private PgBouncer on port $lport" >&2
  "$bin" -d "${runas[@]}" "$dir/pgbouncer.ini" >/dev/null 2>&1 || { echo "warning: PgBouncer did not start; see $dir/pgbouncer.log" >&2; unset PGBOUNCER_URL; return 0; }
  local i; for i in $(seq 50); do _tcp_up 127.0.0.1 "$lport" && return 0; sleep 0.1; done
  echo "warning: PgBouncer did not answer on $lport" >&2; unset PGBOUNCER_URL
}

# A private Redis Cluster (3 masters, 3 replicas) on 57001-57006, for the suites that run against
# a cluster. Exports REDIS_CLUSTER_URL (redis+cluster://…). Started once; a half-made one (a node
# down, slots unassigned) is torn down and made again.
_cluster_ok() { [ "$(redis-cli -p 57001 cluster info 2>/dev/null | tr -d '\r' | sed -n 's/^cluster_state://p')" = ok ] \
  && [ "$(redis-cli -p 57001 cluster info 2>/dev/null | tr -d '\r' | sed -n 's/^cluster_known_nodes://p')" = 6 ]; }
_ensure_redis_cluster() {
  command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1 || return 0
  local dir="$_local/redis-cluster" p ports=(57001 57002 57003 57004 57005 57006) addrs=()
  export REDIS_CLUSTER_URL="redis+cluster://127.0.0.1:57001,127.0.0.1:57002,127.0.0.1:57003"
  _cluster_ok && return 0
  echo "starting a private Redis Cluster on ${ports[0]}-${ports[5]} (3 masters, 3 replicas)" >&2
  for p in "${ports[@]}"; do redis-cli -p "$p" shutdown nosave >/dev/null 2>&1 || true; done
  rm -rf "$dir"
  for p in "${ports[@]}"; do
    mkdir -p "$dir/$p"
    redis-server --daemonize yes --bind 127.0.0.1 --port "$p" --cluster-port $((p + 1000)) \
      --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 2000 \
      --save "" --appendonly no --dir "$dir/$p" --logfile "$dir/$p/redis.log" \
      --pidfile "$dir/$p/redis.pid" >/dev/null || { echo "warning: cluster node $p did not start" >&2; unset REDIS_CLUSTER_URL; return 0; }
    addrs+=("127.0.0.1:$p")
  done
  local i
  for p in "${ports[@]}"; do for i in $(seq 50); do _tcp_up 127.0.0.1 "$p" && break; sleep 0.1; done; done
  redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes >"$dir/create.log" 2>&1 \
    || { echo "warning: redis-cli --cluster create failed; see $dir/create.log" >&2; unset REDIS_CLUSTER_URL; return 0; }
  for i in $(seq 100); do _cluster_ok && return 0; sleep 0.1; done
  echo "warning: the Redis Cluster did not converge; see $dir/create.log" >&2; unset REDIS_CLUSTER_URL
}

_ensure_postgres && _ensure_redis && _ensure_pgbouncer && _ensure_redis_cluster && {
  # The development database lives beside the admin one on the same server.
  export DATABASE_URL="${DATABASE_URL:-${PG_ADMIN_URL%/*}/nexnum}"
  echo "PostgreSQL: ${PG_ADMIN_URL%/*}  Redis: $REDIS_URL" >&2
}

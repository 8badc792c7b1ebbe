#!/usr/bin/env bash
# Source this file (after scripts/services.sh): it starts the TLS-only back ends the suites run
# against a second and third time, as managed services run them (RDS with rds.force_ssl,
# ElastiCache with in-transit encryption, Upstash), and exports their URLs:
#   TLS_CERTS_DIR           the certificate set (target/debug/make-certs writes it; see tests/src/tls.rs);
#                           a suite run with TEST_TLS_DIR set to it starts its private Redis servers TLS-only
#   TLS_PG_ADMIN_URL        a private PostgreSQL on 55433: only `hostssl … scram-sha-256`
#   TLS_REDIS_URL           a private Redis on 56380: `--port 0 --tls-port`, the default user off
#   TLS_REDIS_CLUSTER_URL   a private TLS Redis Cluster (3 masters, 3 replicas) on 57011-57016
#   TLS_PGBOUNCER_URL       a private PgBouncer on 56433, TLS to its clients and to that PostgreSQL
# Every URL verifies the server (sslmode=verify-full, rediss:// with REDIS_CA_FILE) and carries
# the set's password. Idempotent: servers already up are kept; `make stop` stops them.

_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_local="$_root/.local"
export TLS_CERTS_DIR="$_local/tls"
_tls_fail() { echo "error: $*" >&2; return 1; }
_tls_up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

[ -s "$TLS_CERTS_DIR/ca.pem" ] && [ -s "$TLS_CERTS_DIR/password" ] \
  || { _tls_fail "no certificate set in $TLS_CERTS_DIR (run target/debug/make-certs $TLS_CERTS_DIR)"; return 1; }
_pw="$(cat "$TLS_CERTS_DIR/password")"
_ca="$TLS_CERTS_DIR/ca.pem"

# A port already taken by a server that does not accept this certificate set and password: ours
# (started with an earlier set: its pid file is under .local/) is stopped so it can be started
# again; anyone else's is an error naming the port.
_tls_reclaim() {
  local port="$1" what="$2" pidfile="$3" signal="${4:-TERM}"
  if [ -s "$pidfile" ] && kill -s "$signal" "$(head -1 "$pidfile")" 2>/dev/null; then
    echo "restarting $what on $port (it was started with another certificate set)" >&2
    local i; for i in $(seq 50); do _tls_up "$port" || return 0; sleep 0.1; done
  fi
  _tls_fail "port $port is taken by a $what that does not accept the certificates and password in $TLS_CERTS_DIR (another checkout's? run make stop there)"
}
_tls_psql() { command -v psql >/dev/null 2>&1 && psql "$1" -Atqc 'select 1' >/dev/null 2>&1; }

_tls_runas=()
if [ "$(id -u)" = 0 ]; then
  # PostgreSQL and PgBouncer refuse to run as root.
  id postgres >/dev/null 2>&1 || { _tls_fail "running as root and there is no 'postgres' user"; return 1; }
  _tls_runas=(runuser -u postgres --)
fi

_ensure_tls_postgres() {
  local dir="$_local/postgres-tls" port=55433 initdb pg_ctl
  export TLS_PG_ADMIN_URL="postgres://postgres:$_pw@localhost:$port/postgres?sslmode=verify-full&sslrootcert=$_ca"
  if _tls_up "$port"; then
    _tls_psql "$TLS_PG_ADMIN_URL" && return 0
    # An earlier set: the data directory keeps the old password, so it is made afresh.
    _tls_reclaim "$port" "PostgreSQL" "$dir/data/postmaster.pid" INT || return 1
    rm -rf "$dir/data"
  fi
  initdb="$(_pg_bin initdb)" && pg_ctl="$(_pg_bin pg_ctl)" \
    || { _tls_fail "initdb/pg_ctl are not installed (Debian: apt-get install postgresql)"; return 1; }
  mkdir -p "$dir"
  if [ ! -s "$dir/data/PG_VERSION" ]; then
    echo "starting a private TLS-only PostgreSQL in $dir (port $port)" >&2
    rm -rf "$dir/data"; printf '%s\n' "$_pw" > "$dir/pwfile"
    [ ${#_tls_runas[@]} -gt 0 ] && chown -R postgres "$dir"
    "${_tls_runas[@]}" "$initdb" -D "$dir/data" -U postgres --pwfile="$dir/pwfile" \
      --auth-local=trust --auth-host=scram-sha-256 >/dev/null || { _tls_fail "initdb failed"; return 1; }
    rm -f "$dir/pwfile"
    # Only TLS with a SCRAM password over TCP; the Unix socket (in this private directory) is
    # for the script alone.
    cat > "$dir/data/pg_hba.conf" <<'EOF'
local   all all                trust
hostssl all all 127.0.0.1/32   scram-sha-256
hostssl all all ::1/128        scram-sha-256
host    all all all            reject
EOF
  fi
  cp "$TLS_CERTS_DIR/server.pem" "$TLS_CERTS_DIR/server.key" "$dir/data/"
  [ ${#_tls_runas[@]} -gt 0 ] && chown postgres "$dir/data/server.pem" "$dir/data/server.key"
  chmod 600 "$dir/data/server.key"
  "${_tls_runas[@]}" "$pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -o \
    "-p $port -k $dir -c listen_addresses=127.0.0.1 -c ssl=on -c ssl_cert_file=server.pem -c ssl_key_file=server.key -c max_connections=300" \
    start >/dev/null || { _tls_fail "the TLS PostgreSQL did not start; see $dir/server.log"; return 1; }
}

# redis-server arguments (into the array _targs) for a TLS-only node on port $1 with two ACL
# users (the default user off): `nexnum`, an administrator (cluster set-up, replication, the
# tests' own inspection), and `nexnum_origin`, the serving user the origin connects as, with
# exactly the rules of ops/redis/serving.acl (keys and channels under `nexnum:`, the commands the
# origin sends, nothing else).
_tls_redis_args() {
  local rules=() line
  while IFS= read -r line; do
    line="${line%%#*}"; line="${line//[[:space:]]/}"
    [ -n "$line" ] && rules+=("$line")
  done < "$_root/ops/redis/serving.acl"
  _targs=(--bind 127.0.0.1 --port 0 --tls-port "$1" --tls-cert-file "$TLS_CERTS_DIR/server.pem"
    --tls-key-file "$TLS_CERTS_DIR/server.key" --tls-ca-cert-file "$_ca" --tls-auth-clients optional
    --user default off --user nexnum on ">$_pw" '~*' '&*' '+@all'
    --user nexnum_origin on ">$_pw" "${rules[@]}" --save "" --appendonly no)
}
_tls_cli() { redis-cli --tls --cacert "$_ca" --user nexnum --pass "$_pw" --no-auth-warning "$@"; }
# Whether the servers under $1 (a directory) were started with today's serving rules, and the
# serving user answers on port $2: an older server is restarted.
_tls_acl_sha() { sha256sum "$_root/ops/redis/serving.acl" | cut -c1-64; }
_tls_serving_ok() {
  [ "$(cat "$1/acl.sha" 2>/dev/null)" = "$(_tls_acl_sha)" ] \
    && redis-cli --tls --cacert "$_ca" --user nexnum_origin --pass "$_pw" --no-auth-warning -p "$2" ping 2>/dev/null | grep -q PONG
}

_ensure_tls_redis() {
  local dir="$_local/redis-tls" port=56380
  export TLS_REDIS_URL="rediss://nexnum_origin:$_pw@localhost:$port"
  _tls_cli -p "$port" ping >/dev/null 2>&1 && _tls_serving_ok "$dir" "$port" && return 0
  _tls_cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
  if _tls_up "$port"; then _tls_reclaim "$port" "Redis" "$dir/redis.pid" || return 1; fi
  echo "starting a private TLS-only Redis on port $port" >&2
  mkdir -p "$dir"
  _tls_redis_args "$port"
  redis-server --daemonize yes "${_targs[@]}" \
    --dir "$dir" --logfile "$dir/redis.log" --pidfile "$dir/redis.pid" >/dev/null \
    || { _tls_fail "the TLS Redis did not start; see $dir/redis.log"; return 1; }
  local i; for i in $(seq 50); do
    _tls_cli -p "$port" ping >/dev/null 2>&1 && { _tls_acl_sha > "$dir/acl.sha"; return 0; }
    sleep 0.1
  done
  _tls_fail "the TLS Redis did not answer on $port; see $dir/redis.log"
}

_tls_cluster_ok() {
  local info; info="$(_tls_cli -p 57011 cluster info 2>/dev/null | tr -d '\r')"
  [[ "$info" == *cluster_state:ok* && "$info" == *cluster_known_nodes:6* ]]
}
_ensure_tls_redis_cluster() {
  local dir="$_local/redis-cluster-tls" p ports=(57011 57012 57013 57014 57015 57016) addrs=()
  export TLS_REDIS_CLUSTER_URL="rediss+cluster://nexnum_origin:$_pw@localhost:57011,localhost:57012,localhost:57013"
  _tls_cluster_ok && _tls_serving_ok "$dir" 57011 && return 0
  echo "starting a private TLS Redis Cluster on ${ports[0]}-${ports[5]} (3 masters, 3 replicas)" >&2
  for p in "${ports[@]}"; do
    _tls_cli -p "$p" shutdown nosave >/dev/null 2>&1 || true
    if _tls_up "$p"; then _tls_reclaim "$p" "Redis Cluster node" "$dir/$p/redis.pid" || return 1; fi
  done
  rm -rf "$dir"
  for p in "${ports[@]}"; do
    mkdir -p "$dir/$p"
    _tls_redis_args "$p"
    redis-server --daemonize yes "${_targs[@]}" --cluster-port $((p + 1000)) \
      --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 2000 \
      --tls-cluster yes --tls-replication yes --masteruser nexnum --masterauth "$_pw" \
      --dir "$dir/$p" --logfile "$dir/$p/redis.log" \
      --pidfile "$dir/$p/redis.pid" >/dev/null || { _tls_fail "TLS cluster node $p did not start"; return 1; }
    addrs+=("127.0.0.1:$p")
  done
  local i
  for p in "${ports[@]}"; do for i in $(seq 50); do _tls_up "$p" && break; sleep 0.1; done; done
  _tls_cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes >"$dir/create.log" 2>&1 \
    || { _tls_fail "redis-cli --cluster create failed; see $dir/create.log"; return 1; }
  for i in $(seq 100); do _tls_cluster_ok && { _tls_acl_sha > "$dir/acl.sha"; return 0; }; sleep 0.1; done
  _tls_fail "the TLS Redis Cluster did not converge; see $dir/create.log"
}

# PgBouncer from ops/pgbouncer.ini with TLS on both sides: it requires TLS from its clients
# (client_tls_sslmode=require, the server certificate) and verifies the PostgreSQL it fronts
# (server_tls_sslmode=verify-full against the CA), SCRAM towards both.
_ensure_tls_pgbouncer() {
  local bin; bin="$(command -v pgbouncer || ls /usr/sbin/pgbouncer 2>/dev/null)" \
    || { _tls_fail "pgbouncer is not installed (Debian: apt-get install pgbouncer)"; return 1; }
  local dir="$_local/pgbouncer-tls" port=56433
  export TLS_PGBOUNCER_URL="postgres://postgres:$_pw@localhost:$port/postgres?sslmode=verify-full&sslrootcert=$_ca"
  if _tls_up "$port"; then
    _tls_psql "$TLS_PGBOUNCER_URL" && return 0
    _tls_reclaim "$port" "PgBouncer" "$dir/pgbouncer.pid" || return 1
  fi
  mkdir -p "$dir"
  cp "$TLS_CERTS_DIR/server.pem" "$TLS_CERTS_DIR/server.key" "$_ca" "$dir/"
  sed -e "s|@PG_HOST@|localhost|; s|@PG_PORT@|55433|; s|@LISTEN_PORT@|$port|; s|@DIR@|$dir|g" \
    -e "s|@AUTH_TYPE@|scram-sha-256|" \
    -e "s|@CLIENT_TLS_SSLMODE@|require|; s|@CLIENT_TLS_CERT@|$dir/server.pem|; s|@CLIENT_TLS_KEY@|$dir/server.key|" \
    -e "s|@SERVER_TLS_SSLMODE@|verify-full|; s|@SERVER_TLS_CA@|$dir/ca.pem|" \
    "$_root/ops/pgbouncer.ini" > "$dir/pgbouncer.ini"
  printf '"postgres" "%s"\n' "$_pw" > "$dir/users.txt"
  chmod 600 "$dir/users.txt" "$dir/server.key"
  local runas=()
  [ "$(id -u)" = 0 ] && { chown -R postgres "$dir"; runas=(-u postgres); }
  echo "starting a private TLS PgBouncer on port $port" >&2
  "$bin" -d "${runas[@]}" "$dir/pgbouncer.ini" >/dev/null 2>&1 \
    || { _tls_fail "the TLS PgBouncer did not start; see $dir/pgbouncer.log"; return 1; }
  local i; for i in $(seq 50); do _tls_up "$port" && return 0; sleep 0.1; done
  _tls_fail "the TLS PgBouncer did not answer on $port; see $dir/pgbouncer.log"
}

_ensure_tls_postgres && _ensure_tls_redis && _ensure_tls_redis_cluster && _ensure_tls_pgbouncer && \
  echo "TLS back ends: PostgreSQL :55433, Redis :56380, Redis Cluster :57011-57016, PgBouncer :56433 (certificates in $TLS_CERTS_DIR)" >&2

# The serving user's refused commands on the TLS servers since the last reset (ACL LOG), one line
# each; `make test` resets before its TLS passes and fails if any appear after them: the rules in
# ops/redis/serving.acl must hold every command the origin sends, and nothing more.
tls_acl_reset() {
  local p; for p in 56380 57011 57012 57013 57014 57015 57016; do _tls_cli -p "$p" acl log reset >/dev/null 2>&1 || true; done
}
tls_acl_denials() {
  local p; for p in 56380 57011 57012 57013 57014 57015 57016; do
    _tls_cli -p "$p" acl log 100 2>/dev/null | tr -d '\r' \
      | awk -v port="$p" '/^reason$/{getline r} /^object$/{getline o} /^username$/{getline u; print "port " port ": " u " refused " r " " o}'
  done | sort | uniq -c
}

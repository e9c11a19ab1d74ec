#!/usr/bin/env bash
# Start (or reuse) the throwaway services the test suite talks to, all on 127.0.0.1 only:
#
#   PostgreSQL  127.0.0.1:54329  role/database "loopml", trust auth
#   Redis       127.0.0.1:63790  no persistence
#   moto (S3)   127.0.0.1:59000  S3-compatible HTTP server, credentials "testing"
#
# Usage (developers and CI):      eval "$(bash .ci/services.sh)"
# Stop everything it started:     bash .ci/services.sh stop
#
# Idempotent: a service already answering on its port is reused. Missing Debian packages
# (postgresql, redis-server) and a missing moto[server] are installed. Only `export` lines go
# to stdout; everything else (apt, pip, progress, errors) goes to stderr. Exits non-zero, with
# a message on stderr, when a service does not come up within LOOPML_CI_WAIT seconds.
#
# moto is a service, not a project dependency: it runs from its own virtualenv
# ($LOOPML_CI_DIR/moto-venv, pinned by .ci/moto-requirements.txt), so its boto3/botocore pins
# never meet the project's (s3fs → aiobotocore pins botocore).
#
# Knobs (environment): LOOPML_CI_DIR (default /tmp/loopml-ci), LOOPML_CI_WAIT (default 30),
# PYTHON (interpreter that makes moto's virtualenv, default python3).
set -euo pipefail

CI_DIR="${LOOPML_CI_DIR:-/tmp/loopml-ci}"
WAIT_S="${LOOPML_CI_WAIT:-30}"
PYTHON="${PYTHON:-python3}"

HOST=127.0.0.1
PG_PORT=54329
REDIS_PORT=63790
S3_PORT=59000

PG_DATA="$CI_DIR/pg"
PG_LOG="$CI_DIR/pg.log"
REDIS_DIR="$CI_DIR/redis"
REDIS_LOG="$CI_DIR/redis.log"
REDIS_PID="$CI_DIR/redis.pid"
MOTO_LOG="$CI_DIR/moto.log"
MOTO_PID="$CI_DIR/moto.pid"
MOTO_VENV="$CI_DIR/moto-venv"
MOTO_REQUIREMENTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/moto-requirements.txt"

# Keep the real stdout on fd 3 for the export lines; everything else goes to stderr.
exec 3>&1 1>&2

log() { printf 'services: %s\n' "$*" >&2; }
die() {
    printf 'services: ERROR: %s\n' "$*" >&2
    exit 1
}

if [[ $EUID -eq 0 ]]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
else
    SUDO=()
fi

# --------------------------------------------------------------------------- helpers

pg_bindir() {
    local d
    d="$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -type d -name bin 2>/dev/null | sort -V | tail -n 1 || true)"
    if [[ -n "$d" && -x "$d/initdb" ]]; then
        printf '%s\n' "$d"
    elif command -v pg_config >/dev/null 2>&1 && [[ -x "$(pg_config --bindir)/initdb" ]]; then
        pg_config --bindir
    elif command -v initdb >/dev/null 2>&1; then
        dirname "$(readlink -f "$(command -v initdb)")"
    fi
}

# Run a command as the OS user that owns the PostgreSQL cluster (postgres when we are root).
as_pg() {
    if [[ $EUID -eq 0 ]]; then
        (cd / && runuser -u postgres -- "$@")
    else
        (cd / && "$@")
    fi
}

# Start a long-running process fully detached: no inherited stdin/stdout/stderr or fd 3, so
# neither `$(...)` in the caller nor a CI log pipe waits on it.
detach() {
    local logfile="$1"
    shift
    setsid "$@" </dev/null >>"$logfile" 2>&1 3>&- &
    echo $!
}

wait_for() {
    local what="$1"
    shift
    local deadline=$((SECONDS + WAIT_S))
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            return 1
        fi
        sleep 0.3
    done
    log "$what is up"
}

pg_up() { "$PG_BIN/pg_isready" -q -h "$HOST" -p "$PG_PORT" -t 2; }

redis_up() {
    if command -v redis-cli >/dev/null 2>&1; then
        [[ "$(timeout 3 redis-cli -h "$HOST" -p "$REDIS_PORT" ping 2>/dev/null)" == PONG ]]
    else
        # Fallback without redis-cli: raw RESP over bash's /dev/tcp.
        (
            exec 4<>"/dev/tcp/$HOST/$REDIS_PORT" || exit 1
            printf 'PING\r\n' >&4
            read -r -t 2 reply <&4 || true
            [[ "${reply:-}" == +PONG* ]]
        )
    fi
}

s3_up() {
    # Any HTTP answer (even an error status) means the server is listening and speaking HTTP.
    "$PYTHON" - "http://$HOST:$S3_PORT/moto-api/" <<'PY'
import sys
import urllib.error
import urllib.request

try:
    urllib.request.urlopen(sys.argv[1], timeout=2).close()
except urllib.error.HTTPError:
    pass
except Exception:
    sys.exit(1)
PY
}

stop_pid_file() {
    local name="$1" pidfile="$2" pid
    [[ -f "$pidfile" ]] || return 0
    pid="$(cat "$pidfile" 2>/dev/null || true)"
    if [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then
        log "stopping $name (pid $pid)"
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
    fi
    rm -f "$pidfile"
}

# --------------------------------------------------------------------------- stop

if [[ "${1:-}" == "stop" ]]; then
    PG_BIN="$(pg_bindir)"
    if [[ -n "$PG_BIN" && -f "$PG_DATA/postmaster.pid" ]]; then
        log "stopping PostgreSQL ($PG_DATA)"
        as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w stop >/dev/null 2>&1 || true
    fi
    stop_pid_file Redis "$REDIS_PID"
    stop_pid_file moto "$MOTO_PID"
    exit 0
elif [[ $# -gt 0 ]]; then
    die "unknown argument: $1 (usage: bash .ci/services.sh [stop])"
fi

mkdir -p "$CI_DIR"
chmod 755 "$CI_DIR" 2>/dev/null || true

# --------------------------------------------------------------------------- packages

missing=()
[[ -n "$(pg_bindir)" ]] || missing+=(postgresql)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
if ((${#missing[@]})); then
    log "installing Debian packages: ${missing[*]}"
    # Keep apt from auto-starting the packages' own default services (we run our own).
    tmp_policy=""
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        tmp_policy=/usr/sbin/policy-rc.d
        printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$tmp_policy" >/dev/null
        "${SUDO[@]}" chmod 755 "$tmp_policy"
    fi
    apt_ok=1
    "${SUDO[@]}" apt-get -q update >&2 || apt_ok=0
    if ((apt_ok)); then
        "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q install -y \
            --no-install-recommends -o DPkg::Lock::Timeout=120 "${missing[@]}" >&2 || apt_ok=0
    fi
    [[ -z "$tmp_policy" ]] || "${SUDO[@]}" rm -f "$tmp_policy"
    ((apt_ok)) || die "apt-get install ${missing[*]} failed"
fi

PG_BIN="$(pg_bindir)"
[[ -n "$PG_BIN" ]] || die "PostgreSQL binaries (initdb) not found after install"
command -v redis-server >/dev/null 2>&1 || die "redis-server not found after install"

if ! "$MOTO_VENV/bin/python" -c 'import moto, flask, flask_cors' >/dev/null 2>&1; then
    log "installing moto[server] into $MOTO_VENV"
    rm -rf "$MOTO_VENV"
    "$PYTHON" -m venv "$MOTO_VENV" || die "cannot create a virtualenv in $MOTO_VENV"
    "$MOTO_VENV/bin/python" -m pip install -q --disable-pip-version-check \
        --root-user-action=ignore -r "$MOTO_REQUIREMENTS" >&2 ||
        die "pip install -r $MOTO_REQUIREMENTS failed"
fi

# --------------------------------------------------------------------------- PostgreSQL

pg_init() {
    log "initdb $PG_DATA"
    rm -rf "$PG_DATA"
    mkdir -p "$PG_DATA"
    chmod 700 "$PG_DATA"
    [[ $EUID -ne 0 ]] || chown postgres:postgres "$PG_DATA"
    as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U postgres --auth=trust -E UTF8 --no-locale \
        --no-sync >/dev/null || die "initdb failed"
    # Throwaway test cluster: loopback only, socket in the data dir, no durability.
    cat >>"$PG_DATA/postgresql.conf" <<EOF

# --- loopml CI (.ci/services.sh) ---
listen_addresses = '$HOST'
port = $PG_PORT
unix_socket_directories = '$PG_DATA'
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
}

pg_fail() {
    tail -n 20 "$PG_LOG" >&2 2>/dev/null || true
    die "$1 (log: $PG_LOG)"
}

pg_start() {
    touch "$PG_LOG"
    [[ $EUID -ne 0 ]] || chown postgres:postgres "$PG_LOG"
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t "$WAIT_S" start \
        </dev/null >/dev/null 2>&1 3>&-
}

if pg_up; then
    log "PostgreSQL already answering on $HOST:$PG_PORT; reusing it"
else
    if [[ -f "$PG_DATA/PG_VERSION" ]]; then
        log "starting existing PostgreSQL cluster in $PG_DATA"
        if ! pg_start; then
            log "could not start the existing cluster; re-initialising it"
            as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m immediate stop >/dev/null 2>&1 || true
            pg_init
            pg_start || pg_fail "pg_ctl start failed"
        fi
    else
        pg_init
        log "starting PostgreSQL on $HOST:$PG_PORT"
        pg_start || pg_fail "pg_ctl start failed"
    fi
fi
wait_for "PostgreSQL ($HOST:$PG_PORT)" pg_up ||
    pg_fail "PostgreSQL did not come up on $HOST:$PG_PORT within ${WAIT_S}s"

psql_admin() {
    "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$HOST" -p "$PG_PORT" -U postgres -d postgres "$@"
}
if [[ "$(psql_admin -tAc "SELECT 1 FROM pg_roles WHERE rolname = 'loopml'")" != 1 ]]; then
    psql_admin -c 'CREATE ROLE loopml LOGIN SUPERUSER' || die "could not create role loopml"
fi
if [[ "$(psql_admin -tAc "SELECT 1 FROM pg_database WHERE datname = 'loopml'")" != 1 ]]; then
    psql_admin -c 'CREATE DATABASE loopml OWNER loopml' || die "could not create database loopml"
fi

# --------------------------------------------------------------------------- Redis

if redis_up; then
    log "Redis already answering on $HOST:$REDIS_PORT; reusing it"
else
    log "starting Redis on $HOST:$REDIS_PORT"
    mkdir -p "$REDIS_DIR"
    redis-server --bind "$HOST" --port "$REDIS_PORT" --daemonize yes --save '' \
        --appendonly no --dir "$REDIS_DIR" --logfile "$REDIS_LOG" --pidfile "$REDIS_PID" \
        </dev/null >/dev/null 2>&1 3>&- || true
fi
if ! wait_for "Redis ($HOST:$REDIS_PORT)" redis_up; then
    tail -n 20 "$REDIS_LOG" >&2 2>/dev/null || true
    die "Redis did not come up on $HOST:$REDIS_PORT within ${WAIT_S}s (log: $REDIS_LOG)"
fi

# --------------------------------------------------------------------------- moto (S3)

if s3_up; then
    log "S3 (moto) already answering on $HOST:$S3_PORT; reusing it"
else
    log "starting moto S3 server on $HOST:$S3_PORT"
    detach "$MOTO_LOG" "$MOTO_VENV/bin/python" -m moto.server -H "$HOST" -p "$S3_PORT" >"$MOTO_PID"
fi
if ! wait_for "S3/moto ($HOST:$S3_PORT)" s3_up; then
    tail -n 20 "$MOTO_LOG" >&2 2>/dev/null || true
    die "moto S3 server did not come up on $HOST:$S3_PORT within ${WAIT_S}s (log: $MOTO_LOG)"
fi

# --------------------------------------------------------------------------- exports

cat >&3 <<EOF
export LOOPML_TEST_POSTGRES_URL=postgresql+psycopg://loopml@$HOST:$PG_PORT/loopml
export LOOPML_TEST_REDIS_URL=redis://$HOST:$REDIS_PORT/0
export LOOPML_TEST_S3_ENDPOINT=http://$HOST:$S3_PORT
export AWS_ACCESS_KEY_ID=testing
export AWS_SECRET_ACCESS_KEY=testing
export AWS_DEFAULT_REGION=us-east-1
EOF

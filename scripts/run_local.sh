#!/usr/bin/env bash
# Runs the whole service on this machine: the fake SMS provider, a Celery worker, Celery beat and
# the web server, each line of output prefixed with its name. Ctrl-C or SIGTERM stops them all;
# if one of them dies, the others are stopped and the script exits non-zero.
#
# `make run` migrates and seeds the demo data first, then runs this. Configuration comes from the
# environment, then .env, then the defaults in mailing_service/settings.py (see .env.example).
# Variables of this script only: RUN_WEB_ADDR (127.0.0.1:8000), RUN_STOP_TIMEOUT (seconds, 10).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PY:-.venv/bin/python}

say() { printf '[run] %s\n' "$*"; }

if [[ ! -x $PY ]]; then
    say "$PY not found: run 'make venv' (or 'make run') first" >&2
    exit 1
fi

# Read .env the way settings.py does (the environment wins), so that this script and the four
# processes agree on PROVIDER_URL and PROVIDER_TOKEN.
eval "$("$PY" - <<'EOF'
import os
import shlex

import environ

before = set(os.environ)
environ.Env.read_env(".env", overwrite=False)
for name in sorted(set(os.environ) - before):
    print(f"export {name}={shlex.quote(os.environ[name])}")
EOF
)"

WEB_ADDR=${RUN_WEB_ADDR:-127.0.0.1:8000}
STOP_TIMEOUT=${RUN_STOP_TIMEOUT:-10}

if [[ -z ${PROVIDER_TOKEN:-} ]]; then
    # Nothing configured: a fresh token for this run, shared by the provider and the senders.
    PROVIDER_TOKEN=$("$PY" -c 'import secrets; print(secrets.token_urlsafe(24))')
    say "PROVIDER_TOKEN is not set: generated one for this run"
fi
export PROVIDER_TOKEN
PROVIDER_URL=${PROVIDER_URL:-http://127.0.0.1:8070/v1}
export PROVIDER_URL
# Children write to pipes: without this, Python would hold their lines back in a buffer.
export PYTHONUNBUFFERED=1
# Web, worker and beat write their metrics to one folder, emptied at each start (old processes' files
# would add their counts forever); http://127.0.0.1:8000/metrics adds them up.
PROMETHEUS_MULTIPROC_DIR=${PROMETHEUS_MULTIPROC_DIR:-var/metrics}
rm -rf "$PROMETHEUS_MULTIPROC_DIR" && mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
export PROMETHEUS_MULTIPROC_DIR

# The fake provider runs only when PROVIDER_URL points at this machine, on that port.
read -r provider_host provider_port < <("$PY" -c '
import sys
from urllib.parse import urlsplit

url = urlsplit(sys.argv[1])
print(url.hostname or "-", url.port or (443 if url.scheme == "https" else 80))
' "$PROVIDER_URL")
case $provider_host in
    127.0.0.1 | localhost | ::1) run_provider=1 ;;
    *) run_provider=0 ;;
esac

names=()
pids=()
stopping=0

# Starts "$@" in its own session, hence its own process group (pgid = pid), so that stopping it
# also stops its children (the worker's pool processes), and Ctrl-C reaches only this script.
start() {
    local name=$1
    shift
    local session=()
    command -v setsid >/dev/null && session=(setsid)
    "${session[@]}" "$@" > >(prefix "$name") 2>&1 </dev/null &
    names+=("$name")
    pids+=("$!")
}

# Copies stdin to stdout with "[name] " before each line. It ignores Ctrl-C, which the terminal
# sends to this script's whole group, so that it still passes on what the processes say as they stop.
prefix() {
    trap '' INT TERM
    exec awk -v prefix="[$1] " '{ print prefix $0; fflush() }'
}

# TERM goes to the main process only (the worker stops its own pool); KILL to the whole group.
signal_all() {
    local signal=$1 pid
    for pid in "${pids[@]}"; do
        if [[ $signal == KILL ]]; then
            kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
        else
            kill "-$signal" "$pid" 2>/dev/null || true
        fi
    done
}

alive() {
    local pid
    for pid in "${pids[@]}"; do
        kill -0 "$pid" 2>/dev/null && return 0
    done
    return 1
}

stop_all() {
    ((${#pids[@]})) || return 0
    signal_all TERM
    local deadline=$((SECONDS + STOP_TIMEOUT))
    while alive && ((SECONDS < deadline)); do
        # Ctrl-C reaches this sleep too, which then fails: not a reason to give up waiting.
        sleep 0.2 || :
    done
    if alive; then
        say "still running after ${STOP_TIMEOUT}s: killing"
        signal_all KILL
    fi
    wait 2>/dev/null || true
    pids=()
}

on_signal() {
    if ((stopping)); then
        # A second Ctrl-C: do not wait for running tasks to finish.
        say "killing"
        signal_all KILL
        # Explicit: a bare return in a trap gives the interrupted command's status, and set -e exits.
        return 0
    fi
    stopping=1
    say "stopping: waiting up to ${STOP_TIMEOUT}s for running tasks (Ctrl-C again to kill them now)"
}

trap on_signal INT TERM
trap stop_all EXIT

web_url="http://${WEB_ADDR}"
say "API            $web_url/api/v1/"
say "docs           $web_url/docs/"
say "admin          $web_url/admin/"
say "metrics        $web_url/metrics (health: /health/live, /health/ready)"
if ((run_provider)); then
    say "provider stats http://$provider_host:$((provider_port + 1))/stats"
    # It reads the token from $PROVIDER_TOKEN, which keeps it out of `ps`.
    start provider "$PY" -m fake_provider --host "$provider_host" --port "$provider_port" --latency 0.2
else
    say "PROVIDER_URL is $PROVIDER_URL: not starting the fake provider"
fi
start worker "$PY" -m celery -A mailing_service worker -l info --concurrency 2
start beat "$PY" -m celery -A mailing_service beat -l info
start web "$PY" manage.py runserver "$WEB_ADDR" --noreload

# Sleep until one of them ends or a signal arrives (a trap interrupts `wait` at once).
status=0
while ((!stopping)); do
    for i in "${!pids[@]}"; do
        if ! kill -0 "${pids[i]}" 2>/dev/null; then
            wait "${pids[i]}" && status=$? || status=$?
            say "${names[i]} exited with status $status: stopping the others"
            stopping=2
            break
        fi
    done
    ((stopping)) || { sleep 1 & wait $! || true; }
done

stop_all
trap - EXIT
if ((stopping == 2)); then
    exit $((status ? status : 1))
fi
say "stopped"

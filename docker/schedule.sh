#!/bin/sh
# leopard-etl-schedule ARGS...: run `leopard-etl ARGS...` every SCHEDULE_INTERVAL_SECONDS
# (default 3600), for Docker Compose, which has no cron. Installed in the image as
# /usr/local/bin/leopard-etl-schedule; docker/compose.yaml uses it as the entrypoint.
#
# What each exit code of one run does (docs/operations.md):
#   0   ok                            -> wait for the next tick
#   3   source unreachable            -> retry after SCHEDULE_RETRY_SECONDS (default 120)
#   5   lock held (another run)       -> skip, wait for the next tick
#   2   configuration                 -> stop with 2: a person must fix the config
#   4   quarantine over threshold     -> stop with 4: a person must look at quarantine.csv
#   70  internal error (or any other) -> stop with that code: report it with the log
# SCHEDULE_MAX_RUNS=N ends after N runs with the last run's code (tests; default 0 = forever).
set -u

interval="${SCHEDULE_INTERVAL_SECONDS:-3600}"
retry="${SCHEDULE_RETRY_SECONDS:-120}"
max_runs="${SCHEDULE_MAX_RUNS:-0}"
runs=0

say() { echo "leopard-etl-schedule: $*" >&2; }
trap 'say "stopped"; exit 143' TERM
trap 'say "interrupted"; exit 130' INT

while :; do
    runs=$((runs + 1))
    leopard-etl "$@"
    code=$?
    wait_for="$interval"
    case "$code" in
        0) say "run $runs ok" ;;
        3) say "run $runs: source unreachable (exit 3), retrying in ${retry}s"; wait_for="$retry" ;;
        5) say "run $runs: another run holds the lock (exit 5), skipped" ;;
        2) say "run $runs: configuration error (exit 2), stopping: fix the setting named above"; exit 2 ;;
        4) say "run $runs: quarantine over threshold (exit 4), stopping: inspect quarantine.csv"; exit 4 ;;
        *) say "run $runs: internal error (exit $code), stopping: report it with the log"; exit "$code" ;;
    esac
    if [ "$max_runs" -gt 0 ] && [ "$runs" -ge "$max_runs" ]; then
        exit "$code"
    fi
    # in the background, so that `docker stop` (SIGTERM) ends the wait at once
    sleep "$wait_for" &
    wait $!
done

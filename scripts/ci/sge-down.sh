#!/usr/bin/env bash
# sge-down.sh - stop what sge-up.sh started: delete all jobs, stop sge_execd
# and sge_qmaster. Packages stay installed.
#   --purge   also wipe the cluster configuration, spool and accounting, so the
#             next sge-up.sh starts from a freshly initialised cell
# Safe to run when nothing is running.
set -euo pipefail

log() { printf '[sge-down] %s\n' "$*" >&2; }
[ "$(id -u)" -eq 0 ] || { log "ERROR: run as root"; exit 1; }
PURGE=0
[ "${1:-}" = "--purge" ] && PURGE=1

export SGE_ROOT=/var/lib/gridengine SGE_CELL=default
SPOOL=/var/spool/gridengine

alive() {  # alive PIDFILE NAME
  local pid
  [ -s "$1" ] || return 1
  pid=$(cat "$1" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ -r "/proc/$pid/comm" ] && [ "$(cat "/proc/$pid/comm")" = "$2" ]
}
stop() {  # stop PIDFILE NAME: TERM, wait up to 60s, then KILL
  alive "$1" "$2" || return 0
  local pid; pid=$(cat "$1")
  log "stopping $2 (pid $pid)"
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 120); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.5; done
  log "$2 ignored SIGTERM, sending SIGKILL"
  kill -9 "$pid" 2>/dev/null || true
}

# 1. delete every job while execd can still kill the job processes
if alive "$SPOOL/qmaster/qmaster.pid" sge_qmaster && command -v qstat >/dev/null; then
  jobs=$(qstat -u '*' 2>/dev/null | awk 'NR>2 {print $1}' | sort -u)
  if [ -n "$jobs" ]; then
    log "deleting jobs: $(echo $jobs)"
    # shellcheck disable=SC2086
    qdel -f $jobs >/dev/null 2>&1 || true
    for _ in $(seq 60); do
      [ -z "$(qstat -u '*' 2>/dev/null | awk 'NR>2')" ] && break
      sleep 0.5
    done
  fi
fi

# 2. daemons: execd first (it spools under whatever name it resolved for itself)
for f in "$SPOOL"/execd/*/execd.pid; do stop "$f" sge_execd; done
stop "$SPOOL/qmaster/qmaster.pid" sge_qmaster
# A daemon that never got as far as its pid file (e.g. an up that timed out) goes too.
for daemon in sge_execd sge_qmaster; do
  if pkill -x "$daemon" 2>/dev/null; then
    log "stopping $daemon (no pid file)"
    for _ in $(seq 20); do pgrep -x "$daemon" >/dev/null || break; sleep 0.5; done
    pkill -9 -x "$daemon" 2>/dev/null || true
  fi
done

# 3. optional purge: back to the state right after package installation
if [ "$PURGE" = 1 ]; then
  log "purging cluster configuration, spool and accounting"
  rm -rf "$SPOOL"/spooldb/* "$SPOOL"/execd/* "$SPOOL"/qmaster/*
  rm -f "$SGE_ROOT/$SGE_CELL/common/accounting" "$SGE_ROOT/$SGE_CELL/common/host_aliases"
fi
log "done"

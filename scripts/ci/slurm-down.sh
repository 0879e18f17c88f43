#!/usr/bin/env bash
# slurm-down.sh - stop what slurm-up.sh started: cancel all jobs, stop slurmd,
# slurmctld and (if slurm-up.sh started it) munged. Packages stay installed.
#   --purge   also delete slurm.conf, spool/state directories and logs
# Safe to run when nothing is running.
set -euo pipefail

log() { printf '[slurm-down] %s\n' "$*" >&2; }
[ "$(id -u)" -eq 0 ] || { log "ERROR: run as root"; exit 1; }
PURGE=0
[ "${1:-}" = "--purge" ] && PURGE=1

CI_RUN=/run/slurm-ci

alive() {  # alive PIDFILE NAME
  local pid
  [ -s "$1" ] || return 1
  pid=$(cat "$1" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ -r "/proc/$pid/comm" ] && [ "$(cat "/proc/$pid/comm")" = "$2" ]
}

stop() {  # stop PIDFILE NAME: TERM, wait up to 30s, then KILL; drop the pid file
  if alive "$1" "$2"; then
    local pid; pid=$(cat "$1")
    log "stopping $2 (pid $pid)"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    if kill -0 "$pid" 2>/dev/null; then
      log "$2 ignored SIGTERM, sending SIGKILL"
      kill -9 "$pid" 2>/dev/null || true
    fi
  fi
  # slurmctld leaves its pid file behind; a stale one breaks 'apt-get remove slurmctld'
  rm -f "$1"
}

# 1. cancel every job while the daemons can still clean up job processes
if command -v scontrol >/dev/null && scontrol ping 2>/dev/null | grep -q UP; then
  jobs=$(squeue -h -o %A 2>/dev/null || true)
  if [ -n "$jobs" ]; then
    log "cancelling jobs: $(echo $jobs)"
    # shellcheck disable=SC2086
    scancel $jobs 2>/dev/null || true
    for _ in $(seq 60); do
      [ -z "$(squeue -h -o %A 2>/dev/null)" ] && break
      sleep 0.5
    done
  fi
fi

# 2. daemons (pid files are set in slurm.conf by slurm-up.sh)
stop /run/slurmd.pid slurmd
stop /run/slurmctld.pid slurmctld
if [ -e "$CI_RUN/munged-started" ]; then
  stop /run/munge/munged.pid munged
  rm -f "$CI_RUN/munged-started"
fi
rm -rf "$CI_RUN"

# 3. optional purge of configuration and state
if [ "$PURGE" = 1 ]; then
  log "purging config, state and logs"
  rm -f /etc/slurm/slurm.conf
  rm -rf /var/spool/slurmctld /var/spool/slurmd
  rm -f /var/log/slurm/slurmctld.log* /var/log/slurm/slurmd.log*
fi
log "done"

#!/usr/bin/env bash
# sge-up.sh - bring up a real single-node (Son of) Grid Engine 8.1.9 cluster on
# this host (Debian's gridengine packages; sge_qmaster + sge_execd started
# directly, no systemd) and smoke-test it. The scheduler keeps the reasons a job
# pends (schedd_job_info true: 'qstat -j ID' lists them under "scheduling info:");
# the 'smp' PE gives a job N slots on this host ('-pe smp N' -> NSLOTS=N).
# Idempotent: a second run leaves a healthy cluster alone and only re-checks it.
# Runs alongside slurm-up.sh (see README.md here).
#
# Environment (all optional):
#   SGE_CI_VERIFY=0     skip the smoke tests (default 1)
#   SGE_CI_SLOTS=N      slots per queue (default: nproc)
set -euo pipefail

log() { printf '[sge-up] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
[ "$(id -u)" -eq 0 ] || die "run as root"

export SGE_ROOT=/var/lib/gridengine SGE_CELL=default
COMMON=$SGE_ROOT/$SGE_CELL/common
UTIL=/usr/lib/gridengine              # gethostname, gethostbyaddr, ...
QMASTER_PID=/var/spool/gridengine/qmaster/qmaster.pid
VERIFY=${SGE_CI_VERIFY:-1}
SLOTS=${SGE_CI_SLOTS:-$(nproc)}
T0=$(date +%s)

alive() {  # alive PIDFILE NAME: the process in PIDFILE runs and is called NAME
  local pid
  [ -s "$1" ] || return 1
  pid=$(cat "$1" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ -r "/proc/$pid/comm" ] && [ "$(cat "/proc/$pid/comm")" = "$2" ]
}
wait_for() {  # wait_for SECONDS DESCRIPTION CMD...
  local t=$1 what=$2; shift 2
  local end=$(( $(date +%s) + t ))
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$end" ] || die "timed out after ${t}s waiting for: $what"
    sleep 0.5
  done
}
stop_pid() {  # stop_pid PIDFILE NAME
  if alive "$1" "$2"; then
    local pid; pid=$(cat "$1"); kill "$pid"
    wait_for 60 "$2 to exit" sh -c "! kill -0 $pid"
  fi
}
# execd spools under the name it resolves for itself (here possibly "localhost")
execd_pidfile() {
  local f
  for f in /var/spool/gridengine/execd/*/execd.pid; do
    alive "$f" sge_execd && { echo "$f"; return 0; }
  done
  return 1
}
q() {  # qconf, quiet unless it fails
  local out
  out=$(qconf "$@" 2>&1) || die "qconf $*: $out"
}

# --- 1. hostname must resolve ----------------------------------------------
H=$(hostname)
# qmaster resolves the address of every client, local ones too: 127.0.0.1 must have a name
# (a minimal root or container may come with an empty /etc/hosts).
if ! getent hosts 127.0.0.1 >/dev/null; then
  log "127.0.0.1 has no name; adding localhost to /etc/hosts"
  echo "127.0.0.1 localhost" >>/etc/hosts
fi
# On 127.0.0.1, the address local clients connect from: its other name (localhost) is made an
# alias of $H below, so qmaster accepts them.
if ! getent hosts "$H" >/dev/null; then
  log "hostname $H does not resolve; adding it to /etc/hosts"
  echo "127.0.0.1 $H" >>/etc/hosts
fi

# --- 2. packages (non-interactive: preseed debconf) ------------------------
pkgs_ok() {
  local p
  for p in gridengine-master gridengine-exec gridengine-client; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || return 1
  done
}
if ! pkgs_ok; then
  log "installing gridengine-master gridengine-exec gridengine-client"
  debconf-set-selections <<EOF
gridengine-common shared/gridengineconfig boolean true
gridengine-common shared/gridenginecell string $SGE_CELL
gridengine-common shared/gridenginemaster string $H
EOF
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q gridengine-master gridengine-exec gridengine-client >/dev/null ||
    { apt-get update -q >/dev/null &&
      apt-get install -y -q gridengine-master gridengine-exec gridengine-client >/dev/null; }
fi
[ -s "$COMMON/bootstrap" ] || die "$COMMON/bootstrap missing: the package did not initialise the cell"
# the package's postinst creates the spool DB; sge-down.sh --purge wipes it: recreate
if [ ! -e /var/spool/gridengine/spooldb/sge ]; then
  log "initialising the cell's spool database"
  install -d -o sgeadmin -g sgeadmin -m 0755 /var/spool/gridengine/spooldb \
    /var/spool/gridengine/qmaster /var/spool/gridengine/qmaster/job_scripts
  runuser -u sgeadmin -- /usr/share/gridengine/scripts/init_cluster \
    "$SGE_ROOT" "$SGE_CELL" /var/spool/gridengine/spooldb sgeadmin >/dev/null
fi

# --- 3. host naming ---------------------------------------------------------
# SGE compares the name a client claims (its hostname, resolved forward) with
# the name the master gets by resolving the client's IP backwards. Where the
# hostname shares 127.0.0.1 with "localhost" the reverse name is "localhost"
# and every request fails with "access denied (client IP resolved to host name
# localhost ...)". host_aliases tells SGE both names are the same host.
RESTART=0
ME=$("$UTIL/gethostname" -name)                  # SGE's name for this host
IP=$(getent ahostsv4 "$H" | awk '{print $1; exit}')
REV=$("$UTIL/gethostbyaddr" -all "$IP" 2>/dev/null | sed -n 's/^Hostname: *//p')
ALIASES=""
[ -z "$REV" ] || [ "$REV" = "$ME" ] || ALIASES="$ME $REV"
if [ -n "$ALIASES" ]; then
  if [ "$(cat "$COMMON/host_aliases" 2>/dev/null)" != "$ALIASES" ]; then
    log "host_aliases: '$ALIASES' ($H=$IP reverse-resolves to $REV)"
    echo "$ALIASES" >"$COMMON/host_aliases"; RESTART=1
  fi
  ME=$("$UTIL/gethostname" -name)
elif [ -e "$COMMON/host_aliases" ]; then
  rm -f "$COMMON/host_aliases"; RESTART=1
fi
if [ "$(cat "$COMMON/act_qmaster" 2>/dev/null)" != "$ME" ]; then
  echo "$ME" >"$COMMON/act_qmaster"; RESTART=1
fi
chown sgeadmin:sgeadmin "$COMMON"/act_qmaster "$COMMON"/host_aliases 2>/dev/null || true

# --- 4. qmaster -------------------------------------------------------------
install -d -o sgeadmin -g sgeadmin -m 0755 /run/gridengine /var/spool/gridengine/execd
if [ "$RESTART" = 1 ]; then
  if f=$(execd_pidfile); then stop_pid "$f" sge_execd; fi
  stop_pid "$QMASTER_PID" sge_qmaster
fi
if ! alive "$QMASTER_PID" sge_qmaster; then
  log "starting sge_qmaster"
  /usr/sbin/sge_qmaster          # daemonizes; log: /var/spool/gridengine/qmaster/messages
fi
wait_for 60 "sge_qmaster to answer (see /var/spool/gridengine/qmaster/messages)" qconf -sh

# --- 5. cluster configuration (each step only if not already so) ----------
W=$(mktemp -d /tmp/sge-ci.XXXXXX)
LPID=""
trap '[ -z "$LPID" ] || kill "$LPID" 2>/dev/null || true; rm -rf "$W"' EXIT

# global config: allow root jobs (min_uid/min_gid default to 1000); start job shells
# as plain shells, not login shells, so a user's profile (here it runs pyenv, whose
# lock a job killed at start-up leaves behind) neither slows nor breaks every job
qconf -sconf global | grep -v '^#' >"$W/global"
if ! grep -qE '^min_uid +0$' "$W/global" || ! grep -qE '^min_gid +0$' "$W/global" ||
   ! grep -qE '^login_shells +none$' "$W/global"; then
  log "global config: min_uid=0 min_gid=0 (allow root jobs), login_shells=none"
  sed -i -e 's/^min_uid .*/min_uid 0/' -e 's/^min_gid .*/min_gid 0/' \
         -e 's/^login_shells .*/login_shells none/' "$W/global"
  q -Mconf "$W/global"
fi

# scheduler: run a scheduling pass within a second of submit/finish (default 15s), and keep
# the reasons a job pends (schedd_job_info true): 'qstat -j ID' then lists them under
# "scheduling info:" (Debian's default is false: no reasons at all)
qconf -ssconf >"$W/sched"
if ! grep -qE '^schedule_interval +0:0:1$' "$W/sched" || ! grep -qE '^flush_submit_sec +1$' "$W/sched" ||
   ! grep -qE '^flush_finish_sec +1$' "$W/sched" || ! grep -qE '^schedd_job_info +true$' "$W/sched"; then
  log "scheduler: schedule_interval=1s, flush_submit_sec=flush_finish_sec=1, schedd_job_info=true"
  sed -i -e 's/^schedule_interval .*/schedule_interval 0:0:1/' \
         -e 's/^flush_submit_sec .*/flush_submit_sec 1/' \
         -e 's/^flush_finish_sec .*/flush_finish_sec 1/' \
         -e 's/^schedd_job_info .*/schedd_job_info true/' "$W/sched"
  q -Msconf "$W/sched"
fi

# this host: admin + submit + exec host
qconf -sh 2>/dev/null | grep -qx "$ME" || q -ah "$ME"
qconf -ss 2>/dev/null | grep -qx "$ME" || q -as "$ME"
# host-wide slots=N caps all queues on this host together at N slots
printf 'hostname %s\nload_scaling NONE\ncomplex_values slots=%s\nuser_lists NONE\nxuser_lists NONE\nprojects NONE\nxprojects NONE\nusage_scaling NONE\nreport_variables NONE\n' \
  "$ME" "$SLOTS" >"$W/exechost"
if ! qconf -sel 2>/dev/null | grep -qx "$ME"; then
  log "adding exec host $ME (slots=$SLOTS)"
  q -Ae "$W/exechost"
elif ! qconf -se "$ME" | grep -qE "^complex_values +slots=$SLOTS\$"; then
  log "exec host $ME: slots=$SLOTS"
  q -Me "$W/exechost"
fi

# parallel environments shipped with the package (smp: '-pe smp N' = N slots on one host)
for pe in smp make mpi; do
  qconf -spl 2>/dev/null | grep -qx "$pe" || q -Ap "/usr/share/gridengine/util/resources/pe/$pe"
done

# host group
if ! qconf -shgrpl 2>/dev/null | grep -qx '@allhosts'; then
  printf 'group_name @allhosts\nhostlist %s\n' "$ME" >"$W/hgrp"
  q -Ahgrp "$W/hgrp"
fi

# queues: all.q (default) and long.q; bash as shell, '#!' honoured, no load alarm
write_queue() {  # write_queue NAME FILE
  cat >"$2" <<EOF
qname                 $1
hostlist              @allhosts
seq_no                0
load_thresholds       NONE
suspend_thresholds    NONE
nsuspend              1
suspend_interval      00:05:00
priority              0
min_cpu_interval      00:05:00
processors            UNDEFINED
qtype                 BATCH INTERACTIVE
ckpt_list             NONE
pe_list               make smp mpi
rerun                 FALSE
slots                 $SLOTS
tmpdir                /tmp
shell                 /bin/bash
prolog                NONE
epilog                NONE
shell_start_mode      unix_behavior
starter_method        NONE
suspend_method        NONE
resume_method         NONE
terminate_method      NONE
notify                00:00:60
owner_list            NONE
user_lists            NONE
xuser_lists           NONE
subordinate_list      NONE
complex_values        NONE
projects              NONE
xprojects             NONE
calendar              NONE
initial_state         default
s_rt                  INFINITY
h_rt                  INFINITY
s_cpu                 INFINITY
h_cpu                 INFINITY
s_fsize               INFINITY
h_fsize               INFINITY
s_data                INFINITY
h_data                INFINITY
s_stack               INFINITY
h_stack               INFINITY
s_core                INFINITY
h_core                INFINITY
s_rss                 INFINITY
h_rss                 INFINITY
s_vmem                INFINITY
h_vmem                INFINITY
EOF
}
for q in all.q long.q; do
  write_queue "$q" "$W/$q"
  if ! qconf -sql 2>/dev/null | grep -qx "$q"; then
    log "adding queue $q (slots=$SLOTS)"
    q -Aq "$W/$q"
  elif ! diff -qw <(qconf -sq "$q" | sed 's/ \+/ /g') <(sed 's/ \+/ /g' "$W/$q") >/dev/null; then
    log "updating queue $q"
    q -Mq "$W/$q"
  fi
done

# --- 6. execd ---------------------------------------------------------------
if ! execd_pidfile >/dev/null; then
  log "starting sge_execd"
  /usr/sbin/sge_execd            # daemonizes; log: /var/spool/gridengine/execd/$ME/messages
fi
# queue instance is usable once its state column is empty (not u/a/E/d/...)
queue_ok() { [ -z "$(qstat -f -q "all.q@$ME" 2>/dev/null | awk -v q="all.q@$ME" '$1==q {print $6}')" ] &&
             qstat -f -q "all.q@$ME" 2>/dev/null | grep -q "^all.q@$ME"; }
wait_for 60 "queue all.q@$ME to come up (qstat -f; execd messages)" queue_ok
log "cluster up: $(qstat -g c | awk 'NR>2 {printf "%s used=%s avail=%s total=%s; ", $1, $3, $5, $6}')($(( $(date +%s) - T0 ))s)"

# --- 7. smoke tests ---------------------------------------------------------
[ "$VERIFY" = 1 ] || exit 0
check() { local what=$1; shift; "$@" || die "smoke test failed: $what"; log "ok: $what ($(( $(date +%s) - T0 ))s)"; }
# -sync y: qsub returns when the job (all array tasks) ended, with its exit code.
# -N is given everywhere: a name derived from a command with spaces is rejected.
cd "$W"

check "qsub -b y -cwd hostname" qsub -sync y -N host -b y -cwd -j y -o host.out hostname >/dev/null
check "  its output" grep -qx "$(hostname)" host.out

check "qsub -t 1-4 (array)" qsub -sync y -N arr -t 1-4 -b y -cwd -j y -o 'arr.$TASK_ID.out' \
  'echo task=$SGE_TASK_ID' >/dev/null
check "  its outputs" sh -c 'for i in 1 2 3 4; do grep -qx task=$i arr.$i.out || exit 1; done'

# two array tasks with one slot each run at the same time (each waits for the other's file)
# and see NSLOTS=1 ('-pe smp 1': the smp PE from the package)
check "qsub -t 1-2 -pe smp 1: both tasks run at once" qsub -sync y -N pair -t 1-2 -pe smp 1 -b y -cwd -j y \
  -o 'pair.$TASK_ID.out' 'touch pair.$SGE_TASK_ID.up; other=$((3 - SGE_TASK_ID)); for i in $(seq 100); do [ -e pair.$other.up ] && { echo "nslots=$NSLOTS together"; exit 0; }; sleep 0.2; done; exit 1' >/dev/null
check "  each saw NSLOTS=1" sh -c 'for i in 1 2; do grep -qx "nslots=1 together" pair.$i.out || exit 1; done'

check "qsub -q long.q -pe smp 2 -l h_vmem=100M,h_rt=0:5:0" qsub -sync y -N res -q long.q -pe smp 2 \
  -l h_vmem=100M,h_rt=0:5:0 -b y -cwd -j y -o res.out 'echo $QUEUE $NSLOTS; ulimit -v' >/dev/null
check "  job saw queue=long.q slots=2 vmem=2x100M" sh -c 'tr "\n" " " <res.out | grep -qx "long.q 2 204800 "'

check "oversized -pe smp refused with -w e" sh -c "! qsub -w e -N big -pe smp $(( SLOTS + 1 )) -b y true >/dev/null 2>&1"
check "job exit status reaches qsub -sync y" sh -c '! qsub -sync y -N fail -b y -o /dev/null -j y "exit 3" >/dev/null 2>&1'

# qstat + qdel on a running job
JID=$(qsub -terse -N sleeper -b y -o /dev/null -j y sleep 300)
job_state() { qstat -u '*' | awk -v j="$JID" '$1==j {print $5}'; }
wait_for 30 "job $JID to start" sh -c "[ \"\$(qstat -u '*' | awk -v j=$JID '\$1==j {print \$5}')\" = r ]"
check "qstat shows job $JID running" sh -c "[ \"$(job_state)\" = r ]"
qdel "$JID" >/dev/null
wait_for 30 "job $JID to go away" sh -c "! qstat -u '*' | awk '{print \$1}' | grep -qx $JID"
check "qdel $JID" true

# a job script connects back over TCP to a listener on 127.0.0.1,
# the way a worker job connects to the launcher's broker
perl -MIO::Socket::INET -e '
  my $s = IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => 0, Listen => 5, ReuseAddr => 1) or die $!;
  open(my $f, ">", "$ARGV[0].tmp") or die $!; print $f $s->sockport, "\n"; close $f; rename "$ARGV[0].tmp", $ARGV[0];
  local $SIG{ALRM} = sub { exit 1 }; alarm 120;
  my $c = $s->accept or die $!; my $line = <$c>; print $c "ack\n";
  open($f, ">", "$ARGV[1]") or die $!; print $f $line; close $f;' "$W/port" "$W/got" &
LPID=$!
wait_for 10 "TCP listener" test -s "$W/port"
PORT=$(cat "$W/port")
cat >"$W/worker.sh" <<EOF
#!/bin/bash
#$ -N ci-worker
#$ -o $W/tcp.out
#$ -j y
exec 3<>/dev/tcp/127.0.0.1/$PORT
echo "hello from job \$JOB_ID" >&3
read -r reply <&3
echo "\$reply"
EOF
check "job script connects to 127.0.0.1:$PORT" qsub -sync y "$W/worker.sh" >/dev/null
wait "$LPID" || true; LPID=""
check "  listener got hello, job got ack" sh -c "grep -q '^hello from job [0-9]' '$W/got' && grep -qx ack '$W/tcp.out'"

log "all smoke tests passed ($(( $(date +%s) - T0 ))s total)"

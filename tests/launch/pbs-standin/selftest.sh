#!/usr/bin/env bash
# Self-test of the PBS stand-in: array submit (command line and #PBS directives), the job's
# environment and output files, qstat states with and without -x, qdel, hold, reject, a
# failing server and unknown ids. Exits 0 when all pass; prints each failed check otherwise.
#   bash tests/launch/pbs-standin/selftest.sh
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export PATH="$here:$PATH"
tmp=$(mktemp -d)
export PBS_STANDIN_DIR=$tmp/state
cleanup() {
  for f in "$PBS_STANDIN_DIR"/*.json; do
    [ -e "$f" ] && qdel "$(basename "$f" .json)" >/dev/null 2>&1
  done
  rm -rf "$tmp"
}
trap cleanup EXIT
unset PBS_STANDIN_HOLD PBS_STANDIN_QSTAT_FAIL PBS_STANDIN_REJECT

failures=0
pass() { echo "ok   $*"; }
fail() { echo "FAIL $*"; failures=$((failures + 1)); }
check() { local what=$1; shift; if "$@"; then pass "$what"; else fail "$what"; fi; }
wait_until() {  # wait_until SECONDS CMD...
  local end=$((SECONDS + $1)); shift
  until "$@"; do [ $SECONDS -lt $end ] || return 1; sleep 0.1; done
}
# job_state ID: the job_state of the first block qstat -f -x -t prints for ID
states() { qstat -f -x -t "$1" 2>/dev/null | awk '/^Job Id:/ {id=$3} /job_state =/ {print id, $3}'; }
state_of() { states "$1" | awk -v id="$2" '$1==id {print $2}'; }
# gone PID: the process has exited (no /proc entry, or a zombie nobody reaped yet)
gone() { [ ! -e "/proc/$1" ] || [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" = Z ]; }

# --- missing state dir
out=$(PBS_STANDIN_DIR='' qsub /dev/null 2>&1); rc=$?
check "qsub without PBS_STANDIN_DIR fails clearly" test $rc -ne 0 -a -n "$(grep PBS_STANDIN_DIR <<<"$out")"

mkdir -p "$tmp/work" "$tmp/out"
cd "$tmp/work" || exit 1

# --- a 2-sub-job array from #PBS directives; each sub-job writes a file and then waits
cat >"$tmp/array.sh" <<EOF
#!/bin/bash
#PBS -N acme
#PBS -l select=1:ncpus=3:mem=1gb
#PBS -l walltime=00:10:00
#PBS -J 1-2
#PBS -q workq
#PBS -A proj1
#PBS -o $tmp/out/acme.^array_index^.out
#PBS -j oe
#PBS -m abe
echo "index=\$PBS_ARRAY_INDEX arrayid=\$PBS_ARRAYID jobid=\$PBS_JOBID name=\$PBS_JOBNAME ncpus=\$NCPUS/\$PBS_NCPUS/\$PBS_NP workdir=\$PBS_O_WORKDIR cwd=\$PWD" >$tmp/out/env.\$PBS_ARRAY_INDEX
echo "to stdout \$PBS_ARRAY_INDEX"
echo "to stderr \$PBS_ARRAY_INDEX" >&2
while [ ! -e $tmp/release ]; do sleep 0.1; done
EOF
jid=$(qsub "$tmp/array.sh"); rc=$?
check "qsub array prints NUM[].standin, exit 0 (got '$jid' rc=$rc)" eval '[[ $rc -eq 0 && $jid =~ ^[0-9]+\[\]\.standin$ ]]'
num=${jid%%[*}
check "both sub-jobs ran and wrote their file" wait_until 10 test -s "$tmp/out/env.1" -a -s "$tmp/out/env.2"
check "sub-job 1 environment" grep -qx "index=1 arrayid=1 jobid=$num\[1\].standin name=acme ncpus=3/3/3 workdir=$tmp/work cwd=$HOME" "$tmp/out/env.1"
check "sub-job 2 environment" grep -qx "index=2 arrayid=2 jobid=$num\[2\].standin name=acme ncpus=3/3/3 workdir=$tmp/work cwd=$HOME" "$tmp/out/env.2"
check "-o with ^array_index^ and -j oe: stdout+stderr in acme.1.out" \
  wait_until 5 sh -c "grep -qx 'to stdout 1' '$tmp/out/acme.1.out' && grep -qx 'to stderr 1' '$tmp/out/acme.1.out'"
check "qstat -f -x -t: parent B, sub-jobs R" test "$(states "$jid" | tr '\n' ' ')" = "$jid B ${num}[1].standin R ${num}[2].standin R "
check "qstat -t -f NUM (no []) finds it too" test "$(qstat -t -f "$num" | grep -c 'job_state = R')" = 2
check "qstat -f shows Job_Name and comment" sh -c "qstat -t -f '$jid' | grep -q '^    Job_Name = acme\$' && qstat -t -f '$jid' | grep -q '^    comment = Job run at '"
check "qstat -f sub-job id alone" test "$(state_of "${num}[2].standin" "${num}[2].standin")" = R

# finish the jobs: F with -x, gone without -x
touch "$tmp/release"
check "sub-jobs finish: F with -x" wait_until 10 sh -c "[ \"\$(qstat -f -x -t '$jid' | grep -c 'job_state = F')\" = 3 ]"
check "finished sub-jobs have Exit_status = 0" test "$(qstat -f -x -t "$jid" | grep -c 'Exit_status = 0')" = 2
err=$(qstat -t -f "$jid" 2>&1 >/dev/null); rc=$?
check "without -x a finished array is unknown: exit 153 (got $rc)" test $rc -eq 153
check "  and says 'qstat: Unknown Job Id $jid' (got '$err')" test "$err" = "qstat: Unknown Job Id $jid"

# --- Torque style: -t on the command line, nodes=1:ppn=C, default output files in the state dir
printf '#!/bin/bash\n#PBS -l nodes=1:ppn=2\necho "$PBS_ARRAYID $PBS_NP"\nexit 3\n' >"$tmp/torque.sh"
jid2=$(qsub -t 1-2 -N tq "$tmp/torque.sh")
num2=${jid2%%[*}
check "qsub -t 1-2 prints NUM[].standin" eval '[[ $jid2 =~ ^[0-9]+\[\]\.standin$ ]]'
check "Torque sub-jobs finish with Exit_status = 3" wait_until 10 sh -c "[ \"\$(qstat -f -x -t '$jid2' | grep -c 'Exit_status = 3')\" = 2 ]"
check "default output file in the state dir" grep -qx "2 2" "$PBS_STANDIN_DIR/tq.o$num2.2"

# --- plain (non-array) job, qdel while running
printf '#!/bin/bash\n#PBS -N sleeper\nsleep 300\n' >"$tmp/sleep.sh"
jid3=$(qsub "$tmp/sleep.sh")
check "plain job id is NUM.standin" eval '[[ $jid3 =~ ^[0-9]+\.standin$ ]]'
check "plain job R" test "$(state_of "$jid3" "$jid3")" = R
pid=$(qstat -f "$jid3" | awk '/session_id =/ {print $3}')
qdel -W force "$jid3"; rc=$?
check "qdel -W force exit 0" test $rc -eq 0
check "qdel killed the job's process (pid '$pid')" eval '[ -n "$pid" ] && gone "$pid"'
check "after qdel: F with -x" test "$(state_of "$jid3" "$jid3")" = F
err=$(qdel "$jid3" 2>&1); rc=$?
check "qdel again: 'qdel: Unknown Job Id $jid3', exit 153 (got '$err' rc=$rc)" test "$err/$rc" = "qdel: Unknown Job Id $jid3/153"

# --- qdel of a running array, a script that ignores SIGTERM (SIGKILL after 2 s)
printf '#!/bin/bash\ntrap "" TERM\nwhile :; do sleep 0.1; done\n' >"$tmp/stubborn.sh"
jid4=$(qsub -J 1-2 -N stubborn "$tmp/stubborn.sh")
pids=$(qstat -f -t "$jid4" | awk '/session_id =/ {print $3}' | tr '\n' ' ')
check "array qdel target has 2 running sub-jobs" test "$(wc -w <<<"$pids")" = 2
qdel "$jid4"
all_gone() { local p; for p; do gone "$p" || return 1; done; }
# shellcheck disable=SC2086
check "qdel killed both (SIGKILL after SIGTERM)" all_gone $pids
check "array after qdel: parent and sub-jobs F" test "$(qstat -f -x -t "$jid4" | grep -c 'job_state = F')" = 3

# --- hold
jid5=$(PBS_STANDIN_HOLD=1 qsub -J 1-2 "$tmp/array.sh")
sleep 0.5
check "held array: parent and sub-jobs Q" test "$(qstat -f -t "$jid5" | grep -c 'job_state = Q')" = 3
check "held comment" grep -q "^    comment = Not Running: Insufficient amount of resource: ncpus (R: 64 A: 2 T: 2)\$" \
  <(qstat -f -t "$jid5")
check "held job never started" test "$(qstat -f -t "$jid5" | grep -c session_id)" = 0
qdel "$jid5"
check "qdel of a held job" test "$(qstat -f -x -t "$jid5" | grep -c 'job_state = F')" = 3

# --- reject
err=$(PBS_STANDIN_REJECT='Job violates queue and/or server resource limits' qsub "$tmp/array.sh" 2>&1); rc=$?
check "reject: 'qsub: MSG', exit 1 (got '$err' rc=$rc)" test "$err/$rc" = "qsub: Job violates queue and/or server resource limits/1"

# --- qstat failure, unknown ids
err=$(PBS_STANDIN_QSTAT_FAIL=1 qstat -f "$jid" 2>&1); rc=$?
check "qstat fail: message and exit 1 (got '$err' rc=$rc)" test "$err/$rc" = "qstat: cannot connect to server standin (errno=15010)/1"
err=$(qstat -f 99999.standin 2>&1); rc=$?
check "qstat unknown id: exit 153 (got '$err' rc=$rc)" test "$err/$rc" = "qstat: Unknown Job Id 99999.standin/153"
err=$(qdel 99999[].standin 2>&1); rc=$?
check "qdel unknown id: exit 153 (got '$err' rc=$rc)" test "$err/$rc" = "qdel: Unknown Job Id 99999[].standin/153"

if [ $failures -ne 0 ]; then
  echo "pbs-standin selftest: $failures check(s) FAILED"
  exit 1
fi
echo "pbs-standin selftest: all checks passed"

#!/bin/bash
#PBS -N acme
#PBS -J 1-4
#PBS -l select=1:ncpus=2:mem=3072mb
#PBS -l walltime=01:30:00
#PBS -q short
#PBS -A proj
#PBS -j oe
#PBS -l place=scatter
#PBS -m abe

exec >>'/logs'/acme-worker-"${PBS_JOBID}".log 2>&1

# acme-launch golden: one acme worker per array task
export ACME_BROKER='tcp://10.0.0.1:5555'
export ACME_LAUNCH_ID='golden'
export ACME_WORKER_OF="$ACME_BROKER"  # apps that serve their own functions
export ACME_WORKER_SLOTS=2
exec '/opt/acme/bin/acme-worker' --connect "$ACME_BROKER" --slots 2 --launch-id "$ACME_LAUNCH_ID" --give-up-after 600
# submit: qsub @ACME_HOME@/launches/golden/job.sh

#!/bin/bash
#$ -N acme
#$ -S /bin/bash
#$ -t 1-4
#$ -pe smp 2
#$ -l h_vmem=1536M
#$ -l h_rt=01:30:00
#$ -q short
#$ -A proj
#$ -j y
#$ -o /logs/acme-worker-$JOB_ID.$TASK_ID.log
#$ -P myproject
#$ -R y

# acme-launch golden: one acme worker per array task
export ACME_BROKER='tcp://10.0.0.1:5555'
export ACME_LAUNCH_ID='golden'
export ACME_WORKER_OF="$ACME_BROKER"  # apps that serve their own functions
export ACME_WORKER_SLOTS=2
exec '/opt/acme/bin/acme-worker' --connect "$ACME_BROKER" --slots 2 --launch-id "$ACME_LAUNCH_ID" --give-up-after 600
# submit: qsub -terse @ACME_HOME@/launches/golden/job.sh

#!/bin/bash
#SBATCH --job-name=acme
#SBATCH --array=1-4
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=2
#SBATCH --mem=3072M
#SBATCH --time=90
#SBATCH --partition=short
#SBATCH --account=proj
#SBATCH --output=/logs/acme-worker-%A_%a.log
#SBATCH --qos=high
#SBATCH --constraint=avx2

# acme-launch golden: one acme worker per array task
export ACME_BROKER='tcp://10.0.0.1:5555'
export ACME_LAUNCH_ID='golden'
export ACME_WORKER_OF="$ACME_BROKER"  # apps that serve their own functions
export ACME_WORKER_SLOTS=2
exec '/opt/acme/bin/acme-worker' --connect "$ACME_BROKER" --slots 2 --launch-id "$ACME_LAUNCH_ID" --give-up-after 600
# submit: sbatch --parsable @ACME_HOME@/launches/golden/job.sh

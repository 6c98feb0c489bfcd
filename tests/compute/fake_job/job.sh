#!/bin/bash
# A run folder's job script as mlds.train.run describes it: only python3 (standard
# library), MLDS_* variables, progress on stdout, the final state in
# mlds-job.json, checkpoints so that MLDS_RESUME=1 continues.
set -u
echo "job ${MLDS_JOB_ID:-?} on $(uname -n) resume=${MLDS_RESUME:-0} mpirun=[${MLDS_MPIRUN:-}] threads=${MLDS_THREADS:-}"
exec python3 work.py

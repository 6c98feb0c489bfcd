# batch script (slurm, .<HASH>.sub in /work/alice/mlds/jobs/00000000-000000-0000)
#!/bin/bash
#SBATCH --job-name=mlds_0000000000
#SBATCH --nodes=2
#SBATCH --ntasks=8
#SBATCH --cpus-per-task=2
#SBATCH --time=02:30:00
#SBATCH --partition=small
#SBATCH --account=hp000000
#SBATCH --output=mlds-scheduler.log



REMOTE_ROOT=$(readlink -f /work/alice/mlds/jobs/00000000-000000-0000)
echo 0 > "$REMOTE_ROOT"/<HASH>_flag_if_job_task_fail
test $? -ne 0 && exit 1


module load n2p2/2.3.0


export DPDISPATCHER_NUMBER_NODE=2
export DPDISPATCHER_CPU_PER_NODE=8
export DPDISPATCHER_GPU_PER_NODE=0
export DPDISPATCHER_QUEUE_NAME=small
export DPDISPATCHER_GROUP_SIZE=1
export MLDS_JOB_ID=00000000-000000-0000
export MLDS_N2P2_BIN=/opt/n2p2/bin
export MLDS_MPIRUN='srun -n 8'
export MLDS_THREADS=2
export OMP_NUM_THREADS=2

if [ "${SLURM_RESTART_COUNT:-0}" -gt 0 ]; then export MLDS_RESUME=1; fi

source "$REMOTE_ROOT"/.<HASH>.sub.run

cd "$REMOTE_ROOT"
test $? -ne 0 && exit 1

wait
FLAG_IF_JOB_TASK_FAIL=$(cat <HASH>_flag_if_job_task_fail)
if test $FLAG_IF_JOB_TASK_FAIL -eq 0; then touch <HASH>_job_tag_finished; else exit 1;fi




# sourced task part (.<HASH>.sub.run)

cd "$REMOTE_ROOT"
cd .
test $? -ne 0 && exit 1
if [ ! -f <HASH>_task_tag_finished ] ;then
   ( bash job.sh ) 1>>mlds-job.log 2>>mlds-job.log 
  if test $? -eq 0; then touch <HASH>_task_tag_finished; else echo 1 > "$REMOTE_ROOT"/<HASH>_flag_if_job_task_fail;tail -v -c 1000 "$REMOTE_ROOT"/./mlds-job.log > "$REMOTE_ROOT"/<HASH>_last_err_file;fi
fi &
wait 

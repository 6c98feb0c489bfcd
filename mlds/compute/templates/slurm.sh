#!/bin/bash
#SBATCH --job-name={job_name}
#SBATCH --nodes={nodes}
#SBATCH --ntasks={ranks}
#SBATCH --cpus-per-task={threads}
#SBATCH --time={walltime}
#SBATCH --partition={queue}
#SBATCH --account={account}
#SBATCH --output={log}

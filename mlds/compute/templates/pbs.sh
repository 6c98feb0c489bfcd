#!/bin/bash
#PBS -N {job_name}
#PBS -l select={nodes}:ncpus={cpus_per_node}:mpiprocs={ranks_per_node}:ompthreads={threads}
#PBS -l walltime={walltime}
#PBS -q {queue}
#PBS -A {account}
#PBS -j oe
#PBS -o {log}

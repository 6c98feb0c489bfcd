#!/bin/bash
#BSUB -J {job_name}
#BSUB -n {ranks}
#BSUB -R "span[ptile={ranks_per_node}]"
#BSUB -W {walltime_hm}
#BSUB -q {queue}
#BSUB -P {account}
#BSUB -o {log}

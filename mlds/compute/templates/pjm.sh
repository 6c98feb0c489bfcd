#!/bin/bash
#PJM -N {job_name}
#PJM -L "node={nodes}"
#PJM -L "rscgrp={queue}"
#PJM -L "elapse={walltime}"
#PJM --mpi "max-proc-per-node={ranks_per_node}"
#PJM -g {account}
#PJM -j
#PJM -o {log}
#PJM -S

# The rules take their jobs from the job table (transrec.jobs), as dvc.yaml does: a rule's inputs, params,
# command and resources are the table's, for the job its wildcards pick. The rules only add logs.

import re

from snakemake.exceptions import WorkflowError


def one_of(names):
    """A wildcard constraint matching exactly these names (a pooled source's name holds '+')."""
    return "|".join(re.escape(n) for n in names) or "none"


wildcard_constraints:
    platform=one_of(PLATFORMS),


PKG = os.path.relpath(os.path.join(workflow.basedir, "..", "src", "transrec"))  # "src/transrec" from the checkout


def job_of(step):
    return lambda w: transrec_jobs.job(config, step, **dict(w.items()))


def inputs_of(step):
    """Data inputs and the code the job runs (as files: Snakemake reruns on a newer input file)."""
    return lambda w: [*(j := job_of(step)(w)).inputs, *j.code_files(PKG)]


def params_of(step):
    """The values of the params keys the job reads (Snakemake reruns it when they change)."""
    return lambda w: job_of(step)(w).param_values(config)


def cmd_of(step):
    return lambda w: job_of(step)(w).cmd


def data_outputs(step):
    j = transrec_jobs.job(config, step, platform="{platform}")
    return [*j.outputs, *j.metrics]


# Threads of a job that uses every core it is given: a local run's --cores. A cluster run has no total
# (each job gets its own allocation): the SLURM profile sets these rules' threads (set-threads), which the
# plugin requests as cpus-per-task.
try:
    ALL_CORES = workflow.cores
except WorkflowError:
    ALL_CORES = 1

# CPU threads of a training job (transrec.jobs.train_threads): all cores on a CPU machine;
# train.threads_per_gpu per GPU where GPUs exist, so GPU jobs run side by side.
TRAIN_THREADS = transrec_jobs.train_threads(config, transrec_gpu_slots.device_count()) or ALL_CORES

"""dav2-batch: depth for a whole corpus on Ray Data, resumable, from one laptop to a cluster.

Past one machine, work runs on Ray Data, with the same artifacts, backends and
pre/post-processing as dav2-run; dav2 adds no scheduler of its own. Ray is an extra
(`pip install 'dav2[batch]'`) and only this package and `dav2.cli.batch` import it, never the
runtime.

The job, as Ray Data stages (`job.py`):

    inputs (a folder, a glob, a text file of paths; videos expanded into frames)
      -> decode + preprocess        CPU tasks          (stages.decode_batch)
      -> inference                  an actor pool      (stages.InferenceActor: one backend per actor)
      -> postprocess + write        CPU tasks          (stages.write_batch, outputs.py)
      -> manifest rows              the driver         (manifest.py: one Parquet row per input)

Modules: `options.py` (the user's choices and their limits), `inputs.py` (what to process and
the output name of each item), `stages.py` and `outputs.py` (the work done inside Ray),
`manifest.py` (the record of what was done, and what --resume skips), `cluster.py` (starting
or joining Ray, quietly), `job.py` (the job itself and its summary).
"""

from dav2.batch.options import BatchOptions
from dav2.batch.summary import BatchSummary

__all__ = ["BatchOptions", "BatchSummary", "run_batch"]


def run_batch(options: BatchOptions) -> BatchSummary:
    """Run the job `options` describe (imports Ray; see job.run_batch)."""
    from dav2.batch.job import run_batch as run

    return run(options)

"""The command-line entry points, one module per command (thin: parse, call, print).

dav2-export (export.py), dav2-run (run.py), dav2-batch (batch.py), dav2-bench (bench.py),
dav2-eval (eval.py), dav2-app (app.py); common.py holds the error handling and the option
groups they share.

Ctrl-C while these modules load ends a console script with one line (dav2.cli.startup), so
the handler is installed before anything heavy is imported.
"""

from dav2.cli.startup import quiet_start

quiet_start()

from dav2.cli.app import app_main  # noqa: E402
from dav2.cli.batch import batch_main  # noqa: E402
from dav2.cli.bench import bench_main  # noqa: E402
from dav2.cli.eval import eval_main  # noqa: E402
from dav2.cli.export import export_main  # noqa: E402
from dav2.cli.run import run_main  # noqa: E402

__all__ = ["app_main", "batch_main", "bench_main", "eval_main", "export_main", "run_main"]

"""The command-line entry points, one module per command (thin: parse, call, print).

dav2-export (export.py), dav2-run (run.py), dav2-bench (bench.py), dav2-eval (eval.py),
dav2-app (app.py); common.py holds the error handling and the option groups they share.
"""

from dav2.cli.app import app_main
from dav2.cli.batch import batch_main
from dav2.cli.bench import bench_main
from dav2.cli.eval import eval_main
from dav2.cli.export import export_main
from dav2.cli.run import run_main

__all__ = ["app_main", "batch_main", "bench_main", "eval_main", "export_main", "run_main"]

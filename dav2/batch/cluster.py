"""Starting Ray in this process, or joining a cluster, with Ray's own chatter kept down.

Without --address, Ray starts here (`ray.init()`), so dav2-batch runs on a laptop with nothing
else installed or started, and is shut down when the job ends. `--address auto` joins the
cluster this machine belongs to (`ray start` ran here); `ray://host:10001` joins a remote one
through Ray Client. A Ray session already open in this process (a notebook, the tests) is used
as it is and left open.

An embedded Ray gets as many logical CPUs as the machine has cores, and at least enough for
the inference actors plus one for the decode and write tasks: Ray's CPUs are a scheduling
budget, not a reservation, and an actor with two threads on a two-core machine must still
leave room for the tasks that feed it (the cores are shared, as dav2-run's threads share them).

Ray's banners, worker log forwarding and C++ warnings would bury the summary, so they are
turned down (errors still show); Ray Data's progress bars stay. Turning the C++ logs down
(RAY_BACKEND_LOG_LEVEL) makes the driver's core worker print one INFO line of its own as it
starts ("logging.cc: Set ray log level from environment variable ...", logged before the
level applies), so `ray.init` runs with the process's stderr going through a filter that
drops that line and passes everything else on (`without_log_level_line`).
"""

import contextlib
import logging
import os
import re
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from dav2.errors import Dav2Error

QUIET_ENV = {
    "RAY_BACKEND_LOG_LEVEL": "fatal",  # C++ core worker warnings on the driver's stderr
    "RAY_DEDUP_LOGS": "1",
}
# what Ray's C++ logging prints, whatever the level, when RAY_BACKEND_LOG_LEVEL is set
LOG_LEVEL_LINE = re.compile(rb"^\[[^\]]*\] .*logging\.cc:\d+: Set ray log level from environment variable")


@dataclass
class RaySession:
    """The Ray this job runs on; `close()` shuts it down only when this job started it."""

    started: bool
    address: str

    def close(self) -> None:
        if self.started:
            import ray

            ray.shutdown()


def quiet_ray() -> None:
    """Before Ray is imported: its C++ logs down to errors (unless the user set them)."""
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)


def connect(address: str | None, min_cpus: float) -> RaySession:
    """Ray for this job: the session already open, a new embedded one, or the cluster at `address`."""
    quiet_ray()
    import ray

    if ray.is_initialized():
        return RaySession(started=False, address="this process's Ray session")
    common = {"logging_level": logging.ERROR, "log_to_driver": False, "include_dashboard": False}
    with kept_sigterm_handler():
        return start_or_join(ray, address, min_cpus, common)


@contextlib.contextmanager
def kept_sigterm_handler() -> Iterator[None]:
    """ray.init replaces the driver's SIGTERM handler with one that exits at once (status 15);
    dav2's own (SIGTERM handled like Ctrl-C: manifest written, exit 143) is put back."""
    main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if main else None
    try:
        yield
    finally:
        if main and previous is not None:
            signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def without_log_level_line() -> Iterator[None]:
    """Everything written to file descriptor 2 inside (C++ included) is held in a temporary file
    and written to the real stderr afterwards, without the LOG_LEVEL_LINE; errors stay visible."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            kept = b"".join(line for line in held.read().splitlines(keepends=True) if not LOG_LEVEL_LINE.match(line))
            while kept:
                kept = kept[os.write(2, kept) :]


def start_or_join(ray, address: str | None, min_cpus: float, common: dict) -> RaySession:
    try:
        if address is None:
            cpus = max(os.cpu_count() or 1, int(-(-min_cpus // 1)))
            with without_log_level_line():
                ray.init(num_cpus=cpus, **common)
            quiet_loggers()
            return RaySession(started=True, address=f"Ray in this process ({cpus} CPUs)")
        with without_log_level_line():
            ray.init(address=address, **common)
    except ConnectionError as exc:
        raise Dav2Error(f"cannot reach the Ray cluster at {address}: {exc}") from None
    quiet_loggers()
    return RaySession(started=True, address=address)


def quiet_loggers() -> None:
    """Ray Data's execution banners ("Running Dataset ...") off; warnings and errors stay."""
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.WARNING)


def cluster_cpus() -> float:
    import ray

    return float(ray.cluster_resources().get("CPU", 0.0))

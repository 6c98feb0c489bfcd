"""Where conversions run: in this process, a local process pool, or a Dask cluster.

The default is the standard library's :class:`concurrent.futures.ProcessPoolExecutor`
(one process per core): at the scale of one user's run tree on one machine this
suffices.  For hundreds of thousands of runs, ``dask=`` sends the same task
function to a Dask cluster instead of a pool of our own:

* ``"local"``: a :class:`distributed.LocalCluster` on this machine;
* ``"tcp://host:8786"`` (any scheduler address): an existing cluster;
* ``"slurm"``, ``"pbs"``, ``"sge"``, ``"lsf"``: workers from the batch system via
  ``dask-jobqueue``, configured the usual way (``~/.config/dask/jobqueue.yaml``:
  queue, cores, memory, walltime), scaled to ``workers`` jobs.

Workers write staging files into a folder next to the store; Dask workers on
other nodes need it on a shared filesystem (the store on ``$HOME`` or a project
directory usually is).
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any, Callable, Iterable, Iterator, TypeVar

from mlds.errors import MldsError

T = TypeVar("T")
R = TypeVar("R")
JOBQUEUE = {"slurm": "SLURMCluster", "pbs": "PBSCluster", "sge": "SGECluster", "lsf": "LSFCluster",
            "htcondor": "HTCondorCluster", "oar": "OARCluster", "moab": "MoabCluster"}


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def run_all(fn: Callable[[T], R], items: list[T], *, workers: int | None = None, dask: str | None = None,
            ) -> Iterator[tuple[T, R | BaseException]]:
    """``(item, fn(item))`` in completion order; an exception is returned, not raised, per item."""
    if not items:
        return iter(())
    if dask:
        return _run_dask(fn, items, dask, workers)
    n = min(workers or default_workers(), len(items))
    if n <= 1:
        return _run_inline(fn, items)
    return _run_pool_or_inline(fn, items, n)


def _run_pool_or_inline(fn: Callable[[T], R], items: list[T], n: int) -> Iterator[tuple[T, R | BaseException]]:
    """The pool; if its workers cannot even start, everything here instead (slower, still correct).

    Workers fail at start-up when the calling script re-runs itself on import
    (no ``if __name__ == "__main__":`` guard, which forkserver/spawn need) or the
    system refuses new processes.
    """
    from concurrent.futures.process import BrokenProcessPool

    got_one = False
    for item, out in _run_pool(fn, items, n):
        if isinstance(out, BrokenProcessPool) and not got_one:
            import warnings

            warnings.warn(f"worker processes could not start ({out}); converting in this process", stacklevel=3)
            yield from _run_inline(fn, items)
            return
        got_one = True
        yield item, out


def _run_inline(fn: Callable[[T], R], items: Iterable[T]) -> Iterator[tuple[T, R | BaseException]]:
    for item in items:
        try:
            yield item, fn(item)
        except Exception as err:  # noqa: BLE001 - reported per item by the caller
            yield item, err


_PRELOAD = ["mlds.ingest.worker", "mlds.io.vasp_outcar", "mlds.io.vasp_xml", "mlds.io.qe_pw", "mlds.io.qe_xml",
            "mlds.io.runs", "mlds.format.writer"]


def _mp_context():
    """How worker processes start.

    * fork, when this process runs no other thread: nothing to re-import, so a
      pool is ready at once (a forked child of a multi-threaded process can
      inherit a lock held by another thread, hence the condition);
    * otherwise forkserver (an SSH transport or a progress thread is running),
      with the worker's modules imported once in the server, not per worker;
    * fork as well when the main script is not a file (``python - < script``),
      which forkserver cannot re-import.
    """
    import multiprocessing as mp
    import threading

    methods = mp.get_all_start_methods()
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    if "fork" in methods and (threading.active_count() == 1 or (main_file and not os.path.exists(main_file))):
        return mp.get_context("fork")
    if "forkserver" in methods:
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(_PRELOAD)
        return ctx
    return None


def _exit_with_parent(parent: int, interval: float = 1.0) -> None:
    """Worker initializer: end this worker when the ingest process is gone.

    A pool's workers hold their own task queue open, so when the ingest is
    SIGKILLed (job time limit, OOM killer) they would wait forever; a daemon
    thread checks once a second that the parent still exists.
    """
    import threading
    import time

    def watch() -> None:
        while True:
            time.sleep(interval)
            try:
                os.kill(parent, 0)
            except ProcessLookupError:
                os._exit(1)
            except PermissionError:
                pass  # exists (another user's process would be a reused pid: unlikely within a second)

    threading.Thread(target=watch, name="mlds-exit-with-parent", daemon=True).start()


def _run_pool(fn: Callable[[T], R], items: list[T], n: int) -> Iterator[tuple[T, R | BaseException]]:
    from concurrent.futures.process import BrokenProcessPool

    pending = iter(items)
    with ProcessPoolExecutor(max_workers=n, mp_context=_mp_context(), initializer=_exit_with_parent,
                             initargs=(os.getpid(),)) as pool:
        # a bounded window of submitted tasks: memory for the futures stays flat on huge trees
        running: dict[Any, T] = {}
        broken: BaseException | None = None
        try:
            for item in pending:
                running[pool.submit(fn, item)] = item
                if len(running) >= 4 * n:
                    break
            while running:
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for fut in done:
                    item = running.pop(fut)
                    try:
                        yield item, fut.result()
                    except Exception as err:  # noqa: BLE001
                        yield item, err
                    nxt = next(pending, None)
                    if nxt is not None:
                        running[pool.submit(fn, nxt)] = nxt
        except BrokenProcessPool as err:  # a worker died (killed, out of memory): the rest is tried next time
            broken = err
        if broken is not None:
            for item in [*running.values(), *pending]:
                yield item, broken


def _run_dask(fn: Callable[[T], R], items: list[T], target: str, workers: int | None
              ) -> Iterator[tuple[T, R | BaseException]]:
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise MldsError("--dask needs Dask: pip install 'mlds[dask]'") from None
    cluster = None
    if target == "local":
        cluster = LocalCluster(n_workers=workers or default_workers(), threads_per_worker=1, processes=True,
                               dashboard_address=None)
        client = Client(cluster)
    elif target in JOBQUEUE:
        try:
            import dask_jobqueue
        except ImportError:
            raise MldsError(f"--dask {target} needs dask-jobqueue: pip install 'mlds[dask]'") from None
        cluster = getattr(dask_jobqueue, JOBQUEUE[target])()
        cluster.scale(jobs=workers or 1)
        client = Client(cluster)
    elif "://" in target:
        client = Client(target)
    else:
        raise MldsError(f"--dask {target!r}: use local, a scheduler address (tcp://host:8786) or one of "
                        f"{', '.join(sorted(JOBQUEUE))}")
    try:
        futures = {}
        for item in items:
            futures[client.submit(fn, item, pure=False)] = item
        for fut in as_completed(futures):
            item = futures[fut]
            try:
                yield item, fut.result()
            except Exception as err:  # noqa: BLE001
                yield item, err
    finally:
        client.close()
        if cluster is not None:
            cluster.close()

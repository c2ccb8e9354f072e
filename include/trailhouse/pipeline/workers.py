"""Transform worker processes: one batch's files spread over the cores a run may use.

Under a scheduler the executor already runs a run's mapped transform tasks side by side, one
process each, so a task transforms its batch in its own process. `trailhouse run` goes
through `dag.test()`, which runs tasks one after another in the CLI's process: there the run
opens a pool of worker processes (`transform_pool`) and each transform task splits its batch
over it. docs/performance.md explains the choice.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from typing import Any

from trailhouse import faults, storage
from trailhouse.config import Mav
from trailhouse.ingest.clients import open_source
from trailhouse.ingest.source import ObjectInfo
from trailhouse.ingest.transform import DEFAULT_LIMITS, BatchResult, Limits, split_objects, transform_batch

# A part smaller than this is not worth a process: starting a worker (imports) costs about
# what transforming 4 MiB of gzip does, so a small batch stays in the task's process.
MIN_PART_BYTES = 4 * 1024 * 1024

_pool: ProcessPoolExecutor | None = None
_pool_size = 0


def usable_cores() -> int:
    """The CPUs this process may run on (its affinity, which containers and taskset narrow)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def spawn_pool(workers: int) -> ProcessPoolExecutor:
    """Worker processes started fresh (spawn: a fork would copy boto3/DuckDB threads mid-flight)
    that die with the process that made them, and take it with them at a fault point.
    """
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_start_worker, initargs=(os.getpid(),))


def _start_worker(parent: int) -> None:
    faults.die_with(parent)

    def exit_when_orphaned() -> None:
        # The parent killed (a fault, the OOM killer, Airflow ending the task): stop too
        # rather than linger on a task nobody waits for.
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=exit_when_orphaned, name="exit-when-orphaned", daemon=True).start()


@contextmanager
def transform_pool(processes: int) -> Iterator[None]:
    """Within this block, transforms in this process spread big batches over `processes` workers.

    The workers start on the first batch big enough to split, and serve every batch after it.
    """
    global _pool, _pool_size
    _pool_size = processes
    try:
        yield
    finally:
        _pool_size = 0
        if _pool is not None:
            _pool.shutdown(cancel_futures=True)
            _pool = None


def transform(mav: Mav, objects: Sequence[ObjectInfo], *, staging_dir: str,
              threads: int, limits: Limits = DEFAULT_LIMITS) -> tuple[BatchResult, list[dict[str, Any]]]:
    """The batch's result, and where each part of it ran: [{pid, started, finished, files}].

    In this process without a pool (or for a small batch); else split into parts of about
    equal bytes, one per worker. A failed part fails the batch and its siblings' staged files
    are deleted, as transform_batch does for its own.
    """
    total = sum(o.size for o in objects)
    parts = split_objects(objects, min(_pool_size, total // MIN_PART_BYTES))
    if len(parts) <= 1:
        result, where = _transform_part(mav, objects, staging_dir, threads, limits)
        return BatchResult.from_dict(result), [where]
    futures = [_worker_pool().submit(_transform_part, mav, part, staging_dir, threads, limits) for part in parts]
    wait(futures)
    return _merge(futures)


def _worker_pool() -> ProcessPoolExecutor:
    global _pool
    if _pool is None:
        _pool = spawn_pool(_pool_size)
    return _pool


def _merge(futures: list[Future[Any]]) -> tuple[BatchResult, list[dict[str, Any]]]:
    global _pool
    failed = [f.exception() for f in futures if f.exception() is not None]
    done = [f.result() for f in futures if f.exception() is None]
    if failed:
        for result, _where in done:
            for uri in result["staged"]:
                storage.remove_file(uri)
        if any(isinstance(e, BrokenProcessPool) for e in failed) and _pool is not None:
            _pool.shutdown(cancel_futures=True)  # a worker died: the next batch starts fresh ones
            _pool = None
        raise failed[0]  # type: ignore[misc]
    return BatchResult.merge([BatchResult.from_dict(r) for r, _ in done]), [where for _, where in done]


def _transform_part(mav: Mav, objects: Sequence[ObjectInfo], staging_dir: str, threads: int,
                    limits: Limits = DEFAULT_LIMITS) -> tuple[dict[str, Any], dict[str, Any]]:
    started = time.time()
    result = transform_batch(open_source(mav, connections=threads), objects, mav=mav.name, staging_dir=staging_dir,
                             threads=threads, limits=limits)
    where = {"pid": os.getpid(), "started": started, "finished": time.time(), "files": len(objects)}
    return result.to_dict(), where

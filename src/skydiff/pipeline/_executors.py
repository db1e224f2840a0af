"""Where quanta run: in this process, in local worker processes, or on a Dask cluster.

Every executor has one method, :meth:`Executor.map`, yielding ``(item,
outcome)`` pairs as the work completes, where ``outcome`` is the function's
return value or the exception it raised; one failure never stops the others.
Functions and items must pickle (all skydiff tasks, configs and data do).
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ..errors import InvalidParameterError

__all__ = ["DaskExecutor", "Executor", "InProcessExecutor", "ProcessExecutor", "make_executor"]


class Executor:
    """Base class: run ``fn(item)`` for each item, yielding ``(item, result or exception)``."""

    name = "executor"

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[tuple[Any, Any]]:
        raise NotImplementedError

    def close(self) -> None:
        """Release workers (a no-op for executors without any)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class InProcessExecutor(Executor):
    """One quantum after another in this process (debugging, small runs)."""

    name = "in-process"

    def map(self, fn, items):
        for item in items:
            try:
                yield item, fn(item)
            except Exception as error:  # reported per quantum
                yield item, error


def _init_worker(threads: int) -> None:
    """Each worker process gets its share of the cores for numba and the FFTs."""
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    try:
        import numba

        numba.set_num_threads(max(1, threads))
    except (ImportError, ValueError):
        pass


class ProcessExecutor(Executor):
    """A pool of local worker processes (default: one per core).

    Workers start with the ``spawn`` method (safe with threads and numba)
    and share the machine's cores between them.
    """

    name = "processes"

    def __init__(self, n_workers: int | None = None):
        cores = os.cpu_count() or 1
        self.n_workers = n_workers or cores
        if self.n_workers < 1:
            raise InvalidParameterError(f"n_workers must be >= 1, got {n_workers}")
        self._pool = concurrent.futures.ProcessPoolExecutor(
            max_workers=self.n_workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(max(1, cores // self.n_workers),),
        )

    def map(self, fn, items):
        futures = {self._pool.submit(fn, item): item for item in items}
        for future in concurrent.futures.as_completed(futures):
            error = future.exception()
            yield futures[future], error if error is not None else future.result()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class DaskExecutor(Executor):
    """Quanta as Dask futures on a distributed cluster.

    Parameters
    ----------
    address : str
        ``"local"`` to start a ``LocalCluster`` on this machine, or a
        scheduler address such as ``"tcp://scheduler:8786"`` (a cluster
        started by hand or by dask-jobqueue on Slurm, PBS or HTCondor).
    n_workers : int, optional
        Workers of the local cluster (default one per core).
    """

    name = "dask"

    def __init__(self, address: str = "local", *, n_workers: int | None = None):
        try:
            from distributed import Client, LocalCluster
        except ImportError as error:  # pragma: no cover - distributed is a dependency
            raise InvalidParameterError(
                "the Dask executor needs the 'distributed' package"
            ) from error
        self._cluster = None
        if address == "local":
            cores = os.cpu_count() or 1
            workers = n_workers or cores
            self._cluster = LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
            )
            self._client = Client(self._cluster)
        else:
            self._client = Client(address)

    def map(self, fn, items):
        from distributed import as_completed

        items = list(items)
        futures = {self._client.submit(fn, item, pure=False): item for item in items}
        for future in as_completed(futures):
            item = futures[future]
            if future.status == "error":
                yield item, future.exception()
            else:
                yield item, future.result()

    def close(self) -> None:
        self._client.close()
        if self._cluster is not None:
            self._cluster.close()


def make_executor(
    kind: str = "processes", *, n_workers: int | None = None, dask: str | None = None
):
    """An executor by name: ``inprocess``, ``processes`` or ``dask`` (address in ``dask``)."""
    if dask is not None:
        return DaskExecutor(dask, n_workers=n_workers)
    if kind == "inprocess":
        return InProcessExecutor()
    if kind == "processes":
        return ProcessExecutor(n_workers)
    if kind == "dask":
        return DaskExecutor("local", n_workers=n_workers)
    raise InvalidParameterError(f"executor must be inprocess, processes or dask, got {kind!r}")

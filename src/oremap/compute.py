"""Scale-out on Dask distributed: the ``[compute]`` section.

``scheduler = "local"`` (the default) runs everything in this process, as always: Dask is not
imported and no process is started. ``"processes"`` starts a :class:`distributed.LocalCluster`
on this machine (loopback only); an address (``"tcp://host:8786"``) connects to a running
scheduler, whose workers must see the run folder at the same path (shared storage).

The units of work submitted are plain functions of this package (importable on every worker)
whose outputs are files written atomically in the run folder, so a task that a worker lost
midway is simply run again by Dask (``allowed-failures`` retries) with the same result. Every
task sets torch and the BLAS pools to ``threads_per_worker`` threads, so tasks never
oversubscribe the cores. An error of bad input raised in a task reaches the caller as the
same exception, with the same message, as in a local run.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from oremap.errors import ConfigError
from oremap.limits import available_cores
from oremap.progress import progress as progress_bar

if TYPE_CHECKING:  # pragma: no cover
    from distributed import Client

    from oremap.config import ComputeConfig

log = logging.getLogger("oremap.compute")

__all__ = ["cluster", "run_tasks", "set_threads", "stage_client", "thread_map",
           "worker_cached", "worker_environ"]


def set_threads(threads: int) -> None:
    """Torch intra-op threads and the BLAS/OpenMP pools of numpy and scikit-learn."""
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(max(1, int(threads)))
    threadpool_limits(max(1, int(threads)))


def thread_map(fn: Callable[[Any], Any], items: Sequence[Any], *,
               costs: Sequence[float] | None = None, workers: int | None = None) -> list[Any]:
    """``fn(item)`` for every item, results in the order of ``items``: on one thread per core
    this process may use (``workers``, at most one per item), each running torch and the BLAS
    pools on a single thread.

    For the members' inference (evaluation, importance, prediction, maps): at the small
    batches of 32 x 32 crops one torch operation split over the cores keeps them poorly busy
    (the seven networks on two threads: x1.3 over one), while two members predicted
    side by side, each on one core, keep both busy (torch releases the GIL inside its
    operations). Each operation then runs on one thread, so a result does not depend on how
    the items were spread over the threads. The items with the largest ``costs`` start first.
    With one worker (one core, or one item) this is a plain loop and no setting changes.
    An error raised by ``fn`` is raised here, and the items not yet started are dropped.
    """
    items = list(items)
    n = min(workers or available_cores(), len(items))
    if n <= 1:
        return [fn(item) for item in items]
    from concurrent.futures import ThreadPoolExecutor

    import torch
    from threadpoolctl import threadpool_limits

    order = (sorted(range(len(items)), key=lambda i: -costs[i]) if costs is not None
             else range(len(items)))
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="oremap")
    try:
        with threadpool_limits(1):
            futures = {i: pool.submit(fn, items[i]) for i in order}
            return [futures[i].result() for i in range(len(items))]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        torch.set_num_threads(before)


#: What :func:`worker_cached` keeps: per name, the key and the value built last.
_WORKER_CACHE: dict[str, tuple[Any, Any]] = {}


def worker_cached(name: str, key: Any, build: Callable[[], Any]) -> Any:
    """``build()``, made once per process for each ``key`` of ``name`` and kept for the next
    task of a worker (its inputs read once, not once per task). Only the last key of each
    name is kept: the previous value is dropped before a new one is built."""
    hit = _WORKER_CACHE.get(name)
    if hit is None or hit[0] != key:
        _WORKER_CACHE.pop(name, None)
        _WORKER_CACHE[name] = (key, build())
    return _WORKER_CACHE[name][1]


def worker_environ() -> dict[str, Any]:
    """The environment Dask's nanny gives a worker process before it starts, without
    ``MALLOC_TRIM_THRESHOLD_``: Dask sets it to 64 KiB, which makes glibc give memory back
    to the system after every large free, and PyTorch training then runs about 3 times slower
    (measured: 20 steps of ResNet50, batch 16, 1.6 s without it, 5.0 s with it)."""
    import dask

    env = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}) or {})
    return {k: v for k, v in env.items()
            if k.upper().replace("-", "_") != "MALLOC_TRIM_THRESHOLD_"}


def stage_client(client: Any, compute: ComputeConfig | None) -> Any:
    """A context giving ``client`` as it is (owned by the caller), or a :func:`cluster` of
    ``compute`` for the duration of one stage (None, and no Dask, for ``scheduler =
    "local"``)."""
    return contextlib.nullcontext(client) if client is not None else cluster(compute)


@contextlib.contextmanager
def cluster(compute: ComputeConfig | None, *, echo: Callable[[str], None] | None = None
            ) -> Iterator[Client | None]:
    """A Dask client for ``compute``, or None for ``scheduler = "local"``.

    ``"processes"``: a LocalCluster of ``workers`` processes (default: the cores this process
    may use divided by ``threads_per_worker``) bound to 127.0.0.1, closed on exit. An address:
    a client of that scheduler (the cluster stays up). The dashboard link goes to ``echo``
    (default: the ``oremap.compute`` log at INFO, which ``oremap run`` shows).

    Raises
    ------
    ConfigError
        If Dask is not installed, or the scheduler cannot be reached.
    """
    if compute is None or compute.scheduler == "local":
        yield None
        return
    try:
        import dask
        from distributed import Client, LocalCluster
    except ImportError:  # pragma: no cover - dask is a dependency of the `scale` extra
        raise ConfigError(
            f"[compute] scheduler = {compute.scheduler!r} needs Dask distributed: "
            "pip install 'dask[distributed]' (or the oremap extra: pip install 'oremap[scale]'),"
            " or set scheduler = \"local\".") from None
    local = None
    environ = dict(os.environ)  # Dask's nanny writes the workers' settings into ours
    try:
        if compute.scheduler == "processes":
            logging.getLogger("distributed").setLevel(logging.WARNING)  # no INFO chatter
            threads = compute.threads_per_worker
            workers = compute.workers or max(1, available_cores() // threads)
            with dask.config.set({"distributed.nanny.pre-spawn-environ": worker_environ()}):
                local = LocalCluster(n_workers=workers, threads_per_worker=threads,
                                     processes=True, host="127.0.0.1",
                                     dashboard_address="127.0.0.1:0",
                                     silence_logs=logging.ERROR)
            _restore(environ)
            client = Client(local)
        else:
            client = Client(compute.scheduler, timeout="30s")
    except OSError as exc:
        if local is not None:
            local.close()
        _restore(environ)
        raise ConfigError(f"[compute] scheduler {compute.scheduler!r}: cannot start or reach "
                          f"it ({exc}). Check the address and that the scheduler runs, or "
                          "set scheduler = \"local\".") from None
    link = client.dashboard_link
    message = (f"Dask: {len(client.scheduler_info()['workers'])} worker(s) at "
               f"{client.scheduler.address}; dashboard {link}")
    (echo or log.info)(message)
    try:
        yield client
    finally:
        client.close()
        if local is not None:
            local.close()
        _restore(environ)


def _restore(environ: dict[str, str]) -> None:
    """Put this process's environment back as it was: a LocalCluster's nanny sets
    OMP_NUM_THREADS and the like in the calling process when it starts a worker, and every
    process started later (a training worker, a DataLoader worker) would inherit them."""
    for key in set(os.environ) - set(environ):
        del os.environ[key]
    for key, value in environ.items():
        if os.environ.get(key) != value:
            os.environ[key] = value


def run_tasks(client: Client, fn: Callable[..., Any], calls: Sequence[tuple[Any, ...]], *,
              keys: Sequence[str], desc: str, progress: bool = True,
              retries: int = 0, costs: Sequence[float] | None = None) -> list[Any]:
    """Run ``fn(*args)`` for every ``args`` of ``calls`` on the cluster; results in order.

    One progress bar, fed by task completions. A task whose worker was lost midway is run
    again by the scheduler (Dask's ``distributed.scheduler.allowed-failures``); ``retries``
    adds retries of tasks that raised (0: an error of bad input is deterministic). The first
    task that fails cancels the others and its exception is raised here, unchanged. The
    tasks with the largest ``costs`` (default: the first) start first.
    """
    from distributed import as_completed

    # Dask runs the tasks of higher priority first: the costliest, so that no worker is
    # left alone with the largest one at the end
    order = (sorted(range(len(calls)), key=lambda i: -costs[i]) if costs is not None
             else range(len(calls)))
    priority = {i: len(calls) - rank for rank, i in enumerate(order)}
    futures = [client.submit(fn, *args, key=key, pure=False, retries=retries,
                             priority=priority[i])
               for i, (key, args) in enumerate(zip(keys, calls, strict=True))]
    index = {f.key: i for i, f in enumerate(futures)}
    results: list[Any] = [None] * len(futures)
    with progress_bar(len(futures), desc, "task", disable=not progress) as bar:
        try:
            for future in as_completed(futures):
                results[index[future.key]] = future.result()  # raises the task's error
                bar.update()
        except BaseException:
            client.cancel(futures)
            raise
    return results

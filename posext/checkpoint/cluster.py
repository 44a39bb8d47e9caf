"""`posext resize --cluster ADDRESS`: the per-file work as tasks on a dask.distributed cluster.

``ADDRESS`` is a scheduler address (``tcp://scheduler:8786``) or ``local[:N]`` for a ``LocalCluster`` of N
single-threaded worker processes on this machine (default: one per CPU). Each file is one task running the
same ``resize_file`` as a local run, so reports, exit codes and bytes match a local run. A task whose worker
dies is rerun by the scheduler on another worker (up to its ``allowed-failures``, then the file is reported
failed); writes are atomic (temp file, rename), so the dead attempt leaves no target, and the rerun writes it
once. Reports arrive in completion order and feed the progress bar. Inputs and outputs must be reachable
under the same paths from every worker (a shared file system).
"""
import logging
import os
from typing import Callable, List, Tuple


def _client(address: str):
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise SystemExit("posext resize: --cluster needs dask.distributed: pip install 'posext[cluster]'") \
            from None
    if address == "local" or address.startswith("local:"):
        count = address.partition(":")[2]
        cluster = LocalCluster(n_workers=int(count) if count else os.cpu_count() or 1, threads_per_worker=1,
                               processes=True, dashboard_address=None, silence_logs=logging.WARNING)
        return Client(cluster), cluster
    try:
        return Client(address, timeout="30s"), None
    except (OSError, TimeoutError, ValueError) as exc:
        raise SystemExit(f"posext resize: --cluster {address}: cannot reach the scheduler: {exc}") from None


def check_address(address: str) -> None:
    """Refuse a malformed address before any work."""
    if not (address == "local" or address.startswith("local:") or "://" in address):
        raise SystemExit(f"posext resize: --cluster takes a scheduler address (tcp://host:8786) or "
                         f"local[:N], got {address!r}")
    count = address.partition(":")[2] if address.startswith("local:") else ""
    if address.startswith("local:") and (not count.isdigit() or int(count) < 1):
        raise SystemExit(f"posext resize: --cluster local:N needs N >= 1 workers, got {address!r}")


def run_on_cluster(jobs: List[Tuple[str, str]], address: str, target, options,
                   on_report: Callable[[dict], None], failed_report: Callable[[str, str, str], dict]) -> None:
    """Resize ``jobs`` ((input, target) pairs) as cluster tasks; ``on_report`` gets each file's report as it
    finishes, ``failed_report(input, target, reason)`` one for a task the cluster gave up on."""
    client, cluster = _client(address)  # first: it explains a missing dask.distributed
    from distributed import as_completed

    from .file_job import resize_file

    futures = {}
    try:
        for src, out in jobs:
            futures[client.submit(resize_file, src, out, target, options, pure=False)] = (src, out)
        for future in as_completed(futures):
            src, out = futures[future]
            try:
                report = future.result()
            except Exception as exc:  # the cluster gave up (its workers kept dying): that file only
                report = failed_report(src, out, f"the cluster task failed: {type(exc).__name__}: {exc}")
            on_report(report)
    finally:
        for future in futures:
            future.cancel()
        client.close()
        if cluster is not None:
            cluster.close()

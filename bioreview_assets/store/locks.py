"""One materialisation of a partition at a time: an exclusive flock on <root>/.locks/<asset>/<partition>.lock.

A second run of the same partition is refused at once with the holder's pid and start time (waiting would only
make it do the same work again afterwards). flock locks die with their process, so a killed run leaves no stale
lock behind; the file's text is only there to say who holds it. Object-store roots cannot be flocked: there the
Dagster run queue's concurrency pools are the guard (k8s values), and this lock is skipped.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import functools
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOCKS = ".locks"


class PartitionBusy(RuntimeError):
    """Another process is materialising this partition right now."""


@contextmanager
def partition_lock(store, asset: str, partition: str) -> Iterator[None]:
    """Hold the partition's lock for the block, or raise PartitionBusy naming the holder."""
    if not store.is_local:
        yield
        return
    path = Path(store.path(LOCKS, asset, partition.replace("/", "_") + ".lock"))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise PartitionBusy(f"{asset}[{partition}] is being materialised by {holder} ({path}): this run does "
                                f"not do the same work twice; re-run it once that one has finished") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} since {dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}")
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)


def locked_partition(fn):
    """Run a partitioned asset's body under its partition lock (the asset's `storage` resource names the root)."""

    @functools.wraps(fn)
    def body(context, *args, **kwargs):
        with partition_lock(kwargs["storage"].store(), context.asset_key.to_user_string(), str(context.partition_key)):
            return fn(context, *args, **kwargs)

    body.takes_partition_lock = True  # the definitions test checks every partitioned asset for it
    return body

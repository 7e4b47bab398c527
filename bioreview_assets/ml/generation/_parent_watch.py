"""Exit a worker process when the process that started it is gone (standard library only: the vLLM worker uses it).

A generation worker writes its results to a file, not to a pipe, so a parent killed with SIGKILL would leave it
running on its GPU until the end of its shard. The parent holds the write end of the worker's stdin and never
writes to it: end of file on stdin means the parent has exited, however it exited.
"""

from __future__ import annotations

import os
import threading


def exit_with_parent(code: int = 70) -> None:
    """Start a daemon thread that ends this process (os._exit) once stdin reaches end of file."""

    def watch() -> None:
        # os.read on the descriptor, not sys.stdin: a daemon thread blocked inside a buffered reader aborts the
        # interpreter at shutdown ("could not acquire lock for <stdin>").
        try:
            while os.read(0, 4096):
                pass
        except OSError:  # a closed or unreadable stdin means the same: nobody is listening
            pass
        os._exit(code)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()

"""End a helper process when the service it works for is gone (killed, even with SIGKILL), so that
neither a node's task workers, the coordinator's scheduler nor an HE worker pool outlive their service.
Standard library only, at the package's top so that any layer (jobs, deploy, crypto) may use it.

The service is watched by process id rather than as the parent: a node's workers are children of its
fork server, and the fork server stays up as long as any worker does, so "parent gone" never happens.
"""

from __future__ import annotations

import os
import threading
import time

CHECK_INTERVAL_S = 0.5
ORPHAN_EXIT_CODE = 137


def exit_with(service_pid: int) -> None:
    """Watch `service_pid` from a daemon thread; once that process is gone, exit at once."""

    def watch() -> None:
        while True:
            try:
                os.kill(service_pid, 0)  # signal 0: only asks whether the process exists
            except ProcessLookupError:
                os._exit(ORPHAN_EXIT_CODE)
            time.sleep(CHECK_INTERVAL_S)

    threading.Thread(target=watch, daemon=True, name="lifeline").start()

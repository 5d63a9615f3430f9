"""Run the real ``pnpsam`` command in this process and SIGKILL it at a chosen file operation.

``python fault_driver.py KIND:N ARGV...``: KIND is ``before`` (killed just before the N-th
atomic rename, its finished temporary left behind), ``after`` (just after it) or ``pause``
(before it: creates the file named by ``$PNPSAM_PAUSE_FILE`` and waits until it is removed, so
a test can act while this process holds its output folder). N counts ``os.replace`` calls from
the start of the command. Used by the fault tests: a real process, a
real SIGKILL, no hook in the library.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path


def main() -> int:
    kind, count = sys.argv[1].split(":")
    target = int(count)
    real_replace = os.replace
    seen = 0

    def replace(src: str, dst: str) -> None:
        nonlocal seen
        seen += 1
        if seen == target and kind == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        if seen == target and kind == "pause":
            flag = Path(os.environ["PNPSAM_PAUSE_FILE"])
            flag.touch()
            deadline = time.monotonic() + 300
            while flag.exists() and time.monotonic() < deadline:
                time.sleep(0.02)
        real_replace(src, dst)
        if seen == target and kind == "after":
            os.kill(os.getpid(), signal.SIGKILL)

    os.replace = replace  # type: ignore[assignment]
    from pnpsam.cli.main import main as cli

    return cli(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())

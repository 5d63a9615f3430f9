"""Run the real ``pnpsam`` command in this process and SIGKILL it at a chosen file operation.

``python fault_driver.py KIND:N ARGV...``: KIND is ``before`` (killed just before the N-th
atomic rename, its finished temporary left behind) or ``after`` (just after it). N counts
``os.replace`` calls from the start of the command. Used by the fault tests: a real process, a
real SIGKILL, no hook in the library.
"""

from __future__ import annotations

import os
import signal
import sys


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
        real_replace(src, dst)
        if seen == target and kind == "after":
            os.kill(os.getpid(), signal.SIGKILL)

    os.replace = replace  # type: ignore[assignment]
    from pnpsam.cli.main import main as cli

    return cli(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())

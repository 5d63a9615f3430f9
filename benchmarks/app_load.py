"""The web app under load: N simulated users through ``gradio_client`` on 127.0.0.1.

Starts ``pnpsam app --model toy`` in a subprocess whose temporary folder (the app's run files and
Gradio's upload cache) is a fresh private folder, then lets ``--users`` clients (one Gradio
session each) run ``--actions`` actions at once: photo clicks (the ``segment`` endpoint),
translates (``edit``) and translates stopped mid-run (``edit``, then the ``stop`` endpoint of the
same session). Prints completed / failed / cancelled, p50 / p95 latency per action, the
server's peak RSS, and the disk its files take before, at the end of the load, and after the
files' age (``--keep-files-minutes``) has passed. Bounded: every call has a deadline and the
whole run ``--timeout`` seconds.

    python benchmarks/app_load.py                       # 8 users x 3 actions, toy, 10 steps
    python benchmarks/app_load.py --users 4 --steps 20
    python benchmarks/app_load.py --stagger 0.3         # users arrive 0.3 s apart

Run it with ``HF_HUB_OFFLINE=1`` on a machine without the SAM weights (the masks' GrabCut
fallback then starts at once instead of asking the hub first).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import defaultdict
from pathlib import Path

from PIL import Image

from pnpsam.toyworld.world import SceneSpec, render_scene

SPEC = SceneSpec("red", "circle", "grass", center=(0.45, 0.55))
CLICK = [SPEC.center[0] * 64, SPEC.center[1] * 64]
PLANS = (  # each user's actions, in order; users take the plans in turn
    ("click", "edit", "click"),
    ("edit", "click", "cancel"),
    ("click", "click", "edit"),
    ("cancel", "click", "edit"),
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def folder_bytes(root: Path) -> int:
    total = 0
    for path in root.rglob("*"):
        try:
            if path.is_file():
                total += path.stat().st_size
        except OSError:  # deleted while counting
            pass
    return total


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory (VmHWM), MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--actions", type=int, default=3, help="actions per user (<= 3)")
    parser.add_argument("--steps", type=int, default=10, help="steps of each translate")
    parser.add_argument("--cancel-steps", type=int, default=50, help="steps of a stopped run")
    parser.add_argument("--cancel-after", type=float, default=0.5, help="seconds before Stop")
    parser.add_argument("--keep-files-minutes", type=float, default=0.25)
    parser.add_argument(
        "--stagger",
        type=float,
        default=0.0,
        help="seconds between users' arrivals (0: all at once)",
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="bound of the whole load")
    args = parser.parse_args()
    from gradio_client import Client, handle_file

    root = Path(tempfile.mkdtemp(prefix="pnpsam-load-"))
    tmp = root / "tmp"
    tmp.mkdir()
    photo = root / "toy.png"
    Image.fromarray(render_scene(SPEC, seed=0).image).save(photo)
    port = free_port()
    env = {**os.environ, "TMPDIR": str(tmp), "GRADIO_TEMP_DIR": str(tmp / "gradio")}
    log = (root / "server.log").open("w")
    server = subprocess.Popen(
        [
            *(sys.executable, "-c", "import sys, pnpsam.cli as c; sys.exit(c.main())", "app"),
            *("--model", "toy", "--port", str(port)),
            *("--keep-files-minutes", str(args.keep_files_minutes)),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        started = time.perf_counter()
        while True:
            try:
                urllib.request.urlopen(url, timeout=2).close()
                break
            except OSError:
                if server.poll() is not None or time.perf_counter() - started > 120:
                    raise SystemExit(f"server did not start; see {root / 'server.log'}") from None
                time.sleep(0.5)
        print(f"server up in {time.perf_counter() - started:.1f} s on {url}")
        before = folder_bytes(tmp)
        latencies: dict[str, list[float]] = defaultdict(list)
        outcomes: dict[str, int] = defaultdict(int)
        errors: list[str] = []
        lock = threading.Lock()
        deadline = time.perf_counter() + args.timeout

        def act(client: Client, kind: str) -> None:
            config = {"pnp": {"steps": args.steps}, "mask": {"points": [CLICK]}}
            begin = time.perf_counter()
            outcome = "completed"
            try:
                if kind == "click":
                    client.predict(
                        handle_file(str(photo)), {"points": [CLICK]}, api_name="/segment"
                    )
                elif kind == "edit":
                    client.predict(
                        handle_file(str(photo)),
                        "a yellow circle on grass",
                        config,
                        api_name="/edit",
                    )
                else:  # a translate stopped once it runs
                    long = {**config, "pnp": {"steps": args.cancel_steps}}
                    text = "a blue circle on grass"
                    job = client.submit(handle_file(str(photo)), text, long, api_name="/edit")
                    while not job.done() and time.perf_counter() < deadline:
                        status = job.status()
                        if getattr(status.code, "name", "") == "PROCESSING":
                            time.sleep(args.cancel_after)
                            client.predict(api_name="/stop")
                            break
                        time.sleep(0.05)
                    try:
                        job.result(timeout=max(1.0, deadline - time.perf_counter()))
                    except Exception as error:  # the app says it was stopped
                        if "stopped by the user" not in str(error):
                            raise
                        outcome = "cancelled"
            except Exception as error:
                outcome = "failed"
                with lock:
                    errors.append(f"{kind}: {type(error).__name__}: {error}")
            with lock:
                outcomes[outcome] += 1
                if outcome == "completed":
                    latencies[kind].append(time.perf_counter() - begin)

        def user(index: int) -> None:
            time.sleep(index * args.stagger)
            begin = time.perf_counter()
            client = Client(url, verbose=False)  # fetches the page's config and API description
            with lock:
                latencies["connect"].append(time.perf_counter() - begin)
            for kind in PLANS[index % len(PLANS)][: args.actions]:
                if time.perf_counter() > deadline:
                    with lock:
                        outcomes["failed"] += 1
                        errors.append(f"{kind}: not started before the deadline")
                    continue
                act(client, kind)

        # one click first, not counted: the first mask of a fresh server pays its imports
        warm = time.perf_counter()
        Client(url, verbose=False).predict(
            handle_file(str(photo)), {"points": [CLICK]}, api_name="/segment"
        )
        print(f"first click of the fresh server: {time.perf_counter() - warm:.2f} s")
        load_start = time.perf_counter()
        threads = [threading.Thread(target=user, args=(i,)) for i in range(args.users)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(max(0.0, deadline - time.perf_counter()))
        wall = time.perf_counter() - load_start
        at_end = folder_bytes(tmp)
        rss = peak_rss_mb(server.pid)
        print(
            f"{args.users} users x {args.actions} actions in {wall:.1f} s: "
            f"completed {outcomes['completed']}, failed {outcomes['failed']}, "
            f"cancelled {outcomes['cancelled']}"
        )
        for kind in ("connect", "click", "edit"):
            values = latencies[kind]
            if values:
                print(
                    f"  {kind:7s} n={len(values):2d}  p50 {statistics.median(values):.2f} s  "
                    f"p95 {percentile(values, 0.95):.2f} s  max {max(values):.2f} s"
                )
        for error in errors[:10]:
            print(f"  error: {error}")
        print(f"server peak RSS {rss:.0f} MB (VmHWM)")
        wait = 60 * args.keep_files_minutes + 15
        gone_at = time.perf_counter() + wait
        after = folder_bytes(tmp)
        while after > before and time.perf_counter() < gone_at:
            time.sleep(1.0)
            after = folder_bytes(tmp)
        print(
            f"disk: {before / 1e6:.2f} MB before, {at_end / 1e6:.2f} MB at the end of the load, "
            f"{after / 1e6:.2f} MB after the files' age ({60 * args.keep_files_minutes:.0f} s)"
        )
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
        text = (root / "server.log").read_text(errors="replace")
        blocks = text.split("Traceback (most recent call last):")[1:]
        errors_logged = text.count("user error:")
        print(f"server log: {len(blocks)} traceback(s), {errors_logged} user error line(s)")
        for block in blocks:  # the exception line ends each traceback
            ends = [line for line in block.splitlines() if line and not line.startswith(" ")]
            print(f"  traceback ending: {ends[0] if ends else '?'}")
        print("log:", root) if os.environ.get("KEEP") else shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

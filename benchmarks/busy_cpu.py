"""CPU time of one toy edit, idle and beside busy processes, under the old and new thread policy.

Each measurement is a fresh process that loads the shipped toy model and makes one edit (a toy
photo, one prompt, ``--steps`` steps, plain PnP) with the thread policy of ``pnpsam.threads``
(``new``: ``PNPSAM_THREADS=auto``) or torch's own default (``old``: ``PNPSAM_THREADS=torch``,
one intra-op thread per core, OpenMP spinning). ``busy``: the same beside ``--busy`` pure-Python
busy loops, started by this script before the process and stopped after it (each also ends by
itself after ``--busy-limit`` seconds). Printed per policy and condition: the median over
``--repeats`` of the edit's CPU seconds (all threads, ``time.process_time`` around the edit),
the whole process's CPU seconds (``os.wait4``), wall seconds and the thread count, then the
ratio busy / idle per policy (the target: at most 1.5) and new / old.

    OMP_NUM_THREADS= python benchmarks/busy_cpu.py            # about 3-6 minutes on 2 cores
    python benchmarks/busy_cpu.py --repeats 1 --steps 10      # a quick look

OMP_NUM_THREADS / MKL_NUM_THREADS are removed from the measured processes' environment (they
would decide the thread count for both policies). On a machine shared with other work "idle"
is not idle: the load average is printed with each figure.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# name -> PNPSAM_THREADS; "passive2" / "one" split the new policy's two parts apart
POLICIES = {"old": "torch", "new": "auto", "passive2": "2", "one": "1"}
BUSY_LOOP = "import time\nend = time.time() + {limit}\nwhile time.time() < end:\n    pass\n"


def child(steps: int) -> None:
    """One measured process: the policy, the toy model, one edit; prints a JSON line."""
    started = time.process_time()
    from pnpsam.threads import apply_thread_policy

    plan = apply_thread_policy()
    import torch
    from PIL import Image

    from pnpsam.api import PnPEditor
    from pnpsam.config import ModelConfig
    from pnpsam.toyworld.world import SceneSpec, render

    editor = PnPEditor.from_pretrained(ModelConfig(model="toy", device="cpu"))
    editor.set_progress_bar_config(disable=True)
    cfg = editor.default_config()
    cfg.pnp.steps = cfg.inversion.steps = steps
    image, _ = render(SceneSpec("red", "circle", "grass"), seed=0)
    loaded = time.process_time()
    wall = time.perf_counter()
    editor.edit(Image.fromarray(image), "a blue circle on snow", cfg)
    done = time.process_time()
    print(
        json.dumps(
            {
                "edit_cpu_s": done - loaded,
                "edit_wall_s": time.perf_counter() - wall,
                "load_cpu_s": loaded - started,
                "threads": torch.get_num_threads(),
                "reason": plan.reason,
            }
        )
    )


def measure(policy: str, busy: int, args: argparse.Namespace) -> dict[str, float | int | str]:
    """Run one child (beside ``busy`` busy loops); its figures and the whole-process CPU time."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env["PNPSAM_THREADS"] = POLICIES[policy]
    env["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    loops = [
        subprocess.Popen([sys.executable, "-c", BUSY_LOOP.format(limit=args.busy_limit)])
        for _ in range(busy)
    ]
    try:
        if loops:
            time.sleep(0.5)  # the loops are running before the child picks its threads
        with tempfile.TemporaryFile("w+") as out:
            process = subprocess.Popen(
                [sys.executable, __file__, "--child", "--steps", str(args.steps)],
                stdout=out,
                env=env,
            )
            _, status, usage = os.wait4(process.pid, 0)
            if status != 0:
                raise RuntimeError(f"the measured process failed (wait status {status})")
            out.seek(0)
            result = json.loads(out.read().strip().splitlines()[-1])
    finally:
        for loop in loops:
            loop.terminate()
        for loop in loops:
            loop.wait()
    result["process_cpu_s"] = usage.ru_utime + usage.ru_stime
    result["load1"] = os.getloadavg()[0]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20, help="inversion and sampling steps")
    parser.add_argument("--repeats", type=int, default=3, help="runs per figure (median)")
    parser.add_argument("--busy", type=int, default=2, help="busy-loop processes beside it")
    parser.add_argument(
        "--busy-limit", type=float, default=300.0, help="each busy loop ends by itself after this"
    )
    parser.add_argument(
        "--policies",
        default="old,new",
        help="comma-separated: old (torch's default), new (pnpsam.threads), passive2 (2 threads, "
        "passive waiting), one (1 thread, passive waiting)",
    )
    parser.add_argument("--json", type=Path, help="also write every measurement here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.steps)
        return
    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    unknown = [p for p in policies if p not in POLICIES]
    if unknown:
        parser.error(f"unknown policy {unknown}; expected some of {list(POLICIES)}")
    cores = len(os.sched_getaffinity(0))
    print(
        f"{cores} usable cores, load average {os.getloadavg()[0]:.2f} at start; toy edit, "
        f"{args.steps} steps; busy = beside {args.busy} busy loops; medians of {args.repeats}"
    )
    runs: dict[tuple[str, str], list[dict]] = {}
    for _ in range(args.repeats):  # interleaved: a change in the machine's load hits all alike
        for policy in policies:
            for condition, busy in (("idle", 0), ("busy", args.busy)):
                result = measure(policy, busy, args)
                runs.setdefault((policy, condition), []).append(result)
                print(  # as it goes: on a shared machine a run may be stopped before the end
                    f"  {policy} {condition}: {result['threads']} threads, edit "
                    f"{result['edit_cpu_s']:.2f} CPU-s, process {result['process_cpu_s']:.2f} "
                    f"CPU-s, wall {result['edit_wall_s']:.1f} s, load {result['load1']:.1f}",
                    flush=True,
                )
    medians = {}
    print(
        f"{'policy':<7}{'load':<6}{'threads':>8}{'edit CPU-s':>12}{'process CPU-s':>15}"
        f"{'edit wall-s':>13}{'load avg':>10}"
    )
    for (policy, condition), results in runs.items():
        med = {
            key: statistics.median(float(r[key]) for r in results)
            for key in ("edit_cpu_s", "process_cpu_s", "edit_wall_s", "load1")
        }
        medians[policy, condition] = med
        threads = "/".join(sorted({str(r["threads"]) for r in results}))
        print(
            f"{policy:<7}{condition:<6}{threads:>8}{med['edit_cpu_s']:>12.2f}"
            f"{med['process_cpu_s']:>15.2f}{med['edit_wall_s']:>13.2f}{med['load1']:>10.2f}"
        )
    for policy in policies:
        idle, busy = medians[policy, "idle"], medians[policy, "busy"]
        print(
            f"{policy}: busy / idle CPU per edit {busy['edit_cpu_s'] / idle['edit_cpu_s']:.2f}x "
            f"(whole process {busy['process_cpu_s'] / idle['process_cpu_s']:.2f}x; target <= 1.5)"
        )
    if {"old", "new"} <= set(policies):
        for condition in ("idle", "busy"):
            old, new = medians["old", condition], medians["new", condition]
            print(
                f"{condition}: new / old CPU per edit {new['edit_cpu_s'] / old['edit_cpu_s']:.2f}x,"
                f" wall {new['edit_wall_s'] / old['edit_wall_s']:.2f}x"
            )
    if args.json:
        args.json.write_text(
            json.dumps({f"{p}/{c}": r for (p, c), r in runs.items()}, indent=1), encoding="utf-8"
        )


if __name__ == "__main__":
    main()

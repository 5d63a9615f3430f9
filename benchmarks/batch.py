"""Photos per second of ``pnpsam batch``: the local engine against Ray with N workers, one run.

    python benchmarks/batch.py                        # toy model, CPU, 2 Ray workers
    python benchmarks/batch.py --photos 16 --repeats 3 --steps 20
    python benchmarks/batch.py --model stable-diffusion-v1-5/stable-diffusion-v1-5 \\
        --device cuda --dtype fp16 --size 512 --gpus-per-worker 1   # GPU machines

Every repeat runs the whole batch into a fresh folder (so each includes loading the model:
once for the local engine, once per actor for Ray) and the medians are printed with their
ratio. Ray's start-up overhead (``ray.init`` of a local cluster) is timed apart and not in the
photos/s; the time to the first finished photo (model loading: once, or once per actor in
parallel) and the rate after it are printed for both engines. The local engine
runs at 1 thread and at ``--threads`` (default: the Ray workers' CPUs together), so the Ray
pool is compared with the best the local engine does on the same cores. The outputs of every
run are checked to be byte-identical across engines.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from pnpsam.batch import BatchRunner, LocalEngine, load_jobs
from pnpsam.config import EditConfig, ModelConfig
from pnpsam.engines.local import Engine, Work
from pnpsam.toyworld.pairs import TOY_EDIT, TOY_MODEL
from pnpsam.toyworld.world import render_scene, sample_specs

PROMPTS = ["a red circle on grass", "a blue square on sand"]


class Timed:
    """Wraps an engine and notes when its first result arrives."""

    def __init__(self, engine: Engine) -> None:
        self.engine, self.name, self.first = engine, engine.name, 0.0

    def run(self, work: Work[Any, Any], tasks: Sequence[Any]) -> Iterator[Any]:
        started = time.perf_counter()
        for k, result in enumerate(self.engine.run(work, tasks)):
            if k == 0:
                self.first = time.perf_counter() - started
            yield result


def make_photos(folder: Path, count: int, side: int) -> None:
    for i, spec in enumerate(sample_specs(count, seed=0)):
        Image.fromarray(render_scene(spec, seed=i, side=side).image).save(folder / f"p{i}.png")


def config(args: argparse.Namespace) -> EditConfig:
    cfg = EditConfig()
    cfg.model = ModelConfig(model=args.model, device=args.device, dtype=args.dtype)
    if args.model == str(TOY_MODEL):
        for key, value in TOY_EDIT["pnp"].items():
            setattr(cfg.pnp, key, value)
    cfg.preprocess.size = args.size
    cfg.pnp.steps = cfg.inversion.steps = args.steps
    return cfg.validate()


def digest(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(folder.glob("*.png")):
        h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()[:12]


def one_run(engine: Engine, photos: Path, cfg: EditConfig, root: Path) -> dict[str, Any]:
    out = Path(tempfile.mkdtemp(dir=root))
    timed = Timed(engine)
    summary = BatchRunner(out, cfg, progress=False).run(load_jobs(photos, PROMPTS), timed)
    assert summary.failed == 0 and summary.done > 0, summary.line()
    after_first = summary.seconds - timed.first
    return {
        "photos_per_s": summary.photos_per_second,
        # once the model is loaded (the first photo includes loading it, per actor for Ray)
        "steady_per_s": (summary.done - 1) / after_first if after_first > 0 else 0.0,
        "seconds": summary.seconds,
        "first_s": timed.first,
        "digest": digest(out),
    }


def report(label: str, runs: list[dict[str, Any]]) -> float:
    rate = statistics.median(r["photos_per_s"] for r in runs)
    first = statistics.median(r["first_s"] for r in runs)
    seconds = statistics.median(r["seconds"] for r in runs)
    steady = statistics.median(r["steady_per_s"] for r in runs)
    each = ", ".join(f"{r['photos_per_s']:.3f}" for r in runs)
    print(f"| {label} | {rate:.3f} | {steady:.2f} | {seconds:.1f} | {first:.1f} | {each} |")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--model", default=str(TOY_MODEL))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cpus-per-worker", type=float, default=1.0)
    parser.add_argument("--gpus-per-worker", type=float, default=0.0)
    parser.add_argument("--threads", type=int, help="local engine's torch threads (2nd run)")
    args = parser.parse_args()

    import ray

    from pnpsam.engines.ray import RayEngine

    cfg = config(args)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        photos = root / "photos"
        photos.mkdir()
        make_photos(photos, args.photos, max(args.size, 16))
        print(
            f"{args.photos} photos x {len(PROMPTS)} prompts, {args.steps} steps, {args.size} px, "
            f"{args.model} on {args.device}; {args.repeats} repeats; medians\n"
        )
        print(
            "| engine | photos/s | photos/s after the first | run s | first photo s "
            "| photos/s per repeat |"
        )
        print("|---|---|---|---|---|---|")
        local_rates, digests = {}, set()
        threads = args.threads or max(1, int(args.workers * args.cpus_per_worker))
        for count in sorted({1, threads}):
            torch.set_num_threads(count)
            runs = [one_run(LocalEngine(), photos, cfg, root) for _ in range(args.repeats)]
            digests |= {r["digest"] for r in runs}
            local_rates[count] = report(f"local, {count} thread(s)", runs)
        torch.set_num_threads(1)

        started = time.perf_counter()
        gpus = {} if args.gpus_per_worker else {"num_gpus": 0}
        ray.init(include_dashboard=False, log_to_driver=False, logging_level="WARNING", **gpus)
        init_s = time.perf_counter() - started
        engine = RayEngine(args.workers, args.gpus_per_worker, args.cpus_per_worker)
        try:
            runs = [one_run(engine, photos, cfg, root) for _ in range(args.repeats)]
        finally:
            ray.shutdown()
        digests |= {r["digest"] for r in runs}
        gpu = f", {args.gpus_per_worker:g} GPU" if args.gpus_per_worker else ""
        label = f"ray, {args.workers} workers x {args.cpus_per_worker:g} CPU{gpu}"
        ray_rate = report(label, runs)
        best = max(local_rates.values())
        print(f"\nray / best local photos/s: {ray_rate / best:.2f}x")
        print(f"ray start-up (ray.init, local cluster): {init_s:.1f} s, not in photos/s")
        print(f"PNG outputs identical across every run and engine: {len(digests) == 1}")


if __name__ == "__main__":
    main()

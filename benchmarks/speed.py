"""Speed of re-edits: first edit, in-process re-edit, cached re-edit, and the port's procedure.

One run prints, for 1 and K prompts on the same model and photo, the UNet rows (counted by a
pre-hook) and the median wall-clock of:

* first edit — a new photo: inversion + source stream (its features recorded) + guided rows;
* in-process re-edit — the same editor, other prompts: inversion and source features kept in
  memory (``feature_bytes``), so only the 2 x steps guided rows per prompt run;
* cached re-edit — a new editor (empty memory) with the same ``cache_dir``: the inversion is
  read from disk, the source stream runs once, then the guided rows;
* port — pnp-diffusers' procedure on the same model: a 999-step inversion and a 999-step
  reconstruction per photo, then each prompt alone with the source row for all steps (its disk
  reads and writes left out). Its shared part is timed once; each prompt's edit ``--repeats``
  times.

and the ratios port / ours. Peak memory per phase: RSS on CPU (Linux resets the high-water mark
between phases), ``torch.cuda.max_memory_allocated`` on CUDA.

    python benchmarks/speed.py                          # tiny random SD 1.5 layout, CPU
    python benchmarks/speed.py --sd15 --device cuda --dtype fp16 --size 512   # device session
    python benchmarks/speed.py --model stable-diffusion-v1-5/stable-diffusion-v1-5 --device cuda

``--sd15`` builds the real SD 1.5 architecture (UNet 860 M, CLIP ViT-L text encoder, VAE) with
random weights: no download, the real shapes, costs and memory.
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pnpsam.api import PnPEditor
from pnpsam.config import EditConfig, ModelConfig
from pnpsam.core.pipeline import PnPPipeline
from pnpsam.models.tiny import tiny_sd15_pipeline

PROMPTS = ["a red robot", "a blue dog", "a photo of snow", "a cat", "a robot dog", "a snow cat"]


@dataclass
class Phase:
    name: str
    prompts: int
    rows: int
    seconds: list[float]
    peak_mib: float
    cpu_seconds: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu_seconds)


@dataclass
class Session:
    """The editor and cache folder the phases of one prompt count share."""

    editor: PnPEditor
    folder: Path
    runs: int = 0


class PeakMemory:
    """Peak memory of a block: CUDA allocations, or the process RSS high-water mark (Linux)."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def reset(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            return
        # "5" resets VmHWM (peak RSS) to the current RSS; elsewhere the peak covers the run
        with contextlib.suppress(OSError):
            Path("/proc/self/clear_refs").write_text("5")

    def peak_mib(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
            return torch.cuda.max_memory_allocated() / 2**20
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def sd15_random_pipeline(seed: int = 0) -> object:
    """The SD 1.5 architecture with random weights (shapes of the real checkpoint)."""
    from pnpsam.models.tiny import sd15_shaped_pipeline

    return sd15_shaped_pipeline(seed, tuple(" ".join(PROMPTS).split()))


def load_editor(args: argparse.Namespace) -> PnPEditor:
    if not args.sd15:
        model = args.model
        if model is None:
            model = tempfile.mkdtemp(prefix="pnpsam-tiny-")
            tiny_sd15_pipeline().save_pretrained(model)
        return PnPEditor.from_pretrained(
            ModelConfig(model=model, device=args.device, dtype=args.dtype)
        )
    dtypes = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    device = torch.device(args.device)
    sd = sd15_random_pipeline().to(device=device, dtype=dtypes[args.dtype])  # type: ignore[attr-defined]
    config = ModelConfig(model="random-sd15", device=args.device, dtype=args.dtype)
    return PnPEditor(PnPPipeline(sd, device), config)


def fresh_editor(like: PnPEditor, cache_dir: str | None, feature_bytes: int) -> PnPEditor:
    """A new editor on the same loaded modules: empty memory, as a new process would have."""
    from pnpsam.store import InversionCache

    cache = InversionCache(cache_dir) if cache_dir is not None else None
    return PnPEditor(like.pipeline, like.model, cache=cache, feature_bytes=feature_bytes)


def timed(
    memory: PeakMemory, run: Callable[[], int], repeats: int, before: Callable[[], object]
) -> tuple[int, list[float], float, list[float]]:
    """(rows, wall seconds per repeat, peak MiB, process CPU seconds per repeat) of ``run``.

    ``run`` returns rows; ``before`` runs ahead of each repeat. CPU time (one thread) is the
    steadier measure on a shared machine, where wall-clock mostly measures the neighbours.
    """
    seconds, cpu, rows, peak = [], [], 0, 0.0
    for _ in range(repeats):
        before()
        memory.reset()
        started, started_cpu = time.perf_counter(), time.process_time()
        rows = run()
        seconds.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
        peak = max(peak, memory.peak_mib())
    return rows, seconds, peak, cpu


def port_phases(
    editor: PnPEditor, image: Image.Image, cfg: EditConfig, prompts: list[str], repeats: int
) -> tuple[Phase, Phase]:
    """The port's shared part (999 + 999 rows) once, and one prompt's edit (3 x 50 rows)."""
    port = EditConfig.from_dict(cfg.to_dict())
    port.inversion.steps = 999
    pipe = editor.pipeline
    memory = PeakMemory(pipe.device)

    def shared() -> int:
        editor.store.clear()
        with pipe.count_unet_rows() as counted:
            inversion = editor.invert(image, port)
            empty = inversion.latents.source_embedding
            pipe.scheduler.set_timesteps(999)
            # the port inverts all 999 steps; ours stops at the last kept timestep (981), so
            # its reconstruction starts there: the same 999 calls from t = 999 cost the same
            latent = inversion.latents.at(max(inversion.latents.by_timestep))
            with torch.no_grad():
                for t in pipe.scheduler.timesteps:
                    noise = pipe.unet(latent, t, encoder_hidden_states=empty).sample
                    latent = pipe.scheduler.step(noise, t, latent).prev_sample
        return counted.rows + (999 - inversion.unet_evaluations)  # the 18 steps it skips

    rows, seconds, peak, cpu = timed(memory, shared, 1, lambda: None)
    shared_phase = Phase("port: 999 inversion + 999 reconstruction", 0, rows, seconds, peak, cpu)
    inversion = editor.invert(image, port)
    # the port keeps the source row for all 50 steps
    index = iter(range(10**6))

    def one_prompt() -> int:
        prompt = prompts[next(index) % len(prompts)]
        return editor.edit(inversion, prompt, port, pnp_f_t=1.0).unet_evaluations

    rows, seconds, peak, cpu = timed(memory, one_prompt, repeats, lambda: None)
    return shared_phase, Phase("port: one prompt alone", 1, rows, seconds, peak, cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", default=None, help="default: a tiny random SD 1.5 layout")
    parser.add_argument("--sd15", action="store_true", help="SD 1.5 architecture, random weights")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32", choices=("fp32", "fp16", "bf16"))
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--prompts", type=int, default=4, help="K, the larger prompt count")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per phase (median)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-port", action="store_true", help="skip the port's procedure")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    editor = load_editor(args)
    editor.set_progress_bar_config(disable=True)
    memory = PeakMemory(editor.pipeline.device)
    rng = np.random.default_rng(0)
    photos = [Image.fromarray(rng.integers(0, 255, (96, 128, 3), np.uint8)) for _ in range(2)]
    cfg = editor.default_config()
    cfg.preprocess.size = args.size
    budget = 8 * 1024**3
    cache_root = Path(tempfile.mkdtemp(prefix="pnpsam-cache-"))
    phases: list[Phase] = []
    feature_mib = 0.0
    for k in sorted({1, args.prompts}):
        prompts = (PROMPTS * k)[:k]
        others = (PROMPTS[::-1] * k)[:k]
        session = Session(editor, cache_root)

        def new_photo_editor(k: int = k, session: Session = session) -> None:
            # each repeat: an empty cache folder and empty memory (a photo never seen)
            session.runs += 1
            session.folder = cache_root / f"k{k}-{session.runs}"
            session.editor = fresh_editor(editor, str(session.folder), budget)

        def first(prompts: list[str] = prompts, session: Session = session) -> int:
            return session.editor.edit(photos[0], prompts, cfg).unet_evaluations

        rows, secs, peak, cpu = timed(memory, first, args.repeats, new_photo_editor)
        phases.append(Phase("first edit", k, rows, secs, peak, cpu))
        feature_mib = max(feature_mib, session.editor.source_features.nbytes / 2**20)

        def again(others: list[str] = others, session: Session = session) -> int:
            return session.editor.edit(photos[0], others, cfg).unet_evaluations

        rows, secs, peak, cpu = timed(memory, again, args.repeats, lambda: None)
        phases.append(Phase("in-process re-edit", k, rows, secs, peak, cpu))

        def reopen(session: Session = session) -> None:  # the filled folder, a new process
            session.editor = fresh_editor(editor, str(session.folder), budget)

        rows, secs, peak, cpu = timed(memory, again, args.repeats, reopen)
        phases.append(Phase("cached re-edit (new editor)", k, rows, secs, peak, cpu))

    port: dict[int, tuple[int, float, float, float]] = {}
    if not args.no_port:
        shared, per_prompt = port_phases(editor, photos[1], cfg, PROMPTS, args.repeats)
        for k in sorted({1, args.prompts}):
            port[k] = (
                shared.rows + k * per_prompt.rows,
                shared.median + k * per_prompt.median,
                max(shared.peak_mib, per_prompt.peak_mib),
                shared.cpu_median + k * per_prompt.cpu_median,
            )
        phases += [shared, per_prompt]

    print(
        f"model {'random SD 1.5' if args.sd15 else editor.model.model}, device "
        f"{editor.pipeline.device}, dtype {args.dtype}, size {args.size}, "
        f"{cfg.pnp.steps} steps, median of {args.repeats}"
    )
    print(
        f"{'phase':<30} {'k':>2} {'rows':>6} {'wall s':>8} {'cpu s':>8} {'peak MiB':>9} "
        f"{'port/ours: rows':>16} {'wall':>6} {'cpu':>6}"
    )
    for phase in phases:
        ratios = ["", "", ""]
        if phase.prompts in port and not phase.name.startswith("port"):
            port_rows, port_s, _, port_cpu = port[phase.prompts]
            ratios = [
                f"x{port_rows / phase.rows:.1f}",
                f"x{port_s / phase.median:.1f}",
                f"x{port_cpu / phase.cpu_median:.1f}",
            ]
        print(
            f"{phase.name[:30]:<30} {phase.prompts or '':>2} {phase.rows:>6} "
            f"{phase.median:>8.2f} {phase.cpu_median:>8.2f} {phase.peak_mib:>9.0f} "
            f"{ratios[0]:>16} {ratios[1]:>6} {ratios[2]:>6}"
        )
    for k, (rows, seconds, peak, cpu_s) in port.items():
        print(f"{'port total':<30} {k:>2} {rows:>6} {seconds:>8.2f} {cpu_s:>8.2f} {peak:>9.0f}")
    print(f"kept source features per photo: {feature_mib:.1f} MiB")


if __name__ == "__main__":
    main()

"""Speed of re-edits: first edit, in-process re-edit, cached re-edit, and the port's procedure.

One run measures, for 1 and K prompts on the same model and photo, the UNet rows (counted by a
pre-hook), wall-clock and process CPU seconds (median of ``--repeats``) and peak memory of:

* first edit — a new photo: inversion + source stream (its features recorded) + guided rows;
* in-process re-edit — the same editor, other prompts: inversion and source features kept in
  memory (``feature_bytes``), so only the 2 x steps guided rows per prompt run;
* cached re-edit (new editor) — a new editor (empty memory) in this process with the same
  ``cache_dir``: the inversion is read from disk, the source stream runs once, then the guided
  rows;
* cached re-edit (new process) — the same in a fresh Python process (``--new-process``), which
  imports, builds or loads the model, then times its edit alone;
* port — pnp-diffusers' procedure on the same model: a 999-step inversion and a 999-step
  reconstruction per photo (timed ``--port-repeats`` times, once by default), then each prompt
  alone with the source row for all steps (its disk reads and writes left out);

and the ratios port / ours. Each phase is printed the moment it ends, and each long step is
announced before it starts. Peak memory per phase: ``torch.cuda.max_memory_allocated`` on CUDA,
the process RSS high-water mark on CPU (Linux resets it between phases). A warm-up edit on
another photo runs first (CUDA context, cuDNN/cuBLAS heuristics, ``torch.compile``) and is
printed apart. ``--json`` / ``--markdown`` write the table after every phase.

    python benchmarks/speed.py                          # tiny random SD 1.5 layout, CPU
    python benchmarks/speed.py --sd15 --device cuda --dtype fp16 --size 512 --new-process
    python benchmarks/speed.py --arch sdxl --device cuda --dtype fp16 --size 1024
    python benchmarks/speed.py --arch sdxl --size 64 --steps 10 --port-counted   # CPU: rows
    python benchmarks/speed.py --model stable-diffusion-v1-5/stable-diffusion-v1-5 --device cuda

``--arch sd15|sd2|sdxl`` builds that real architecture (SD 1.5: UNet 860 M, CLIP ViT-L; SD 2.1
768-v: UNet 865 M, OpenCLIP ViT-H, v-prediction; SDXL base: UNet 2.6 B, CLIP ViT-L and
OpenCLIP bigG, pooled text and time ids) with random weights filled on the device
(``pnpsam.models.tiny.shaped_pipeline``): no download, the real shapes, costs and memory.
``--sd15`` is ``--arch sd15``. ``--port-counted`` counts the port's rows (999 + 999 + 3 x steps
per prompt) instead of running them: on a CPU its 2000 real-size UNet rows take hours.
``benchmarks/gpu_speed.sh`` runs the device measurement in one command.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from pnpsam.api import PnPEditor
from pnpsam.config import EditConfig, ModelConfig
from pnpsam.core.conditioning import unet_inputs
from pnpsam.core.injection import find_injection_sites
from pnpsam.core.pipeline import PnPPipeline
from pnpsam.models.backbones import describe_pipeline
from pnpsam.models.speedups import COMPILE_MODES, speed_up
from pnpsam.models.tiny import ARCHES, shaped_pipeline, tiny_sd15_pipeline

PROMPTS = ["a red robot", "a blue dog", "a photo of snow", "a cat", "a robot dog", "a snow cat"]
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
FEATURE_BUDGET = 8 * 1024**3  # bytes of source features an editor may keep (in memory)
STARTED = time.perf_counter()


def say(message: str) -> None:
    """Announce what is about to happen (or happened), at once, with the elapsed time."""
    print(f"[{time.perf_counter() - STARTED:7.1f} s] {message}", flush=True)


@dataclass
class Phase:
    name: str
    prompts: int
    rows: int
    seconds: list[float]
    peak_mib: float
    cpu_seconds: list[float]
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu_seconds)


@dataclass
class Report:
    """The phases measured so far; prints each as it ends and rewrites the output files."""

    meta: dict[str, Any]
    json_path: Path | None = None
    markdown_path: Path | None = None
    phases: list[Phase] = field(default_factory=list)

    HEADER = (
        f"{'phase':<34} {'k':>2} {'rows':>6} {'wall s':>8} {'cpu s':>8} {'peak MiB':>9} "
        f"{'port/ours: rows':>16} {'wall':>7} {'cpu':>7}"
    )

    def add(self, phase: Phase) -> None:
        self.phases.append(phase)
        spread = ""
        if len(phase.seconds) > 1:
            spread = f" (runs {', '.join(f'{s:.2f}' for s in phase.seconds)})"
        say(
            f"done: {phase.name}, k={phase.prompts}: {phase.rows} rows, {phase.median:.2f} s "
            f"wall, {phase.cpu_median:.2f} s cpu, peak {phase.peak_mib:.0f} MiB{spread}"
            + (f"; {phase.note}" if phase.note else "")
        )
        self.write()

    def port_totals(self) -> dict[int, tuple[int, float, float, float]]:
        """k -> (rows, wall s, peak MiB, cpu s) of the port's procedure for k prompts."""
        shared = next((p for p in self.phases if p.name == PORT_SHARED), None)
        one = next((p for p in self.phases if p.name == PORT_PROMPT), None)
        if shared is None or one is None:
            return {}
        ks = sorted({p.prompts for p in self.phases if p.prompts and not is_port(p)})
        return {
            k: (
                shared.rows + k * one.rows,
                shared.median + k * one.median,
                max(shared.peak_mib, one.peak_mib),
                shared.cpu_median + k * one.cpu_median,
            )
            for k in ks
        }

    def rows(self) -> list[dict[str, Any]]:
        port = self.port_totals()
        table = []
        for phase in self.phases:
            row: dict[str, Any] = {
                "phase": phase.name,
                "prompts": phase.prompts,
                "rows": phase.rows,
                "wall_s": round(phase.median, 4),
                "cpu_s": round(phase.cpu_median, 4),
                "peak_mib": round(phase.peak_mib, 1),
                "runs_s": [round(s, 4) for s in phase.seconds],
                "note": phase.note,
            }
            if phase.prompts in port and not is_port(phase) and phase.median > 0:
                port_rows, port_s, _, port_cpu = port[phase.prompts]
                row["port_over_ours_rows"] = round(port_rows / max(phase.rows, 1), 2)
                row["port_over_ours_wall"] = round(port_s / phase.median, 2)
                row["port_over_ours_cpu"] = round(port_cpu / max(phase.cpu_median, 1e-9), 2)
            table.append(row)
        for k, (rows, seconds, peak, cpu_s) in port.items():
            table.append(
                {
                    "phase": "port total",
                    "prompts": k,
                    "rows": rows,
                    "wall_s": round(seconds, 4),
                    "cpu_s": round(cpu_s, 4),
                    "peak_mib": round(peak, 1),
                }
            )
        return table

    def write(self) -> None:
        if self.json_path is not None:
            data = {"meta": self.meta, "phases": self.rows()}
            _write_text(self.json_path, json.dumps(data, indent=1) + "\n")
        if self.markdown_path is not None:
            _write_text(self.markdown_path, self.markdown())

    def markdown(self) -> str:
        meta = self.meta
        lines = [
            f"{meta['model']}, {meta['device_name']}, {meta['dtype']}, {meta['size']} px, "
            f"{meta['steps']} steps, median of {meta['repeats']}"
            + (f", compile {meta['compile']}" if meta.get("compile") else "")
            + (", channels-last" if meta.get("channels_last") else ""),
            "",
            "| phase | k | rows | wall s | cpu s | peak MiB | port/ours wall |",
            "| --- | --: | --: | --: | --: | --: | --: |",
        ]
        for row in self.rows():
            ratio = row.get("port_over_ours_wall")
            lines.append(
                f"| {row['phase']} | {row['prompts'] or ''} | {row['rows']} | {row['wall_s']:.3f} "
                f"| {row['cpu_s']:.3f} | {row['peak_mib']:.0f} | "
                + (f"x{ratio:.1f}" if ratio is not None else "")
                + " |"
            )
        return "\n".join(lines) + "\n"

    def print_table(self) -> None:
        meta = self.meta
        print(
            f"model {meta['model']}, device {meta['device_name']}, dtype {meta['dtype']}, size "
            f"{meta['size']}, {meta['steps']} steps, median of {meta['repeats']}",
            flush=True,
        )
        print(self.HEADER)
        for row in self.rows():
            ratios = ["", "", ""]
            if "port_over_ours_wall" in row:
                ratios = [
                    f"x{row['port_over_ours_rows']:.1f}",
                    f"x{row['port_over_ours_wall']:.1f}",
                    f"x{row['port_over_ours_cpu']:.1f}",
                ]
            print(
                f"{row['phase'][:34]:<34} {row['prompts'] or '':>2} {row['rows']:>6} "
                f"{row['wall_s']:>8.2f} {row['cpu_s']:>8.2f} {row['peak_mib']:>9.0f} "
                f"{ratios[0]:>16} {ratios[1]:>7} {ratios[2]:>7}",
                flush=True,
            )


PORT_SHARED = "port: 999 inversion + 999 recon."
PORT_PROMPT = "port: one prompt alone"


def is_port(phase: Phase) -> bool:
    return phase.name.startswith("port")


def _write_text(path: Path, text: str) -> None:
    """Replace ``path`` whole (a reader never sees half a table)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


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


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so a wall-clock reading covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def load_editor(args: argparse.Namespace) -> PnPEditor:
    """The editor the phases share: a tiny random model (saved and loaded as a real folder is),
    a checkpoint, or a real architecture (``--arch``) with random weights filled on the
    device."""
    if args.arch is None:
        if args.model is None:
            args.model = tempfile.mkdtemp(prefix="pnpsam-tiny-")
            tiny_sd15_pipeline().save_pretrained(args.model)
        return PnPEditor.from_pretrained(
            ModelConfig(model=args.model, device=args.device, dtype=args.dtype)
        )
    device = torch.device(args.device)
    words = tuple(" ".join(PROMPTS).split())
    sd = shaped_pipeline(args.arch, 0, words, device=device, dtype=DTYPES[args.dtype])
    if args.arch == "sdxl" and args.dtype == "fp16":  # as the loader does: SDXL's VAE overflows
        sd.vae.to(torch.float32)
    config = ModelConfig(model=f"random-{args.arch}", device=args.device, dtype=args.dtype)
    return PnPEditor(PnPPipeline(sd, device), config)


def fresh_editor(like: PnPEditor, cache_dir: str | None) -> PnPEditor:
    """A new editor on the same loaded modules: empty memory, as a new process would have."""
    from pnpsam.store import InversionCache

    cache = InversionCache(cache_dir) if cache_dir is not None else None
    return PnPEditor(like.pipeline, like.model, cache=cache, feature_bytes=FEATURE_BUDGET)


def apply_speedups(editor: PnPEditor, cfg: EditConfig, args: argparse.Namespace) -> None:
    pipe = editor.pipeline
    sites = find_injection_sites(pipe.unet, cfg.pnp.residual_blocks, cfg.pnp.attention_blocks)
    eager = [*sites.residual.values(), *sites.attention.values()]
    if args.channels_last or args.compile:
        say(f"speed-ups: channels-last {args.channels_last}, compile {args.compile}")
    compiled = speed_up(pipe.sd, args.channels_last, args.compile, eager)
    if compiled:
        say(f"compiled blocks (the rest hold injection sites and run eagerly): {compiled}")
    kinds = Counter(type(p).__name__ for p in pipe.unet.attn_processors.values())
    say(f"UNet attention processors outside edits: {dict(kinds)}")


def timed(
    device: torch.device,
    run: Callable[[], int],
    repeats: int,
    before: Callable[[], object],
) -> tuple[int, list[float], float, list[float]]:
    """(rows, wall seconds per repeat, peak MiB, process CPU seconds per repeat) of ``run``.

    ``run`` returns rows; ``before`` runs ahead of each repeat, outside the timing. CPU time is
    the steadier measure on a shared machine, where wall-clock mostly measures the neighbours.
    """
    memory = PeakMemory(device)
    seconds, cpu, rows, peak = [], [], 0, 0.0
    for _ in range(repeats):
        before()
        memory.reset()
        started, started_cpu = time.perf_counter(), time.process_time()
        rows = run()
        synchronize(device)
        seconds.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
        peak = max(peak, memory.peak_mib())
    return rows, seconds, peak, cpu


def photos(size: int) -> list[Image.Image]:
    """Three seeded random square photos, 1.5 x ``size`` (edited at size x size): warm-up, ours,
    the port's."""
    rng = np.random.default_rng(0)
    side = size * 3 // 2
    return [Image.fromarray(rng.integers(0, 255, (side, side, 3), np.uint8)) for _ in range(3)]


def edit_config(editor: PnPEditor, args: argparse.Namespace) -> EditConfig:
    cfg = editor.default_config()
    cfg.preprocess.size = args.size
    if args.steps is not None:
        cfg.pnp.steps = args.steps
    return cfg


def port_phases(
    editor: PnPEditor,
    image: Image.Image,
    cfg: EditConfig,
    report: Report,
    repeats: int,
    port_repeats: int,
) -> None:
    """The port's shared part (999 + 999 rows) and one prompt's edit (3 x steps rows)."""
    port = EditConfig.from_dict(cfg.to_dict())
    port.inversion.steps = 999
    pipe = editor.pipeline

    def shared() -> int:
        editor.store.clear()
        with pipe.count_unet_rows() as counted:
            inversion = editor.invert(image, port)
            empty = unet_inputs(inversion.latents.source_embedding, inversion.latents.source_added)
            pipe.scheduler.set_timesteps(999)
            # the port inverts all 999 steps; ours stops at the last kept timestep (981), so
            # its reconstruction starts there: the same 999 calls from t = 999 cost the same.
            # Like the port, the timesteps stay on the CPU (one copy to the device per call).
            latent = inversion.latents.at(max(inversion.latents.by_timestep))
            with torch.no_grad():
                for t in pipe.scheduler.timesteps:
                    noise = pipe.unet(latent, t, **empty).sample
                    latent = pipe.scheduler.step(noise, t, latent).prev_sample
        return counted.rows + (999 - inversion.unet_evaluations)  # the 18 steps it skips

    say(f"port: 999-step inversion + 999-step reconstruction, {port_repeats} run(s) ...")
    rows, seconds, peak, cpu = timed(pipe.device, shared, port_repeats, lambda: None)
    report.add(Phase(PORT_SHARED, 0, rows, seconds, peak, cpu))
    inversion = editor.invert(image, port)
    index = iter(range(10**6))

    def one_prompt() -> int:  # the port keeps the source row for all steps
        prompt = PROMPTS[next(index) % len(PROMPTS)]
        return editor.edit(inversion, prompt, port, pnp_f_t=1.0).unet_evaluations

    say(f"port: one prompt alone, source row at every step, {repeats} run(s) ...")
    rows, seconds, peak, cpu = timed(pipe.device, one_prompt, repeats, lambda: None)
    report.add(Phase(PORT_PROMPT, 1, rows, seconds, peak, cpu))


def child_arguments(args: argparse.Namespace) -> list[str]:
    """The command line that rebuilds this run's model and settings in a new process."""
    argv = [sys.executable, str(Path(__file__).resolve())]
    argv += ["--device", args.device, "--dtype", args.dtype, "--size", str(args.size)]
    if args.threads is not None:
        argv += ["--threads", str(args.threads)]
    if args.steps is not None:
        argv += ["--steps", str(args.steps)]
    argv += ["--arch", args.arch] if args.arch else ["--model", args.model]
    if args.channels_last:
        argv.append("--channels-last")
    if args.compile:
        argv += ["--compile", args.compile]
    return argv


def new_process_reedit(
    args: argparse.Namespace, folder: Path, prompts: list[str], report: Report
) -> None:
    """Time a cached re-edit in a fresh Python process (imports, model, CUDA context anew)."""
    say(f"cached re-edit in a new process, k={len(prompts)} (imports + model first) ...")
    argv = [*child_arguments(args), "--child-reedit", str(folder), "--child-prompts", *prompts]
    argv += ["--child-spawned", repr(time.time())]
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    total = time.perf_counter() - started
    lines = [line for line in done.stdout.splitlines() if line.startswith("CHILD ")]
    if done.returncode != 0 or not lines:
        say(f"the new process failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
        return
    child = json.loads(lines[-1][len("CHILD ") :])
    note = f"process total {total:.1f} s; imports and model ready after {child['ready_s']:.1f} s"
    if not child["cached"]:
        note += "; the inversion was NOT read from the cache"
    report.add(
        Phase(
            "cached re-edit (new process)",
            len(prompts),
            child["rows"],
            [child["seconds"]],
            child["peak_mib"],
            [child["cpu_seconds"]],
            note,
        )
    )


def child_reedit(args: argparse.Namespace) -> None:
    """The new process's side: load the model, edit the cached photo once, print the timing."""
    editor = load_editor(args)
    editor.set_progress_bar_config(disable=True)
    cfg = edit_config(editor, args)
    apply_speedups(editor, cfg, args)
    ready = time.time() - args.child_spawned  # since the parent started this process
    editor = fresh_editor(editor, args.child_reedit)
    photo = photos(args.size)[1]
    result: dict[str, Any] = {}

    def run() -> int:
        edit = editor.edit(photo, args.child_prompts, cfg)
        result["cached"] = edit.inversion_cached
        return edit.unet_evaluations

    rows, seconds, peak, cpu = timed(editor.pipeline.device, run, 1, lambda: None)
    result.update(rows=rows, seconds=seconds[0], peak_mib=peak, cpu_seconds=cpu[0], ready_s=ready)
    print("CHILD " + json.dumps(result), flush=True)


def count_syncs(editor: PnPEditor, photo: Image.Image, prompts: list[str], cfg: EditConfig) -> None:
    """CUDA only: run one in-process re-edit under torch's sync debug mode and say how many
    host syncs it made, by source line (the sampling loop itself should make none)."""
    if editor.pipeline.device.type != "cuda":
        return
    say("host syncs of one in-process re-edit (torch.cuda.set_sync_debug_mode) ...")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            editor.edit(photo, prompts, cfg)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    where = Counter(
        f"{Path(w.filename).name}:{w.lineno}" for w in caught if "synchroniz" in str(w.message)
    )
    say(f"{sum(where.values())} host syncs in {cfg.pnp.steps} steps; by line: {dict(where)}")


def profile_reedit(
    editor: PnPEditor, photo: Image.Image, prompts: list[str], cfg: EditConfig, out: Path
) -> None:
    """Where an in-process re-edit's time goes: torch.profiler's top operators, saved."""
    from torch.profiler import ProfilerActivity, profile

    cuda = editor.pipeline.device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    say(f"profiling one in-process re-edit, k={len(prompts)} ...")
    with profile(activities=activities) as prof:
        editor.edit(photo, prompts, cfg)
        synchronize(editor.pipeline.device)
    sort = "cuda_time_total" if cuda else "cpu_time_total"
    table = prof.key_averages().table(sort_by=sort, row_limit=25)
    _write_text(out, table + "\n")
    print(table, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", default=None, help="default: a tiny random SD 1.5 layout")
    parser.add_argument(
        "--arch", default=None, choices=ARCHES, help="a real architecture, random weights"
    )
    parser.add_argument("--sd15", action="store_true", help="the same as --arch sd15")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32", choices=tuple(DTYPES))
    parser.add_argument("--size", type=int, default=32, help="image side in pixels")
    parser.add_argument("--steps", type=int, default=None, help="sampling steps (default 50)")
    parser.add_argument("--prompts", type=int, default=4, help="K, the larger prompt count")
    parser.add_argument(
        "--repeats", type=int, default=1, help="timed runs per phase (median; CPU default 1)"
    )
    parser.add_argument(
        "--port-repeats", type=int, default=1, help="timed runs of the port's 999 + 999 rows"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: OMP_NUM_THREADS)"
    )
    parser.add_argument("--no-port", action="store_true", help="skip the port's procedure")
    parser.add_argument(
        "--port-counted", action="store_true", help="count the port's rows, do not run them"
    )
    parser.add_argument(
        "--new-process", action="store_true", help="also time a cached re-edit in a new process"
    )
    parser.add_argument("--channels-last", action="store_true", help="UNet and VAE in NHWC")
    parser.add_argument(
        "--compile",
        default=None,
        choices=COMPILE_MODES,
        help="torch.compile the UNet blocks without injection sites (default: off)",
    )
    parser.add_argument("--count-syncs", action="store_true", help="CUDA: host syncs per edit")
    parser.add_argument("--profile", type=Path, default=None, help="write a re-edit's profile")
    parser.add_argument("--json", type=Path, default=None, help="write the table as JSON")
    parser.add_argument("--markdown", type=Path, default=None, help="write the table as markdown")
    parser.add_argument("--label", default="", help="a name for this run in the outputs")
    parser.add_argument("--child-reedit", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child-prompts", nargs="*", default=[], help=argparse.SUPPRESS)
    parser.add_argument("--child-spawned", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.sd15:
        args.arch = args.arch or "sd15"
    return args


def port_counted(report: Report, steps: int) -> None:
    """The port's rows for each k, counted (999-step inversion and reconstruction, then the
    source row and 2 guided rows at every step per prompt), and port/ours for every phase."""
    for phase in report.phases:
        if not phase.prompts or is_port(phase):
            continue
        port = 999 + 999 + 3 * steps * phase.prompts
        say(
            f"rows, {phase.name}, k={phase.prompts}: ours {phase.rows}, the port's {port} "
            f"(counted): port/ours x{port / max(phase.rows, 1):.1f}"
        )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.child_reedit is not None:
        child_reedit(args)
        return
    device = torch.device(args.device)
    what = f"{args.arch} architecture, random weights, on the device" if args.arch else "model"
    say(f"building {what} ({args.dtype}) ...")
    editor = load_editor(args)
    editor.set_progress_bar_config(disable=True)
    synchronize(device)
    backbone = describe_pipeline(editor.pipeline.sd)
    say(f"model ready on {editor.pipeline.device}: {backbone.label}")
    cfg = edit_config(editor, args)
    say(
        f"PnP sites: residual blocks {cfg.pnp.residual_blocks}, "
        f"attention blocks {cfg.pnp.attention_blocks}"
    )
    apply_speedups(editor, cfg, args)
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    report = Report(
        {
            "label": args.label,
            "model": f"random {args.arch}" if args.arch else str(editor.model.model),
            "device_name": device_name,
            "dtype": args.dtype,
            "size": args.size,
            "steps": cfg.pnp.steps,
            "repeats": args.repeats,
            "port_repeats": args.port_repeats,
            "threads": torch.get_num_threads(),
            "compile": args.compile,
            "channels_last": args.channels_last,
            "torch": torch.__version__,
        },
        args.json,
        args.markdown,
    )
    report.write()  # the run's settings, before anything can time out
    warm_photo, photo, port_photo = photos(args.size)
    say("warm-up edit on another photo, k=1 (CUDA/cuDNN set-up, compile; not counted) ...")
    rows, secs, peak, cpu = timed(
        device, lambda: editor.edit(warm_photo, PROMPTS[:1], cfg).unet_evaluations, 1, lambda: None
    )
    report.add(Phase("warm-up (other photo, not counted)", 0, rows, secs, peak, cpu))
    cache_root = Path(tempfile.mkdtemp(prefix="pnpsam-cache-"))
    for k in sorted({1, args.prompts}):
        prompts = (PROMPTS * k)[:k]
        others = (PROMPTS[::-1] * k)[:k]
        state: dict[str, Any] = {"runs": 0}

        def new_photo_editor(k: int = k, state: dict[str, Any] = state) -> None:
            # each repeat: an empty cache folder and empty memory (a photo never seen)
            state["runs"] += 1
            state["folder"] = cache_root / f"k{k}-{state['runs']}"
            state["editor"] = fresh_editor(editor, str(state["folder"]))

        def first(prompts: list[str] = prompts, state: dict[str, Any] = state) -> int:
            return int(state["editor"].edit(photo, prompts, cfg).unet_evaluations)

        say(f"first edit of a new photo, k={k}, {args.repeats} run(s) ...")
        rows, secs, peak, cpu = timed(device, first, args.repeats, new_photo_editor)
        kept = state["editor"].source_features.nbytes / 2**20
        report.add(Phase("first edit", k, rows, secs, peak, cpu, f"kept features {kept:.0f} MiB"))

        def again(others: list[str] = others, state: dict[str, Any] = state) -> int:
            return int(state["editor"].edit(photo, others, cfg).unet_evaluations)

        say(f"in-process re-edit, k={k} ...")
        rows, secs, peak, cpu = timed(device, again, args.repeats, lambda: None)
        report.add(Phase("in-process re-edit", k, rows, secs, peak, cpu))
        if k == args.prompts and args.count_syncs:
            count_syncs(state["editor"], photo, others, cfg)
        if k == 1 and args.profile is not None:
            profile_reedit(state["editor"], photo, others, cfg, args.profile)

        def reopen(state: dict[str, Any] = state) -> None:  # the filled folder, empty memory
            state["editor"] = fresh_editor(editor, str(state["folder"]))

        say(f"cached re-edit, new editor in this process, k={k} ...")
        rows, secs, peak, cpu = timed(device, again, args.repeats, reopen)
        report.add(Phase("cached re-edit (new editor)", k, rows, secs, peak, cpu))
        if args.new_process:
            new_process_reedit(args, state["folder"], others, report)
    if args.port_counted:
        port_counted(report, cfg.pnp.steps)
    elif not args.no_port:
        port_phases(editor, port_photo, cfg, report, args.repeats, args.port_repeats)
    report.print_table()
    say("finished")


if __name__ == "__main__":
    main()

"""The web app's re-edit: a run that inverts the photo against one that reuses its inversion.

Calls what the page's Translate button calls (``pnpsam.app.actions.run_edit``: edit, write the
PNGs, the record and the zip) on a toy-world photo with its subject clicked, the toy model on
the CPU. "Fresh" empties the editor's inversion store before each run; "reused" keeps it, as a
second run with another prompt does. Prints the medians, their ratio and the UNet rows.

    python benchmarks/app_reedit.py                   # toy model, 10 steps, 5 repeats
    python benchmarks/app_reedit.py --steps 50 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from pnpsam.api import PnPEditor
from pnpsam.app.actions import merge_sections, run_edit, subject_config
from pnpsam.app.session import Session
from pnpsam.config import ModelConfig
from pnpsam.toyworld.world import SceneSpec, render_scene


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    editor = PnPEditor.from_pretrained(ModelConfig(model="toy", device="cpu"))
    editor.set_progress_bar_config(disable=True)
    editor.masks.load_kwargs["local_files_only"] = True  # no hub: the GrabCut fallback
    spec = SceneSpec("red", "circle", "grass", center=(0.45, 0.55))
    image = Image.fromarray(render_scene(spec, seed=0).image)
    base = merge_sections(editor.default_config(), {"pnp": {"steps": args.steps}})
    times: dict[str, list[float]] = {"fresh": [], "reused": []}
    rows: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as folder:
        photo = Path(folder) / "toy.png"
        image.save(photo)
        session = Session.with_photo(str(photo), image).click(230.0, 281.0, "subject")
        cfg = subject_config(base, session, True)
        run_edit(editor, session, ["a blue circle on grass"], cfg, Path(folder) / "warm")
        for i in range(args.repeats):
            for kind in ("fresh", "reused"):
                if kind == "fresh":
                    editor.store.clear()
                started = time.perf_counter()
                done = run_edit(
                    editor, session, ["a yellow circle on grass"], cfg, Path(folder) / f"{kind}{i}"
                )
                times[kind].append(time.perf_counter() - started)
                rows[kind] = done.result.unet_evaluations
                assert done.result.inversion_reused == (kind == "reused")
    fresh, reused = (statistics.median(times[k]) for k in ("fresh", "reused"))
    print(
        f"toy model, CPU, {args.threads} thread(s), {args.steps} steps, "
        f"{args.repeats} repeats (medians)"
    )
    print(f"fresh inversion : {fresh:.3f} s, {rows['fresh']} UNet rows")
    print(f"reused inversion: {reused:.3f} s, {rows['reused']} UNet rows")
    print(f"ratio fresh / reused: {fresh / reused:.2f}")


if __name__ == "__main__":
    main()

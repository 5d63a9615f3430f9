"""Issue-19 probe: what the removed background is filled with before inversion.

The subject-aware default fills the background with black (``weaken.background`` remove)
and keeps the subject by injection (``mask_cells`` cover, ``background_weight`` 0.2). On
the toy v1 its shape is lost mostly where the target background is bright (snow, desert):
the model must turn a black background white and takes the subject with it. This probe
fills the background differently and runs the same injection on the filled photo:

* ``LEVEL`` (a number in [0, 1]): a constant grey level (0 = the default's black);
* ``mean``: two passes. Pass 1 is the default edit; pass 2 fills the background with the
  mean colour of pass 1's background (outside the subject mask grown by 2 px), i.e. the
  colour the target prompt gives the background, and edits again. Twice the time.

    python benchmarks/research/issue19_prefill.py SET START:END OUT.jsonl MODE[,MODE] [WEIGHT]

SET dev or held-out, colour + background targets, 20 steps, the toy model; WEIGHT the
pass-2 ``background_weight`` (default 0.2, the default's; another is named in the label). One
JSON line per (pair, mode), as ``issue19.py`` writes them (``subject`` = the default, from
pass 1 when a mode is ``mean``), so ``issue19.py summary`` / ``breakdown`` read the file.
Resumable per pair.

Measured (lines in ``issue19_runs/``; shape IoU / colour / background, mean [bootstrap 95%]):

- constant levels, 32 dev pairs (``dev_bg_fill.jsonl``): 0 (the default) 0.65 / 0.88 / 0.94;
  0.25: 0.68 / 0.88 / 0.91; 0.5: 0.51 / 0.75 / 0.91; 0.75: 0.34 / 0.78 / 0.91. By target:
  snow 0.07 at level 0, 0.69 at 0.75; night 0.93 at 0, 0.22 at 0.75. The best fill depends
  on the target background, hence ``mean``.
- ``mean``, 64 dev pairs (``dev_bg_prefill.jsonl``): 0.74 / 0.92 / 1.00 against the
  default's 0.68 / 0.89 / 0.92: IoU +0.06 [-0.02, 0.15], background +0.08 [0.02, 0.16]
  (with pass-2 weight 0.5: IoU +0.07 [-0.01, 0.16], background 0.98).
- ``mean``, once on the 64 held-out pairs of the README's table (``v1_bg_prefill.jsonl``):
  0.75 [0.69, 0.82] / 0.91 / 1.00 against the default's 0.75 / 0.88 / 0.98: IoU +0.01
  [-0.07, 0.09], colour +0.03 [-0.06, 0.14], background +0.02 [0.00, 0.05]; against scheme 3
  remove -0.11 [-0.18, -0.05]. Snow targets 0.00 -> 0.62, desert 0.53 -> 0.42. Not adopted:
  no shape gain on held-out pairs for twice the time.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from pnpsam.api import PnPEditor
from pnpsam.bench.toy import TOY_SETS, toy_base_config, with_source_prompt
from pnpsam.config import ModelConfig
from pnpsam.masks.ops import grow_mask
from pnpsam.methods import parse_methods, run_method
from pnpsam.toyworld.pairs import score_toy_edit, toy_pairs

STEPS = 20
# Pass 1's background colour is read this far from the subject, past the edge's blur.
BACKGROUND_MARGIN_PX = 2


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.asarray(image).round().clip(0, 255).astype(np.uint8)


def main(set_name: str, span: str, out: str, modes: str, weight: str = "0.2") -> None:
    warnings.simplefilter("ignore")
    start, end = (int(x) for x in span.split(":"))
    mode_list = modes.split(",")
    file = Path(out)
    done = (
        {json.loads(line)["pair"] for line in file.read_text().splitlines()}
        if file.exists()
        else set()
    )
    (default,) = parse_methods("subject")
    # The default's injection on a photo whose background is already filled.
    (filled,) = parse_methods(
        "subject:background=keep:mask_cells=cover:background_intent=follow"
        f":background_weight={weight}"
    )
    editor = PnPEditor.from_pretrained(ModelConfig(model="toy", device="cpu"))
    editor.set_progress_bar_config(disable=True)
    base = toy_base_config(editor, STEPS)
    default_config, filled_config = default.edit_config(base), filled.edit_config(base)
    pairs = toy_pairs(end, seed=TOY_SETS[set_name], change_background=True)
    for index in range(start, end):
        if index in done:
            continue
        pair = pairs[index]
        mask = pair.subject.astype(np.float32)
        rows = []
        first = None
        if "mean" in mode_list:
            config = with_source_prompt(default_config, pair.source.caption)
            output = run_method(
                default, editor, Image.fromarray(pair.image), mask, [pair.target.caption], config
            )
            first = np.asarray(output.images[0].convert("RGB"), dtype=np.float32)
            rows.append(("subject", score_toy_edit(pair, _to_uint8(first))))
        for mode in mode_list:
            if mode == "mean":
                assert first is not None
                background = grow_mask(mask, BACKGROUND_MARGIN_PX) < 0.5
                fill = first[background].mean(axis=0)
                label = "prefill-mean"
            else:
                fill = np.full(3, 255.0 * float(mode))
                label = f"fill-{mode}"
            if weight != "0.2":
                label += f":weight={weight}"
            photo = pair.image.astype(np.float32) * mask[..., None] + fill * (1 - mask[..., None])
            output = run_method(
                filled,
                editor,
                Image.fromarray(_to_uint8(photo)),
                mask,
                [pair.target.caption],
                filled_config,
            )
            rows.append((label, score_toy_edit(pair, np.asarray(output.images[0].convert("RGB")))))
        with file.open("a") as handle:
            for label, scores in rows:
                handle.write(json.dumps({"pair": index, "spec": label, "scores": scores}) + "\n")
        print(f"pair {index} done", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])

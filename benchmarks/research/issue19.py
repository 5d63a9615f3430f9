"""Issue-19 study runs: toy pairs edited by several methods, one JSON line per (pair, method).

    python benchmarks/research/issue19.py run MODEL SET KIND PAIRS OUT.jsonl SPEC,SPEC,...
    python benchmarks/research/issue19.py summary OUT.jsonl [REFERENCE]
    python benchmarks/research/issue19.py breakdown OUT.jsonl SET KIND [REFERENCE]

MODEL is ``toy`` or a model folder (toy v2: ``/work/shared/toy_v2``), SET dev or held-out,
KIND bg (colour + background targets) or col (colour only), 20 steps, the model's defaults
under each spec (``pnpsam demo``'s methods and settings; every edit gets the source's caption
as ``pnp.source_prompt``, so ``background_intent`` auto can decide). ``run`` appends a line
per finished edit and skips the ones already in OUT.jsonl, so a stopped run resumes; pairs run
in order, so a time-bounded run covers the first N pairs for every method. ``summary`` prints
the demo's tables (means, bootstrap 95% intervals, paired differences to REFERENCE, default
``pnp``) over the pairs every method finished. ``breakdown`` splits the shape IoU by the
target's background: per method, how many pairs follow it and the IoU where they do and where
they do not; then the paired IoU difference to REFERENCE on all pairs, on the pairs where both
follow the target background and on the pairs where both follow colour and background
(the README's "where the gap to scheme 3 remove comes from").

The held-out numbers of the README's background-intent section came from these (KIND col and
bg; per-pair lines in ``benchmarks/research/issue19_runs/``, whose README lists them):

    M=subject,pnp,scheme3:background=remove:restore=none
    issue19.py run toy held-out KIND 64 v1_KIND.jsonl $M      # ~1 s per edit
    issue19.py summary v1_KIND.jsonl
    # toy v2, at its residual block 2 (the first 8x8 layer; chosen on the dev sweep
    # v2_dev_*_blocks.jsonl, as src/pnpsam/assets/toy_v2/pnpsam_defaults.json); the
    # earlier v2 runs used block 3
    B=:residual_blocks=[2]
    M2=subject$B,pnp$B,scheme3:background=remove:restore=none$B
    issue19.py run /work/shared/toy_v2 held-out KIND 64 v2_KIND_block2.jsonl $M2   # ~2.5 s per edit
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from pnpsam.api import PnPEditor
from pnpsam.bench.report import bootstrap_ci
from pnpsam.bench.toy import (
    METHOD_NAMES,
    TOY_SETS,
    metrics_markdown,
    toy_base_config,
    toy_summary,
    with_source_prompt,
)
from pnpsam.config import ModelConfig
from pnpsam.methods import parse_methods, run_method
from pnpsam.toyworld.pairs import score_toy_edit, toy_pairs

STEPS = 20


def run(model: str, set_name: str, kind: str, count: str, out: str, specs: str) -> None:
    warnings.simplefilter("ignore")
    methods = parse_methods(specs)
    file = Path(out)
    done = set()
    if file.exists():
        for line in file.read_text().splitlines():
            row = json.loads(line)
            done.add((row["pair"], row["spec"]))
    editor = PnPEditor.from_pretrained(ModelConfig(model=model, device="cpu"))
    editor.set_progress_bar_config(disable=True)
    base = toy_base_config(editor, STEPS)
    pairs = toy_pairs(int(count), seed=TOY_SETS[set_name], change_background=kind == "bg")
    configs = [spec.edit_config(base) for spec in methods]
    for index, pair in enumerate(pairs):
        for spec, config in zip(methods, configs, strict=True):
            if (index, spec.label) in done:
                continue
            output = run_method(
                spec,
                editor,
                Image.fromarray(pair.image),
                pair.subject.astype(np.float32),
                [pair.target.caption],
                with_source_prompt(config, pair.source.caption),
            )
            scores = score_toy_edit(pair, np.asarray(output.images[0].convert("RGB")))
            row = {"pair": index, "spec": spec.label, "scores": scores}
            with file.open("a") as handle:
                handle.write(json.dumps(row) + "\n")
        print(f"pair {index} done", flush=True)


def _load(out: str) -> tuple[list[str], dict[int, dict[str, dict[str, float]]], list[int]]:
    """(specs in file order, pair -> spec -> scores, the pairs every spec finished)."""
    rows = [json.loads(line) for line in Path(out).read_text().splitlines()]
    specs = list(dict.fromkeys(r["spec"] for r in rows))
    by_pair: dict[int, dict[str, dict[str, float]]] = {}
    for r in rows:
        by_pair.setdefault(r["pair"], {})[r["spec"]] = r["scores"]
    complete = sorted(p for p, found in by_pair.items() if len(found) == len(specs))
    return specs, by_pair, complete


def summary(out: str, reference: str = "pnp") -> None:
    specs, by_pair, complete = _load(out)
    table = []
    for spec in specs:
        per_pair = [by_pair[p][spec] for p in complete]
        row = {"method": METHOD_NAMES.get(spec, spec), "spec": spec, "per_pair": per_pair}
        row.update({k: float(np.mean([s[k] for s in per_pair])) for k in per_pair[0]})
        row["seconds_per_edit"] = float("nan")
        table.append(row)
    print(metrics_markdown(toy_summary(table, reference), len(complete), f" ({out})"))


def _estimate(values: list[float]) -> str:
    if not values:
        return "-"
    e = bootstrap_ci(values)
    return f"{e.mean:+.2f} [{e.low:+.2f}, {e.high:+.2f}] (n={e.n})"


def _mean_text(values: list[float]) -> str:
    return f"{np.mean(values):.2f}" if values else "-"


def _gated(scores: dict[str, float]) -> float:
    """Shape IoU when the edit followed colour and background, else 0."""
    return scores["iou"] * scores["color"] * scores["background"]


def breakdown(out: str, set_name: str, kind: str, reference: str = "pnp") -> None:
    specs, by_pair, complete = _load(out)
    pairs = toy_pairs(max(complete) + 1, seed=TOY_SETS[set_name], change_background=kind == "bg")
    backgrounds = sorted({pairs[p].target.background for p in complete})
    print(
        f"Shape IoU by target background ({out}, {len(complete)} pairs): followed/pairs, "
        "mean IoU where the background follows | where it does not\n"
    )
    print("| method | " + " | ".join(backgrounds) + " |")
    print("|---|" + "---|" * len(backgrounds))
    for spec in specs:
        cells = []
        for bg in backgrounds:
            mine = [by_pair[p][spec] for p in complete if pairs[p].target.background == bg]
            yes = [s["iou"] for s in mine if s["background"] == 1]
            no = [s["iou"] for s in mine if s["background"] != 1]
            cells.append(f"{len(yes)}/{len(mine)}: {_mean_text(yes)} \\| {_mean_text(no)}")
        print(f"| {METHOD_NAMES.get(spec, spec)} | " + " | ".join(cells) + " |")
    name = METHOD_NAMES.get(reference, reference)
    print(f"\nPaired IoU difference to {name}, mean [bootstrap 95%]:\n")
    print(
        "| method | all pairs | both follow the background | both follow colour and background "
        "| IoU where colour and background follow, else 0 |"
    )
    print("|---|---|---|---|---|")
    for spec in specs:
        if spec == reference:
            continue
        rows = [(by_pair[p][spec], by_pair[p][reference]) for p in complete]
        both_bg = [a["iou"] - b["iou"] for a, b in rows if a["background"] == b["background"] == 1]
        both_all = [
            a["iou"] - b["iou"]
            for a, b in rows
            if a["background"] == b["background"] == a["color"] == b["color"] == 1
        ]
        every = [a["iou"] - b["iou"] for a, b in rows]
        gated = [_gated(a) - _gated(b) for a, b in rows]
        print(
            f"| {METHOD_NAMES.get(spec, spec)} | {_estimate(every)} | {_estimate(both_bg)} "
            f"| {_estimate(both_all)} | {_estimate(gated)} |"
        )
    means = {spec: np.mean([_gated(by_pair[p][spec]) for p in complete]) for spec in specs}
    gated_means = ", ".join(f"{METHOD_NAMES.get(k, k)} {v:.2f}" for k, v in means.items())
    print(f"\nIoU where colour and background follow, else 0: {gated_means}")


if __name__ == "__main__":
    {"run": run, "summary": summary, "breakdown": breakdown}[sys.argv[1]](*sys.argv[2:])

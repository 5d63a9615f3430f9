"""Run benchmark methods over toy-world pairs and score each output exactly.

Toy sources come with their exact subject and clutter masks, so each edit is judged exactly:
does the subject keep its shape, take the target colour, does the background become the target
background, and does the old clutter come back (``pnpsam.toyworld.pairs.score_toy_edit``).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from pnpsam.config import EditConfig
from pnpsam.methods import MethodSpec, run_method
from pnpsam.paths import safe_name

if TYPE_CHECKING:  # torch, SciPy, OpenCV: the demo's parser lists the methods without them
    from pnpsam.api import PnPEditor
    from pnpsam.toyworld.pairs import ToyPair

# Fixed toy pair sets: tune on ``dev`` only; ``held-out`` is run once per final candidate.
TOY_SETS: dict[str, int] = {"dev": 100, "held-out": 500}  # set name -> toy_pairs seed
SCORE_KEYS = ("iou", "color", "background", "shape", "clutter")

DEMO_METHODS = (
    "subject",  # the subject-aware default: background removed before inversion, mask injection
    "pnp:pnp_f_t=0:pnp_attn_t=0:start=noise",  # fresh noise: plain text-to-image, seeded
    "pnp:pnp_f_t=0:pnp_attn_t=0",  # no injection: sampling from the inverted latent
    "pnp",
    "scheme1",
    "scheme2",
    "scheme3:background=remove:restore=none",
    "scheme3",  # dim 0.5 + the report's global x2 restore
    "scheme3:restore=masked",
    "scheme3:restore=luminance",
    "pnp-masked",
    "pnp-masked:background_noise=0.5",
)
METHOD_NAMES = {
    "subject": "subject (default)",
    "pnp:pnp_f_t=0:pnp_attn_t=0:start=noise": "fresh noise",
    "pnp:pnp_f_t=0:pnp_attn_t=0": "no injection",
    "scheme3:background=remove:restore=none": "scheme3 remove",
    "scheme3": "scheme3 dim+global",
    "scheme3:restore=masked": "scheme3 dim+masked",
    "scheme3:restore=luminance": "scheme3 dim+luminance",
    "pnp-masked": "mask injection",
    "pnp-masked:background_noise=0.5": "mask inj.+renoise",
}


def toy_base_config(editor: PnPEditor, steps: int) -> EditConfig:
    """The editor's defaults (the toy model's pnpsam_defaults.json) at ``steps`` steps."""
    cfg = editor.default_config()
    cfg.pnp.steps = cfg.inversion.steps = steps
    return cfg


class ToyEditStore:
    """Finished (pair, method) edits of a toy comparison, kept in a folder so a stopped run
    resumes: ``images/<method>/<pair>.png`` (written atomically) and then one line per edit in
    ``edits.jsonl`` (``key``, ``scores``, ``seconds``). An edit counts as done when a line with
    its key exists and its image can be read; a torn last line or a lost image is edited again.

    ``settings``: what decides every output besides the pair and the method (model, steps, ...);
    the key of one edit is the digest of it, the method's spec and the pair's pixels and target.
    """

    ROWS = "edits.jsonl"

    def __init__(self, folder: Path, settings: dict[str, Any]) -> None:
        from pnpsam.outputs import read_json_lines  # torch: only when run

        self.folder = folder
        self.settings = settings
        done = read_json_lines(folder / self.ROWS, ("key", "scores", "seconds"))
        self._rows = {row["key"]: row for row in done}

    def key(self, pair: ToyPair, spec: MethodSpec, mask: np.ndarray | None = None) -> str:
        """The edit's digest; ``mask``: the subject mask it used when not the pair's exact one
        (a clicked mask: another mask, another edit)."""
        from pnpsam.config import fingerprint
        from pnpsam.imageio import image_digest  # torch: only when run

        pair_id = [image_digest(pair.image), pair.target.caption]
        if mask is not None:
            pair_id.append(fingerprint(np.packbits(np.asarray(mask) > 0.5).tobytes().hex()))
        return fingerprint([self.settings, spec.label, pair_id])

    def image_path(self, index: int, spec: MethodSpec) -> Path:
        return self.folder / "images" / safe_name(spec.label) / f"{index:03d}.png"

    def get(
        self, index: int, pair: ToyPair, spec: MethodSpec, mask: np.ndarray | None = None
    ) -> tuple[np.ndarray, dict[str, float], float] | None:
        """(output HxWx3 uint8, scores, seconds) of a finished edit, or None."""
        row = self._rows.get(self.key(pair, spec, mask))
        path = self.image_path(index, spec)
        if row is None or not path.is_file():
            return None
        try:
            with Image.open(path) as image:
                output = np.asarray(image.convert("RGB"))
        except OSError:  # unreadable: edit it again
            return None
        return output, row["scores"], float(row["seconds"])

    def put(
        self,
        index: int,
        pair: ToyPair,
        spec: MethodSpec,
        output: np.ndarray,
        scores: dict[str, float],
        seconds: float,
        mask: np.ndarray | None = None,
    ) -> None:
        """Keep one finished edit: its image first, then its line (the line makes it count)."""
        from pnpsam.imageio import save_png
        from pnpsam.outputs import append_lines

        save_png(Image.fromarray(output), self.image_path(index, spec))
        row = {"key": self.key(pair, spec, mask), "pair": index, "method": spec.label}
        row.update(scores=scores, seconds=seconds)
        append_lines(self.folder / self.ROWS, [json.dumps(row)])
        self._rows[row["key"]] = row


@dataclasses.dataclass(frozen=True)
class ClickedMasks:
    """Subject masks made as a user makes them: one click at each subject's centre, through
    the model's SAM (``cfg.mask.sam_model``; GrabCut when SAM is unavailable).

    ``masks``: one ``HxW float32`` in [0, 1] per pair; ``clicks``: the ``(x, y)`` click per
    pair; ``ious``: each mask's IoU with the pair's exact subject mask; ``method``: "sam" or
    "grabcut"; ``notes``: the warnings the masks raised (fallback, doubtful selection), once.
    """

    masks: list[np.ndarray]
    clicks: list[tuple[float, float]]
    ious: list[float]
    method: str
    notes: list[str]


def click_masks(editor: PnPEditor, pairs: Sequence[ToyPair]) -> ClickedMasks:
    """One centre click per pair through ``editor.segment`` (the model's default SAM)."""
    import warnings

    from pnpsam.toyworld.measure import subject_iou
    from pnpsam.toyworld.prompts import centre_click

    cfg = editor.default_config()
    masks, clicks, ious, methods = [], [], [], set()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for pair in pairs:
            click = centre_click(pair.subject)
            cfg.mask.points = [click]
            made = editor.segment(pair.image, cfg)
            mask = made.mask if made is not None else np.zeros(pair.subject.shape, np.float32)
            methods.add(made.method if made is not None else "none")
            masks.append(mask)
            clicks.append(click)
            ious.append(subject_iou(mask > 0.5, pair.subject))
    notes = list(dict.fromkeys(str(w.message) for w in caught))
    return ClickedMasks(masks, clicks, ious, "+".join(sorted(methods)), notes)


def with_source_prompt(config: EditConfig, caption: str) -> EditConfig:
    """``config`` with ``pnp.source_prompt`` set to the source's ``caption`` unless the method
    set one: every toy source is described, as a user would describe a photo, so
    ``background_intent`` auto can tell whether the target keeps its background."""
    if config.pnp.source_prompt:
        return config
    return dataclasses.replace(config, pnp=dataclasses.replace(config.pnp, source_prompt=caption))


def run_toy_comparison(
    editor: PnPEditor,
    pairs: Sequence[ToyPair],
    methods: Sequence[MethodSpec],
    steps: int,
    progress: bool = False,
    store: ToyEditStore | None = None,
    on_pair: Callable[[list[dict[str, Any]], dict[str, list[np.ndarray]]], object] | None = None,
    masks: Sequence[np.ndarray] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, list[np.ndarray]]]:
    """Run every method on every pair; returns (per-method summary rows, outputs by label).

    Each row has the method's mean of every score (``iou``, ``color``, ...), ``seconds_per_edit``
    and ``per_pair``: the scores of every pair, in ``pairs`` order (for intervals and paired
    differences, see :func:`toy_summary`). Each edit gets the source's caption as
    ``pnp.source_prompt`` (``with_source_prompt``). Pairs run in the outer loop, so methods
    that invert the same pixels share one inversion. ``progress``: a bar over the edits
    (pairs x methods) with an ETA, on stderr. ``store``: edits finished earlier are taken from
    it and every new one is kept in it as soon as it is made. ``on_pair(rows, outputs)``:
    called after each pair with the rows and outputs of the pairs so far (to write partial
    results). ``masks``: the subject mask each edit uses, one ``HxW`` per pair in ``pairs``
    order (a user's clicked mask); None = each pair's exact mask. Scores always judge against
    the exact masks.
    """
    from tqdm.auto import tqdm

    from pnpsam.toyworld.pairs import score_toy_edit  # OpenCV and SciPy: only when run

    base = toy_base_config(editor, steps)
    bar = tqdm(total=len(methods) * len(pairs), desc="demo", unit="edit", disable=not progress)
    configs = [spec.edit_config(base) for spec in methods]
    outputs: dict[str, list[np.ndarray]] = {spec.label: [] for spec in methods}
    scores: dict[str, list[dict[str, float]]] = {spec.label: [] for spec in methods}
    seconds = dict.fromkeys(outputs, 0.0)
    if masks is not None and len(masks) != len(pairs):
        raise ValueError(f"got {len(masks)} masks for {len(pairs)} pairs")
    for index, pair in enumerate(pairs):
        image = Image.fromarray(pair.image)
        given = None if masks is None else masks[index]
        subject = pair.subject.astype(np.float32) if given is None else given
        for spec, config in zip(methods, configs, strict=True):
            kept = store.get(index, pair, spec, given) if store is not None else None
            if kept is not None:
                output, score, took = kept
            else:
                started = time.perf_counter()
                result = run_method(
                    spec,
                    editor,
                    image,
                    subject,
                    [pair.target.caption],
                    with_source_prompt(config, pair.source.caption),
                )
                took = time.perf_counter() - started
                output = np.asarray(result.images[0].convert("RGB"))
                score = score_toy_edit(pair, output)
                if store is not None:
                    store.put(index, pair, spec, output, score, took, given)
            seconds[spec.label] += took
            outputs[spec.label].append(output)
            scores[spec.label].append(score)
            bar.update()
        if on_pair is not None:
            on_pair(_method_rows(methods, scores, seconds, index + 1), outputs)
    bar.close()
    return _method_rows(methods, scores, seconds, len(pairs)), outputs


def _method_rows(
    methods: Sequence[MethodSpec],
    scores: dict[str, list[dict[str, float]]],
    seconds: dict[str, float],
    pairs: int,
) -> list[dict[str, Any]]:
    rows = []
    for spec in methods:
        mine = list(scores[spec.label])
        row: dict[str, Any] = {
            "method": METHOD_NAMES.get(spec.label, spec.label),
            "spec": spec.label,
        }
        row.update({key: float(np.mean([s[key] for s in mine])) for key in SCORE_KEYS})
        row["seconds_per_edit"] = seconds[spec.label] / pairs
        row["per_pair"] = mine
        rows.append(row)
    return rows


def toy_summary(
    rows: Sequence[dict[str, Any]], reference: str | None = "pnp"
) -> list[dict[str, Any]]:
    """Rows of :func:`run_toy_comparison` with, per score, ``ci`` (bootstrap 95% interval of
    the mean) and, when the spec ``reference`` was run, ``diff``: the paired difference to it
    (mean and paired-bootstrap 95% interval over the same pairs)."""
    from pnpsam.bench.report import bootstrap_ci, paired_differences  # SciPy: only when run

    by_spec = {r["spec"]: r["per_pair"] for r in rows}
    diffs = (
        paired_differences(by_spec, reference, SCORE_KEYS)
        if reference is not None and reference in by_spec
        else {}
    )
    out = []
    for r in rows:
        ci = {k: bootstrap_ci([s[k] for s in r["per_pair"]]) for k in SCORE_KEYS}
        summary = {**r, "ci": {k: [e.low, e.high] for k, e in ci.items()}}
        if r["spec"] in diffs:
            summary["diff"] = {
                k: {"mean": e.mean, "low": e.low, "high": e.high}
                for k, e in diffs[r["spec"]].items()
            }
        out.append(summary)
    return out


def _interval(mean: float, low: float, high: float, signed: bool = False) -> str:
    value = f"{mean:+.2f}" if signed else f"{mean:.2f}"
    return value if np.isnan(low) else f"{value} [{low:.2f}, {high:.2f}]"


def metrics_markdown(rows: Sequence[dict[str, Any]], pairs: int, title: str = "") -> str:
    """Markdown tables of :func:`toy_summary` rows: means with bootstrap 95% intervals, then
    paired differences to the reference method (when it was run)."""
    summaries = [r if "ci" in r else toy_summary([r], None)[0] for r in rows]
    lines = [
        f"Toy-world comparison{title} over {pairs} source/target pairs: mean [bootstrap 95% "
        "interval]. iou: subject shape kept (IoU with the source mask); color / background / "
        "shape: fraction following the target; clutter: correlation of the source clutter with "
        "the output's structure (lower = the old background did not come back).",
        "",
        "| method | iou | color | background | shape | clutter | s/edit |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in summaries:
        cells = [_interval(r[k], *r["ci"][k]) for k in SCORE_KEYS]
        lines.append(
            f"| {r['method']} | " + " | ".join(cells) + f" | {r['seconds_per_edit']:.2f} |"
        )
    with_diff = [r for r in summaries if "diff" in r and r["spec"] != "pnp"]
    if with_diff:
        lines += [
            "",
            "Paired differences to plain PnP (method - PnP on the same pairs; paired bootstrap "
            "95% interval):",
            "",
            "| method | Δ iou | Δ color | Δ background | Δ shape | Δ clutter |",
            "|---|---|---|---|---|---|",
        ]
        for r in with_diff:
            d = r["diff"]
            cells = [
                _interval(d[k]["mean"], d[k]["low"], d[k]["high"], signed=True) for k in SCORE_KEYS
            ]
            lines.append(f"| {r['method']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"

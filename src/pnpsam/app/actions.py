"""What the page's buttons do, on plain values: settings from the option table, masks, edits.

Front-end tier: only :mod:`pnpsam.api`, :mod:`pnpsam.config`, :mod:`pnpsam.masks` and the floor:
the option table (:mod:`pnpsam.options`), the method registry (:mod:`pnpsam.methods`) and the
edit's writer and names (:mod:`pnpsam.outputs`), so the page offers every ``pnpsam edit``
option and writes the same files. Errors are the library's ``ValueError`` subclasses; the UI
shows their message.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import time
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pnpsam.api import EditResult, PnPEditor
from pnpsam.config import LIMITS, ConfigError, EditConfig, check_limit
from pnpsam.core.callbacks import StepCallback
from pnpsam.imageio import save_json, save_png
from pnpsam.masks import (
    DoubtfulMaskWarning,
    EmptyMaskWarning,
    SamUnavailableWarning,
    SubjectMask,
)
from pnpsam.methods import METHODS
from pnpsam.options import OPTIONS, Option
from pnpsam.outputs import OutputPaths, edit_files, write_bytes

from .session import Session

# The background intent: one control beside the prompts (what the prompt asks of the
# background), not in the advanced section.
INTENT: Option = next(o for o in OPTIONS if o.field == "background_intent")
INTENT_HELP = (
    "keep: the prompt keeps the photo's background (e.g. only the subject's colour changes); "
    "follow: the background follows the prompt; auto: keep when the source prompt "
    "(advanced: --source-prompt) and every target prompt end in the same background words, "
    "else follow"
)
# The page's "advanced" section: every edit option of the CLI except the model (fixed at
# launch), the subject's sources (clicks, text, file: the left column) and the intent.
ADVANCED: tuple[Option, ...] = tuple(
    o
    for o in OPTIONS
    if o.section in ("preprocess", "inversion", "pnp", "weaken") and o is not INTENT
)
_SOURCES = ("points", "neg_points", "box", "subject", "mask_file")
MASK_TOOLS: tuple[Option, ...] = tuple(
    o for o in OPTIONS if o.section == "mask" and o.field not in _SOURCES
)
NO_SUBJECT = "No subject: the edit is plain PnP. Click on the subject to select it."


@dataclass(frozen=True)
class Caps:
    """A server's own tops, below ``config.LIMITS`` (None: the limit there): the photo side
    (``preprocess.size``), sampling and inversion steps, and prompts per run. An operator
    raises them with ``pnpsam app --max-size/--max-steps/--max-prompts``."""

    size: int | None = None
    steps: int | None = None
    prompts: int | None = None

    @classmethod
    def for_device(cls, device: str, native_size: int) -> Caps:
        """Defaults: none on an accelerator; without one (``device`` "cpu"), tops that keep one
        edit within ~30 s on 2 cores: twice the model's own side (the toy at 128 px: ~8 s per
        prompt, 50 steps), 50 steps, 4 prompts."""
        if device != "cpu":
            return cls()
        return cls(size=2 * native_size, steps=50, prompts=4)

    def check(self, cfg: EditConfig) -> None:
        """Refuse ``cfg`` above a cap (the message names the allowed range and the flag)."""
        if cfg.preprocess.size is not None:  # None: the model's own side (checked at start)
            check_limit("preprocess.size", cfg.preprocess.size, self.size, _raise("--max-size"))
        check_limit("pnp.steps", cfg.pnp.steps, self.steps, _raise("--max-steps"))
        if cfg.inversion.steps is not None:
            check_limit("inversion.steps", cfg.inversion.steps, self.steps, _raise("--max-steps"))

    def summary(self) -> str:
        """The caps as the page states them."""
        size = self.size or LIMITS["preprocess.size"][1]
        steps = self.steps or LIMITS["pnp.steps"][1]
        prompts = self.prompts or LIMITS["prompts"][1]
        return f"up to {size} px, {steps} steps, {prompts} prompts per run"


def _raise(flag: str) -> str:
    return f" on this server (its operator raises it with `pnpsam app {flag}`)"


# "auto": the subject-aware default (the bench method "subject") with a subject, plain PnP
# without. The others are the benchmark's methods (one definition of what each sets); sdedit
# is not offered here.
METHOD_CHOICES: tuple[str, ...] = ("auto", "pnp", "pnp-masked", "scheme1", "scheme2", "scheme3")


def method_summary(name: str) -> str:
    if name == "auto":
        return "the subject-aware default when a subject is selected, else plain PnP"
    return METHODS[name].summary


def label(option: Option) -> str:
    """A component label: the CLI flag (so the page and the command line speak alike)."""
    return option.flag


def shown_value(option: Option, cfg: EditConfig) -> str | bool:
    """``cfg``'s value of ``option`` as the page shows it: a checkbox state or text."""
    value = getattr(getattr(cfg, option.section), option.field)
    if option.switch:
        return bool(value)
    if value is None:
        return ""
    if isinstance(value, tuple | list):
        return ",".join(str(v) for v in value)
    return str(value)


def parse_value(option: Option, value: Any) -> Any:
    """A page value -> the config value, parsed like the CLI flag ("" = the field's None)."""
    if option.switch:
        return bool(value)
    if option.type is str:
        return "" if value is None else str(value)
    text = "" if value is None else str(value).strip()
    if not text:
        return None
    try:
        return option.type(text)
    except (ValueError, argparse.ArgumentTypeError) as error:
        raise ConfigError(f"{option.flag}: {error}") from None


def with_values(base: EditConfig, options: Sequence[Option], values: Sequence[Any]) -> EditConfig:
    """``base`` with each option set from the page's value, validated."""
    if len(options) != len(values):
        raise ValueError(f"expected {len(options)} option values, got {len(values)}")
    data = base.to_dict()
    for option, value in zip(options, values, strict=True):
        data[option.section][option.field] = parse_value(option, value)
    return EditConfig.from_dict(data).validate()


def merge_sections(base: EditConfig, sections: Mapping[str, Any]) -> EditConfig:
    """``base`` with a config file's sections (``{"pnp": {"steps": 10}, ...}``) merged in."""
    if not isinstance(sections, Mapping):
        raise ConfigError(f"config must be a mapping of sections; got {type(sections).__name__}")
    data = base.to_dict()
    for name, values in sections.items():
        if name not in data or name == "model":
            raise ConfigError(f"unknown or fixed config section {name!r}")
        if not isinstance(values, Mapping):
            raise ConfigError(f"config section {name!r} must be a mapping")
        data[name].update(values)
    return EditConfig.from_dict(data).validate()


def method_values(name: str, defaults: EditConfig) -> list[str | bool]:
    """The advanced section's values after choosing method ``name``: fields that any method
    sets go back to ``defaults``, then ``name``'s settings apply (the page then shows exactly
    what will run)."""
    data = defaults.to_dict()
    for section, values in (METHODS[name].settings if name in METHODS else {}).items():
        data[section].update(values)
    chosen = EditConfig.from_dict(data)
    return [shown_value(o, chosen) for o in ADVANCED]


def uses_subject(method: str, session: Session) -> bool:
    """Whether ``method`` gives the subject to the editor (and needs one)."""
    if method == "auto":
        return session.has_subject_source
    if method not in METHODS:
        raise ConfigError(f"method must be one of {METHOD_CHOICES}; got {method!r}")
    needs = METHODS[method].uses_mask
    if needs and not session.has_subject_source:
        raise ConfigError(
            f"method {method!r} needs a subject: click on it, select it by text or upload a mask"
        )
    return needs


def parse_prompts(text: str, cap: int | None = None) -> list[str]:
    """Target prompts, one per non-empty line: at most ``LIMITS["prompts"]`` (or ``cap``)."""
    prompts = [line.strip() for line in (text or "").splitlines() if line.strip()]
    if not prompts:
        raise ConfigError("type at least one target prompt (one per line)")
    check_limit("prompts", len(prompts), cap, _raise("--max-prompts"))
    return prompts


def dropped_words(tokenizer: Any, prompt: str) -> list[str]:
    """The words at the end of ``prompt`` that the text encoder never reads: the tokenizer
    (``transformers`` CLIP) keeps ``model_max_length`` tokens, start and end included."""
    room = int(tokenizer.model_max_length) - 2
    words = prompt.split()

    def fits(count: int) -> bool:
        ids = tokenizer(" ".join(words[:count]), add_special_tokens=False).input_ids
        return len(ids) <= room

    if fits(len(words)):
        return []
    low, high = 0, len(words)  # fits(low), not fits(high)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if fits(middle) else (low, middle)
    return words[low:]


def prompt_notes(tokenizer: Any, prompts: Sequence[str]) -> str:
    """What the page says about long prompts: how many words each loses, and which."""
    notes = []
    for number, prompt in enumerate(prompts, 1):
        lost = dropped_words(tokenizer, prompt)
        if lost:
            shown = " ".join(lost)
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            notes.append(
                f"prompt {number} is longer than the text encoder reads "
                f"({tokenizer.model_max_length} tokens): {len(lost)} word(s) dropped "
                f'("{shown}")'
            )
    return "; ".join(notes)


@dataclass(frozen=True)
class Segmented:
    """A mask made for the page: the mask (or None without a source) and what to tell."""

    subject: SubjectMask | None
    note: str
    seconds: float


def segment(editor: PnPEditor, image: np.ndarray, cfg: EditConfig) -> Segmented:
    """The subject mask of photo ``image`` (``HxWx3 uint8``) from ``cfg.mask``, at its size.

    SAM's fallback (no weights: GrabCut) and an empty mask come back as a note, not an error.
    """
    started = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        subject = editor.segment(image, cfg)
    return Segmented(subject, mask_notes(caught, cfg), time.perf_counter() - started)


def mask_notes(caught: Sequence[warnings.WarningMessage], cfg: EditConfig) -> str:
    """What the page says about warnings caught while making a mask (fallback, empty or
    doubtful mask)."""
    notes = []
    for warning in caught:
        if issubclass(warning.category, SamUnavailableWarning):
            notes.append(
                f"SAM ({cfg.mask.sam_model}) is not available here (offline or not found): "
                "the mask comes from the GrabCut fallback, which is much rougher"
            )
        elif issubclass(warning.category, EmptyMaskWarning):
            notes.append(f"the mask is empty: {warning.message}")
        elif issubclass(warning.category, DoubtfulMaskWarning):
            notes.append(str(warning.message))
    return "; ".join(dict.fromkeys(notes))


def mask_summary(segmented: Segmented) -> str:
    """One line about the mask: how it was made, its coverage, SAM's candidates, the time."""
    subject = segmented.subject
    if subject is None:
        return NO_SUBJECT
    info = subject.provenance()
    parts = [f"mask by **{info['method']}**", f"subject {100 * info['subject_fraction']:.1f}%"]
    if subject.scores:
        scores = ", ".join(f"{s:.2f}" for s in subject.scores)
        parts.append(f"SAM candidate {subject.chosen_index} of scores [{scores}]")
    parts.append(f"{1000 * segmented.seconds:.0f} ms")
    line = " · ".join(parts)
    return f"{line}\n\n⚠ {segmented.note}" if segmented.note else line


@dataclass(frozen=True)
class EditOutcome:
    """One run's result and the files written for it."""

    result: EditResult
    gallery: list[tuple[str, str]]  # (PNG path, caption): source, mask used, one per prompt
    archive: Path  # zip of the PNGs, the mask, the source photo and the record
    record: dict[str, Any]
    seconds: float
    note: str = ""  # about the mask (SAM fallback, empty mask)

    def stats(self) -> str:
        """What the run cost, for the page: inversion reused or not, UNet rows, seconds."""
        t = self.result.timings
        reused = "yes" if self.result.inversion_reused else "no"
        if self.result.inversion_cached:
            reused = "yes (from the disk cache)"
        line = (
            f"inversion reused: **{reused}** · UNet row-evaluations: "
            f"**{self.result.unet_evaluations}** · {self.seconds:.2f} s "
            f"(inversion {t.get('inversion_s', 0.0):.2f} s, sampling "
            f"{t.get('sampling_s', 0.0):.2f} s, decode {t.get('decode_s', 0.0):.2f} s)"
        )
        return f"{line}\n\n⚠ {self.note}" if self.note else line


def run_edit(
    editor: PnPEditor,
    session: Session,
    prompts: Sequence[str],
    cfg: EditConfig,
    out: Path,
    name: str | None = None,
    callback: StepCallback | None = None,
    inversion_callback: StepCallback | None = None,
) -> EditOutcome:
    """Translate the session's photo by each prompt with ``cfg`` (whose ``mask`` names the
    subject, or nothing) and write the CLI's files into ``out``, plus a zip ``{name}.zip``
    (default ``{photo stem}_pnpsam.zip``) of them and the photo whose ``record.json``
    reproduces the run: ``pnpsam edit --config NAME.json``. The photo goes into the zip only
    (no second copy on disk). ``callback``/``inversion_callback``: step callbacks of the
    sampling and the inversion (``PnPEditor.edit``); ``EditStopped`` from them ends the run
    before any file is written."""
    image = session.require_photo()
    photo = Path(session.photo or "photo.png")
    started = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = editor.edit(
            image, list(prompts), cfg, callback=callback, inversion_callback=inversion_callback
        )
    seconds = time.perf_counter() - started
    paths = OutputPaths.of(out, photo.name, prompts)
    subject = None if result.subject is None else result.subject.mask
    encoded = edit_files(paths, dict(enumerate(result.images)), result.source, subject)
    for file_name, data in encoded.items():
        write_bytes(out / file_name, data)
    gallery = [(str(p), prompt) for p, prompt in zip(paths.pngs, prompts, strict=True)]
    source = out / f"source_{photo.stem}.png"
    save_png(result.source, source)
    front = [(str(source), "source (model input)")]
    files = {name_: out / name_ for name_ in encoded}
    if result.subject is not None:
        front.append((str(paths.overlay), f"mask used ({result.subject.method})"))
    # The record names files inside the zip, so it reproduces the run where it is unpacked.
    photo_name = f"{photo.stem}{photo.suffix or '.png'}"
    record = result.record(photo_name, [p.name for p in paths.pngs])
    record["image"] = photo_name
    extra: dict[str, Path | bytes] = {}
    if session.photo is not None and Path(session.photo).is_file():
        extra[photo_name] = Path(session.photo)
    else:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG")
        extra[photo_name] = buffer.getvalue()
    if cfg.mask.mask_file:
        mask_name = f"subject_mask{Path(cfg.mask.mask_file).suffix}"
        extra[mask_name] = Path(cfg.mask.mask_file)
        record["config"]["mask"]["mask_file"] = mask_name
    save_json(record, paths.record)
    files[paths.record.name] = paths.record
    archive = out / f"{name or photo.stem + '_pnpsam'}.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
        for arcname, file in files.items():
            bundle.write(file, arcname)
        for arcname, content in extra.items():
            if isinstance(content, Path):
                bundle.write(content, arcname)
            else:
                bundle.writestr(arcname, content)
    return EditOutcome(result, front + gallery, archive, record, seconds, mask_notes(caught, cfg))


def subject_config(cfg: EditConfig, session: Session, use_subject: bool) -> EditConfig:
    """``cfg`` with the session's subject source (or none) in its mask section."""
    mask = (
        session.mask_config(cfg.mask)
        if use_subject
        else dataclasses.replace(
            cfg.mask, points=[], neg_points=[], box=None, subject=None, mask_file=None
        )
    )
    return dataclasses.replace(cfg, mask=mask)

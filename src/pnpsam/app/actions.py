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
import shutil
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
from pnpsam.config import ConfigError, EditConfig
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
MAX_PROMPTS = 8  # prompts per run: each one is a row of every UNet batch

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


def parse_prompts(text: str) -> list[str]:
    """Target prompts, one per non-empty line."""
    prompts = [line.strip() for line in (text or "").splitlines() if line.strip()]
    if not prompts:
        raise ConfigError("type at least one target prompt (one per line)")
    if len(prompts) > MAX_PROMPTS:
        raise ConfigError(f"{len(prompts)} prompts; at most {MAX_PROMPTS} per run")
    return prompts


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
) -> EditOutcome:
    """Translate the session's photo by each prompt with ``cfg`` (whose ``mask`` names the
    subject, or nothing) and write the CLI's files into ``out``, plus a zip of them and the
    photo whose ``record.json`` reproduces the run: ``pnpsam edit --config NAME.json``."""
    image = session.require_photo()
    photo = Path(session.photo or "photo.png")
    started = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = editor.edit(image, list(prompts), cfg)
    seconds = time.perf_counter() - started
    paths = OutputPaths.of(out, photo.name, prompts)
    subject = None if result.subject is None else result.subject.mask
    encoded = edit_files(paths, dict(enumerate(result.images)), result.source, subject)
    for name, data in encoded.items():
        write_bytes(out / name, data)
    gallery = [(str(p), prompt) for p, prompt in zip(paths.pngs, prompts, strict=True)]
    source = out / f"source_{photo.stem}.png"
    save_png(result.source, source)
    front = [(str(source), "source (model input)")]
    files = [out / name for name in encoded]
    if result.subject is not None:
        front.append((str(paths.overlay), f"mask used ({result.subject.method})"))
    # The record names files inside the zip, so it reproduces the run where it is unpacked.
    photo_copy = out / f"{photo.stem}{photo.suffix or '.png'}"
    if session.photo is not None:
        shutil.copyfile(session.photo, photo_copy)
    else:
        save_png(Image.fromarray(image), photo_copy)
    files.append(photo_copy)
    record = result.record(photo_copy, [p.name for p in paths.pngs])
    record["image"] = photo_copy.name
    if cfg.mask.mask_file:
        mask_copy = out / f"subject_mask{Path(cfg.mask.mask_file).suffix}"
        shutil.copyfile(cfg.mask.mask_file, mask_copy)
        record["config"]["mask"]["mask_file"] = mask_copy.name
        files.append(mask_copy)
    save_json(record, paths.record)
    files.append(paths.record)
    archive = out / f"{photo.stem}_pnpsam.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
        for file in files:
            bundle.write(file, file.name)
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

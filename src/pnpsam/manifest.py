"""The manifest reader and the edit item every dataset yields (the floor under the front ends).

:class:`EditItem` is one source image and its edits; ``pnpsam bench`` reads benchmark datasets
(:mod:`pnpsam.bench.datasets`) and user manifests into it, ``pnpsam batch`` reads manifests into
its jobs. A **manifest** describes a user's own folder: JSONL (one object a line) or CSV (a
header row), paths relative to the manifest's folder. Fields: ``image`` (required);
``target_prompts`` (list; or ``prompts``, as the config file calls them; or ``target_prompt``,
one string); ``source_prompt``; ``id``; ``seed``; ``points`` (``[[x, y], ...]`` pixels) with
``point_labels`` (1 = subject, 0 = not; default all 1); ``box`` (``[x0, y0, x1, y1]`` pixels);
``mask`` (image file, white = subject); ``subject`` (text naming the subject). Other fields go
to ``extra``. In CSV, list cells are JSON (``[[10, 20]]``) and ``target_prompts``/``prompts``
may also be ``|``-separated text.

Every loading error is a :class:`DatasetError` naming the file, the entry (index and id), the
field and the line of the file (1-based; a CSV's header is line 1).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

from pnpsam.config import ConfigError, check_limit, check_text, prompt_list
from pnpsam.errors import InputError


class DatasetError(InputError):
    """A dataset file or entry is malformed; the message names the file, entry and field."""


class EncodedMask(Protocol):
    """A mask kept encoded until used (PIE-Bench's run-length masks: 700 decoded take 180 MB)."""

    def decode(self) -> np.ndarray:
        """``HxW`` bool, True = subject / edited region."""
        ...


@dataclass(frozen=True)
class EditItem:
    """One source image and its edits; masks are ``HxW`` with 1 = subject / edited region."""

    id: str  # unique within its dataset; names output files
    image_path: Path | None  # None: a generated source (PnP's *-Fake-TI2I), see ``extra``
    source_prompt: str  # "" when unknown (PnP inverts real images with an empty prompt)
    target_prompts: tuple[str, ...]  # at least one
    points: tuple[tuple[float, float], ...] | None = None  # (x, y) pixels, SAM clicks
    point_labels: tuple[int, ...] | None = None  # one per point: 1 = subject, 0 = not
    box: tuple[float, float, float, float] | None = None  # x0, y0, x1, y1 pixels
    mask: Path | np.ndarray | EncodedMask | None = None  # file, HxW array, or encoded
    seed: int = 0
    subject: str | None = None  # text naming the subject (manifests), for text selection
    extra: Mapping[str, Any] = field(default_factory=dict)  # format-specific fields, verbatim

    def load_mask(self) -> np.ndarray | None:
        """The mask as ``HxW`` bool (True = subject / edited region), or None."""
        if self.mask is None:
            return None
        if isinstance(self.mask, np.ndarray):
            return self.mask.astype(bool)
        if not isinstance(self.mask, Path):
            return self.mask.decode()
        with Image.open(self.mask) as image:
            return np.asarray(image.convert("L")) >= 128


def entry_error(
    source: Path,
    index: int,
    item_id: object,
    field_name: str,
    problem: str,
    line: int | None = None,
) -> DatasetError:
    where = f"entry {index}" + (f" (id {item_id!r})" if item_id not in (None, "") else "")
    at = f"{source}" if line is None else f"{source}, line {line}"
    return DatasetError(f"{at}: {where}, field {field_name!r}: {problem}")


class EntryReader:
    """Typed field access for one raw entry; every failure names file, line, entry and field."""

    def __init__(
        self,
        source: Path,
        index: int,
        record: Mapping[str, Any],
        item_id: object = None,
        line: int | None = None,
    ):
        self.source, self.index, self.record, self.item_id = source, index, record, item_id
        self.line = line

    def error(self, field_name: str, problem: str) -> DatasetError:
        return entry_error(self.source, self.index, self.item_id, field_name, problem, self.line)

    def text(self, name: str, default: str | None = None) -> str:
        value = self.record.get(name, default)
        if value is None:
            raise self.error(name, "missing")
        if not isinstance(value, str):
            raise self.error(name, f"expected text, got {type(value).__name__} {value!r}")
        try:
            return check_text(name, value)
        except ConfigError as error:
            raise self.error(name, str(error)) from None

    def prompts(self, name: str) -> tuple[str, ...]:
        value = self.record.get(name)
        if isinstance(value, str) or not isinstance(value, Sequence) or not value:
            raise self.error(name, f"expected a non-empty list of prompts, got {value!r}")
        if not all(isinstance(p, str) and p.strip() for p in value):
            raise self.error(name, f"every prompt must be non-empty text, got {value!r}")
        try:
            return tuple(prompt_list(list(value)))  # count and text checked
        except ConfigError as error:
            raise self.error(name, str(error)) from None

    def seed(self, name: str, default: int) -> int:
        value = self.integer(name, default)
        try:
            check_limit("pnp.seed", value)
        except ConfigError as error:
            raise self.error(name, str(error)) from None
        return value

    def integer(self, name: str, default: int) -> int:
        value = self.record.get(name, default)
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(name, f"expected an integer, got {value!r}")
        return value

    def inside(self, folder: Path, name: str, relative: str) -> Path:
        """``folder / relative``, refused unless it resolves (links followed) inside
        ``folder``."""
        path = folder / relative
        root = folder.resolve()
        if not path.resolve().is_relative_to(root):
            raise self.error(name, f"{relative!r} is outside the manifest's folder {str(root)!r}")
        return path

    def existing_file(self, name: str, path: Path) -> Path:
        if not path.is_file():
            raise self.error(name, f"file not found: {path}")
        return path

    def numbers(self, name: str, count: int | None = None) -> tuple[float, ...] | None:
        value = self.record.get(name)
        if value is None:
            return None
        ok = isinstance(value, Sequence) and not isinstance(value, str)
        if not ok or not all(is_number(v) for v in value) or (count and len(value) != count):
            shape = f"{count} numbers" if count else "a list of numbers"
            raise self.error(name, f"expected {shape}, got {value!r}")
        return tuple(float(v) for v in value)

    def points(self) -> tuple[tuple[float, float], ...] | None:
        value = self.record.get("points")
        if value is None:
            return None
        ok = isinstance(value, Sequence) and not isinstance(value, str) and len(value) > 0
        if not ok or not all(
            isinstance(p, Sequence) and len(p) == 2 and all(is_number(c) for c in p) for p in value
        ):
            raise self.error("points", f"expected [[x, y], ...] in pixels, got {value!r}")
        return tuple((float(x), float(y)) for x, y in value)

    def point_labels(
        self, points: tuple[tuple[float, float], ...] | None
    ) -> tuple[int, ...] | None:
        value = self.record.get("point_labels")
        if value is None:
            return None if points is None else (1,) * len(points)
        if points is None:
            raise self.error("point_labels", "given without 'points'")
        if (
            not isinstance(value, Sequence)
            or len(value) != len(points)
            or not all(v in (0, 1) and not isinstance(v, float) for v in value)
        ):
            raise self.error(
                "point_labels", f"expected {len(points)} labels of 0 or 1, got {value!r}"
            )
        return tuple(int(v) for v in value)


def is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_unique_ids(
    items: list[EditItem], source: Path, lines: Sequence[int] | None = None
) -> list[EditItem]:
    seen: dict[str, int] = {}
    for index, item in enumerate(items):
        if item.id in seen:
            line = None if lines is None else lines[index]
            problem = f"duplicate of entry {seen[item.id]}"
            raise entry_error(source, index, item.id, "id", problem, line)
        seen[item.id] = index
    return items


# ---------------------------------------------------------------- manifests


def load_manifest(
    path: str | Path,
    check_files: bool = True,
    seed: int = 0,
    strict: bool = False,
    confine: bool = False,
) -> list[EditItem]:
    """Load a JSONL or CSV manifest (see the module docstring; ``seed`` where an entry has none).

    ``strict``: a field the schema does not know is an error (a misspelt ``promts`` would
    otherwise be dropped into ``extra``). ``confine``: ``image`` and ``mask`` must resolve
    inside the manifest's folder (no absolute paths, no ``..`` out of it, no links leading
    out), so a manifest from someone else reads nothing else of yours.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".csv"):
        raise DatasetError(f"{path}: manifest must end in .jsonl or .csv, got {suffix!r}")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DatasetError(f"{path}: cannot read manifest: {error}") from error
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise DatasetError(
            f"{path}, line {line}: not UTF-8 text (byte {data[error.start]:#04x} at offset "
            f"{error.start}); save the manifest as UTF-8"
        ) from None
    records = _jsonl_records(text, path) if suffix == ".jsonl" else _csv_records(text, path)
    items = [
        _manifest_item(path, index, record, check_files, line, seed, strict, confine)
        for index, line, record in records
    ]
    return _check_unique_ids(items, path, [line for _, line, _ in records])


# (entry index, 1-based line of the file where the entry starts, raw record)
_Records = list[tuple[int, int, dict[str, Any]]]


def _jsonl_records(text: str, path: Path) -> _Records:
    records: _Records = []
    for line_number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        index = len(records)
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            problem = f"line {line_number} is not JSON: {error}"
            raise entry_error(path, index, None, "<line>", problem, line_number) from error
        except RecursionError:  # brackets nested thousands deep: no manifest needs them
            problem = f"line {line_number} nests lists/objects too deeply to be a manifest entry"
            raise entry_error(path, index, None, "<line>", problem, line_number) from None
        if not isinstance(record, dict):
            problem = f"line {line_number} is not a JSON object"
            raise entry_error(path, index, None, "<line>", problem, line_number)
        records.append((index, line_number, record))
    return records


_CSV_JSON_FIELDS = ("points", "point_labels", "box")
# ``prompts`` is what the config file and the CLI call them; both names are accepted
_PROMPT_FIELDS = ("target_prompts", "prompts")


def _csv_records(text: str, path: Path) -> _Records:
    records: _Records = []
    reader = csv.DictReader(text.splitlines())
    _ = reader.fieldnames  # reads the header, so line_num counts its lines
    line = reader.line_num + 1  # where the next row starts
    for index, row in enumerate(reader):
        record: dict[str, Any] = {
            k.strip(): v.strip() for k, v in row.items() if k and v and v.strip()
        }
        for name in _PROMPT_FIELDS:
            targets = record.get(name)
            if isinstance(targets, str) and not targets.startswith("["):
                record[name] = [t.strip() for t in targets.split("|")]
        for name in (*_CSV_JSON_FIELDS, *_PROMPT_FIELDS):
            if isinstance(record.get(name), str):
                record[name] = _json_cell(path, index, record, name, line)
        records.append((index, line, record))
        line = reader.line_num + 1
    return records


def _json_cell(path: Path, index: int, record: dict[str, Any], name: str, line: int) -> Any:
    try:
        return json.loads(record[name])
    except json.JSONDecodeError as error:
        raise entry_error(
            path, index, record.get("id"), name, f"not JSON: {error}", line
        ) from error
    except RecursionError:
        raise entry_error(path, index, record.get("id"), name, "nested too deeply", line) from None


_MANIFEST_FIELDS = {
    "id",
    "image",
    "source_prompt",
    "target_prompts",
    "prompts",
    "target_prompt",
    "points",
    "point_labels",
    "box",
    "mask",
    "seed",
    "subject",
}


def default_item_id(index: int, image: str) -> str:
    """The id of a manifest entry that gives none: its index and the image's stem."""
    return f"{index:04d}_{Path(image).stem}"


def _manifest_item(
    path: Path,
    index: int,
    record: dict[str, Any],
    check_files: bool,
    line: int | None = None,
    seed: int = 0,
    strict: bool = False,
    confine: bool = False,
) -> EditItem:
    folder = path.parent
    read = EntryReader(path, index, record, record.get("id"), line)
    image = read.text("image")
    item_id = str(record.get("id") or default_item_id(index, image))
    read.item_id = item_id
    unknown = sorted(set(record) - _MANIFEST_FIELDS)
    if strict and unknown:
        raise read.error(unknown[0], f"unknown field; known: {', '.join(sorted(_MANIFEST_FIELDS))}")
    image_path = read.inside(folder, "image", image) if confine else folder / image
    if check_files:
        read.existing_file("image", image_path)
    given = [name for name in (*_PROMPT_FIELDS, "target_prompt") if name in record]
    if len(given) > 1:
        raise read.error(given[1], f"give only one of {' / '.join(repr(g) for g in given)}")
    if given and given[0] in _PROMPT_FIELDS:
        targets = read.prompts(given[0])
    elif given:
        targets = (read.text("target_prompt"),)
        if not targets[0].strip():
            raise read.error("target_prompt", "empty")
    else:
        problem = "missing (give 'target_prompts', 'prompts' or 'target_prompt')"
        raise read.error("target_prompts", problem)
    mask = None
    if "mask" in record:
        given_mask = read.text("mask")
        mask = read.inside(folder, "mask", given_mask) if confine else folder / given_mask
        if check_files:
            read.existing_file("mask", mask)
    points = read.points()
    box = read.numbers("box", count=4)
    if box is not None and not (box[0] < box[2] and box[1] < box[3]):
        raise read.error("box", f"expected x0 < x1 and y0 < y1, got {list(box)}")
    subject = None
    if "subject" in record:
        subject = read.text("subject")
        if not subject.strip():
            raise read.error("subject", "empty")
    return EditItem(
        id=item_id,
        image_path=image_path,
        subject=subject,
        source_prompt=read.text("source_prompt", default=""),
        target_prompts=targets,
        points=points,
        point_labels=read.point_labels(points),
        box=None if box is None else (box[0], box[1], box[2], box[3]),
        mask=mask,
        seed=read.seed("seed", seed),
        extra={k: v for k, v in record.items() if k not in _MANIFEST_FIELDS},
    )

"""Benchmark datasets and manifests as one list of :class:`~pnpsam.manifest.EditItem` (reads files).

Three formats:

* **PIE-Bench** (DirectInversion, ICLR 2024): ``mapping_file.json`` plus ``annotation_images/``.
  Each entry has ``image_path``, ``original_prompt``, ``editing_prompt`` (``[...]`` marks the
  words that differ; we strip the brackets, as PIE-Bench's scripts do), ``editing_instruction``,
  ``editing_type_id``, ``blended_word`` and a run-length ``mask`` of the edited region (decoded
  by :func:`decode_pie_rle`, PIE-Bench's own convention).
* **PnP TI2I** (Wild-TI2I, ImageNetR-TI2I, ImageNetR-Fake-TI2I): a YAML *list* of entries with
  ``target_prompts`` (list), and either ``init_img`` (a real image; path as written in the
  benchmark, e.g. ``/ImageNetR-TI2I/cat/sketch_20.jpg`` relative to the benchmark root) with an
  optional ``source_prompt``, or — for the *-Fake-* sets, whose images PnP generates —
  ``source_prompt``, ``seed``, ``scale`` and ``ddim_steps`` and no image. The PnP repository
  itself ships only its experiment configs (``configs/pnp/*.yaml``); this layout is the one the
  released benchmark files use, as read by public loaders of them.
* **Manifest** for a user's own folder: JSONL or CSV, read by :func:`pnpsam.manifest.load_manifest`
  (the fields are listed there).

Every loading error is a :class:`DatasetError` naming the file, the entry (index and id) and the
field; for manifests also the line of the file (1-based; a CSV's header is line 1).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pnpsam.config import ConfigError, load_yaml
from pnpsam.manifest import (
    DatasetError,
    EditItem,
    EntryReader,
    entry_error,
    is_number,
    load_manifest,
)

PIE_MASK_SHAPE = (512, 512)  # PIE-Bench annotates every image at 512 x 512
PIE_SEED = 1234  # the seed PIE-Bench's run_editing_*.py scripts set before every edit


@dataclass(frozen=True)
class RleMask:
    """A PIE-Bench run-length mask, decoded on demand (700 decoded masks would take 180 MB)."""

    pairs: tuple[int, ...]  # flat (start, length) pairs over the row-major flattened image
    shape: tuple[int, int] = PIE_MASK_SHAPE  # (H, W)
    mark_border: bool = True  # PIE-Bench sets the 1-pixel frame to 1 ("annotation errors")

    def decode(self) -> np.ndarray:
        """``HxW`` bool, True = edited region."""
        return decode_pie_rle(self.pairs, self.shape, self.mark_border)


def decode_pie_rle(
    pairs: Sequence[int], shape: tuple[int, int] = PIE_MASK_SHAPE, mark_border: bool = True
) -> np.ndarray:
    """Decode PIE-Bench's mask RLE to ``HxW`` bool (True = edited region).

    Convention of DirectInversion's ``mask_decode``: ``pairs`` is ``[start0, length0, start1,
    length1, ...]``; each run sets ``length`` pixels from flat index ``start`` of the row-major
    flattened ``H*W`` image, clipped at the end of the image; then (``mark_border``) the first and
    last row and column are set to True, as their decoder does to absorb annotation errors.
    """
    height, width = shape
    if len(pairs) % 2:
        raise DatasetError(f"RLE needs (start, length) pairs, got an odd count {len(pairs)}")
    runs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    if (runs < 0).any():
        raise DatasetError(f"RLE starts and lengths must be >= 0, got {runs[(runs < 0).any(1)][0]}")
    flat = np.zeros(height * width, dtype=bool)
    for start, length in runs:
        flat[start : start + length] = True  # slicing clips at the end like their min()
    mask = flat.reshape(height, width)
    if mark_border:
        mask[[0, -1], :] = True
        mask[:, [0, -1]] = True
    return mask


# ---------------------------------------------------------------- PIE-Bench


def load_pie_bench(
    path: str | Path,
    images_dir: str | Path | None = None,
    edit_types: Sequence[str] | None = None,
    seed: int = PIE_SEED,
    check_files: bool = True,
) -> list[EditItem]:
    """Load PIE-Bench from its data folder (or its ``mapping_file.json``).

    ``images_dir`` defaults to ``annotation_images/`` beside the mapping file; ``edit_types``
    keeps only those ``editing_type_id`` values ("0" random ... "9" style). Masks stay RLE
    (:class:`RleMask`) until :meth:`EditItem.load_mask`.
    """
    path = Path(path)
    mapping_file = path / "mapping_file.json" if path.is_dir() else path
    images = (
        Path(images_dir) if images_dir is not None else mapping_file.parent / "annotation_images"
    )
    try:
        mapping = json.loads(mapping_file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise DatasetError(
            f"{mapping_file}: cannot read PIE-Bench mapping file: {error}"
        ) from error
    if not isinstance(mapping, dict):
        raise DatasetError(f"{mapping_file}: expected a JSON object of entries keyed by id")
    wanted = None if edit_types is None else {str(t) for t in edit_types}
    items = []
    for index, (key, record) in enumerate(mapping.items()):
        if not isinstance(record, dict):
            raise entry_error(mapping_file, index, key, "<entry>", "expected an object")
        read = EntryReader(mapping_file, index, record, key)
        edit_type = str(record.get("editing_type_id", ""))
        if wanted is not None and edit_type not in wanted:
            continue
        relative = read.text("image_path")
        image_path = images / relative
        if check_files:
            read.existing_file("image_path", image_path)
        pairs = record.get("mask")
        if not isinstance(pairs, list) or not all(is_number(v) and v >= 0 for v in pairs):
            raise read.error("mask", "expected a list of non-negative run-length integers")
        if len(pairs) % 2:
            raise read.error("mask", f"expected (start, length) pairs, got {len(pairs)} numbers")
        original, editing = read.text("original_prompt"), read.text("editing_prompt")
        items.append(
            EditItem(
                id=str(key),
                image_path=image_path,
                source_prompt=_strip_brackets(original),
                target_prompts=(_strip_brackets(editing),),
                mask=RleMask(tuple(int(v) for v in pairs)),
                seed=seed,
                extra={
                    "editing_type_id": edit_type,
                    "editing_instruction": record.get("editing_instruction", ""),
                    "blended_word": record.get("blended_word", ""),
                    "original_prompt_marked": original,
                    "editing_prompt_marked": editing,
                },
            )
        )
    return items


def _strip_brackets(prompt: str) -> str:
    return prompt.replace("[", "").replace("]", "")


# ---------------------------------------------------------------- PnP TI2I


def load_pnp_ti2i(
    yaml_path: str | Path,
    images_root: str | Path | None = None,
    seed: int = 0,
    check_files: bool = True,
) -> list[EditItem]:
    """Load one of PnP's TI2I benchmark YAML files (Wild-, ImageNetR-, ImageNetR-Fake-TI2I).

    ``init_img`` is looked up, in order, under ``images_root`` (default: the YAML's folder),
    its parent, and by file name in ``<root>/data`` and ``<root>``. Entries without
    ``init_img`` are generated sources: ``image_path`` is None and ``extra`` holds their
    ``scale`` / ``ddim_steps``. ``seed`` is used where an entry has none.
    """
    yaml_path = Path(yaml_path)
    root = Path(images_root) if images_root is not None else yaml_path.parent
    try:
        entries = load_yaml(yaml_path.read_text(encoding="utf-8"), f"TI2I YAML {yaml_path}")
    except (OSError, UnicodeDecodeError, ConfigError) as error:
        raise DatasetError(f"{yaml_path}: cannot read TI2I YAML: {error}") from error
    if not isinstance(entries, list):
        raise DatasetError(
            f"{yaml_path}: expected a YAML list of entries, got {type(entries).__name__}"
        )
    items = []
    for index, record in enumerate(entries):
        if not isinstance(record, dict):
            raise entry_error(yaml_path, index, None, "<entry>", "expected a mapping")
        read = EntryReader(yaml_path, index, record)
        targets = read.prompts("target_prompts")
        source_prompt = read.text("source_prompt", default="")
        init_img = record.get("init_img")
        image_path = None
        if init_img is not None:
            init = read.text("init_img")
            image_path = _find_ti2i_image(init, root)
            if image_path is None:
                if check_files:
                    raise read.error("init_img", f"file not found under {root}: {init}")
                image_path = root / init.lstrip("/")
            name = Path(init).stem
        elif not source_prompt:
            raise read.error("init_img", "missing, and no 'source_prompt' to generate from")
        else:
            name = "_".join(source_prompt.split())[:40]
        known = {"init_img", "source_prompt", "target_prompts", "seed"}
        items.append(
            EditItem(
                id=f"{index:03d}_{name}",
                image_path=image_path,
                source_prompt=source_prompt,
                target_prompts=targets,
                seed=read.seed("seed", seed),
                extra={k: v for k, v in record.items() if k not in known},
            )
        )
    return items


def _find_ti2i_image(init_img: str, root: Path) -> Path | None:
    relative = Path(init_img.lstrip("/"))
    candidates = [root / relative, root.parent / relative, root / "data" / relative.name]
    candidates.append(root / relative.name)
    return next((c for c in candidates if c.is_file()), None)


# ---------------------------------------------------------------- dispatch


def load_dataset(path: str | Path, check_files: bool = True) -> list[EditItem]:
    """Load any supported dataset by its path: a PIE-Bench folder or ``mapping_file.json``,
    a TI2I ``.yaml``/``.yml``, or a ``.jsonl``/``.csv`` manifest."""
    path = Path(path)
    if path.is_dir():
        if (path / "mapping_file.json").is_file():
            return load_pie_bench(path, check_files=check_files)
        raise DatasetError(f"{path}: a folder must hold PIE-Bench's mapping_file.json")
    if path.name.endswith(".json"):
        return load_pie_bench(path, check_files=check_files)
    if path.suffix.lower() in (".yaml", ".yml"):
        return load_pnp_ti2i(path, check_files=check_files)
    return load_manifest(path, check_files=check_files)

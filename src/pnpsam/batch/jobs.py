"""Per-photo jobs of ``pnpsam batch``: from a folder of photos or from a manifest.

A folder gives one job per image file directly in it (sorted by name), each with the run's
prompts and subject options. A manifest (JSONL or CSV) is the same schema as ``bench``
manifests (:func:`pnpsam.manifest.load_manifest`): ``image``, ``prompts`` (or
``target_prompts``), optional ``points``/``point_labels``/``box``/``mask``/``subject``/``seed``/
``id``; its errors name the file, the line and the field. Missing image or mask files are not
manifest errors: that photo fails at run time, is recorded, and the run goes on.

Outputs are named as ``pnpsam edit`` names them, with the job's ``name`` as the image stem:
the manifest's ``id`` when given, else the image file's stem; a name already taken in the run
gets ``-2``, ``-3``, ... (in input order, so a re-run names every photo the same). Names are
made safe by :func:`pnpsam.paths.safe_name` (an id like ``../x`` never leaves ``--out``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pnpsam.config import ConfigError, EditConfig, fingerprint, prompt_list
from pnpsam.manifest import default_item_id, load_manifest
from pnpsam.outputs import OutputPaths, sha256_file
from pnpsam.paths import safe_name

IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".ppm"}
)
MANIFEST_SUFFIXES = (".jsonl", ".csv")


class BatchInputError(ConfigError):
    """The batch input (folder, manifest, prompts) is unusable; the message names it."""


@dataclass(frozen=True)
class PhotoJob:
    """One photo of the run and what to do with it (JSON-ready: it travels to Ray workers).

    ``image`` is absolute; ``points`` etc. are in the image's pixels and override the run's
    subject options when any is given. ``seed`` None keeps the run's ``--seed``.
    """

    name: str  # output stem, unique in the run
    image: str
    prompts: tuple[str, ...]
    seed: int | None = None
    points: tuple[tuple[float, float], ...] | None = None
    point_labels: tuple[int, ...] | None = None
    box: tuple[float, float, float, float] | None = None
    mask: str | None = None  # mask image file (white = subject), absolute
    subject: str | None = None  # text naming the subject

    @property
    def has_subject(self) -> bool:
        return bool(self.points or self.box or self.mask or self.subject)

    def config(self, base: EditConfig) -> EditConfig:
        """``base`` with this photo's seed and subject; the config its record stores."""
        cfg = EditConfig.from_dict(base.to_dict())
        if self.seed is not None:
            cfg.pnp.seed = self.seed
        if self.has_subject:
            # the photo's own subject replaces the run's (one source per photo, see MaskConfig)
            pairs = list(zip(self.points or (), self.point_labels or (), strict=True))
            cfg.mask = dataclasses.replace(
                cfg.mask,
                points=[p for p, label in pairs if label == 1],
                neg_points=[p for p, label in pairs if label == 0],
                box=self.box,
                mask_file=self.mask,
                subject=self.subject,
            )
        return cfg

    @property
    def paths(self) -> OutputPaths:
        """This photo's output names, as ``pnpsam edit`` names them for stem ``name``
        (relative to the output folder)."""
        # OutputPaths takes an image path and uses its stem; the name is already a safe stem
        return OutputPaths.of(Path(), f"{self.name}.png", self.prompts)

    def settings(self, base: EditConfig) -> str:
        """Digest of everything that decides this photo's outputs: the image's bytes (as
        ``pnpsam edit`` keys them: a photo replaced under the same name is redone), the
        prompts and the config. An unreadable image digests as None (it fails, and is retried
        once it can be read).

        A finished photo counts as done on a re-run only under the same digest.
        """
        config = self.config(base).to_dict()
        model = Path(config["model"]["model"])
        if model.exists():  # a local folder or file: the same weights however it is spelled
            config["model"]["model"] = str(model.resolve())
        image = sha256_file(self.image)
        return fingerprint({"image_sha256": image, "prompts": self.prompts, "config": config}, 16)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PhotoJob:
        def tuples(value: Any) -> Any:
            return None if value is None else tuple(tuple(v) for v in value)

        return cls(
            name=data["name"],
            image=data["image"],
            prompts=tuple(data["prompts"]),
            seed=data.get("seed"),
            points=tuples(data.get("points")),
            point_labels=None if data.get("point_labels") is None else tuple(data["point_labels"]),
            box=None if data.get("box") is None else tuple(data["box"]),
            mask=data.get("mask"),
            subject=data.get("subject"),
        )


def _unique(names: Sequence[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for name in names:
        unique, k = name, 1
        while unique.lower() in seen:  # case-insensitive file systems would merge them
            k += 1
            unique = f"{name}-{k}"
        seen.add(unique.lower())
        out.append(unique)
    return out


def _check_prompts(prompts: Sequence[str] | None) -> tuple[str, ...]:
    if not prompts:
        raise BatchInputError("no target prompt: give at least one --prompt")
    if any(not str(p).strip() for p in prompts):
        raise BatchInputError(f"empty target prompt in {list(prompts)!r}")
    return tuple(prompt_list([str(p) for p in prompts]))  # count and text checked


def jobs_from_folder(folder: str | Path, prompts: Sequence[str] | None) -> list[PhotoJob]:
    """One job per image file directly in ``folder`` (by suffix, sorted), all with ``prompts``."""
    folder = Path(folder)
    targets = _check_prompts(prompts)
    files = sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )
    if not files:
        suffixes = ", ".join(sorted(IMAGE_SUFFIXES))
        raise BatchInputError(f"folder {str(folder)!r} holds no image files ({suffixes})")
    names = _unique([safe_name(p.stem) for p in files])
    return [
        PhotoJob(name, str(path.resolve()), targets)
        for name, path in zip(names, files, strict=True)
    ]


def jobs_from_manifest(
    manifest: str | Path, seed: int = 0, confine: bool = False
) -> list[PhotoJob]:
    """Jobs from a JSONL/CSV manifest (prompts per line; ``seed`` where a line has none).

    Raises :class:`DatasetError` naming the file, line and field of a malformed entry or of a
    field the schema does not know. ``confine``: image and mask paths must stay inside the
    manifest's folder.
    """
    manifest = Path(manifest)
    items = load_manifest(manifest, check_files=False, seed=seed, strict=True, confine=confine)
    stems = []
    for index, item in enumerate(items):
        image = Path(str(item.image_path))
        given_id = item.id != default_item_id(index, str(image))
        stems.append(safe_name(item.id if given_id else image.stem))
    jobs = []
    for name, item in zip(_unique(stems), items, strict=True):
        jobs.append(
            PhotoJob(
                name=name,
                image=str(Path(str(item.image_path)).resolve()),
                prompts=item.target_prompts,
                seed=item.seed,
                points=item.points,
                point_labels=item.point_labels,
                box=item.box,
                mask=None if item.mask is None else str(Path(str(item.mask)).resolve()),
                subject=item.subject,
            )
        )
    return jobs


def load_jobs(
    source: str | Path, prompts: Sequence[str] | None, seed: int = 0, confine: bool = False
) -> list[PhotoJob]:
    """Jobs from a folder of photos or a ``.jsonl``/``.csv`` manifest (``seed``: the run's;
    ``confine``: a manifest's paths must stay in its folder)."""
    path = Path(source)
    if path.is_dir():
        return jobs_from_folder(path, prompts)
    if not path.is_file():
        raise BatchInputError(f"input {str(source)!r} is neither a folder nor a manifest file")
    if path.suffix.lower() not in MANIFEST_SUFFIXES:
        raise BatchInputError(
            f"input {str(source)!r}: give a folder of photos or a .jsonl/.csv manifest"
        )
    if prompts:
        raise BatchInputError(
            f"--prompt is for a folder of photos; manifest {str(source)!r} gives each photo's "
            "prompts (field 'prompts')"
        )
    return jobs_from_manifest(path, seed, confine)

"""Named editing methods (the benchmark compares them, the web app offers them) and their specs.

Built-in methods — each is a set of :class:`~pnpsam.config.EditConfig` values run through
:class:`~pnpsam.api.PnPEditor` (or, for ``sdedit``, diffusers' img2img on the same weights):

* ``subject`` — the editor's subject-aware default (what ``pnpsam edit`` does when a subject is
  given: ``weaken.background`` auto = removed before inversion, injection on the subject only;
  ``pnp.background_intent`` auto = the background kept instead when a ``source_prompt`` is given
  and the targets keep its background words).
* ``pnp`` — plain Plug-and-Play; the item's subject mask is not given to the editor.
* ``pnp-masked`` — the item's mask is given and features are injected only at subject
  positions (``pnp.mask_injection``), the background kept before inversion and then free
  (``background_intent`` follow); add
  ``background_noise=0.3`` etc. to test fresh noise in the start latent's background.
* ``scheme1`` — the report's scheme 1: start from seeded Gaussian noise (``pnp.start=noise``).
* ``scheme2`` — the report's scheme 2: blend source and generated features
  (``pnp.injection=blend``, ``blend_alpha`` 0.5).
* ``scheme3`` — the report's scheme 3 alone: dim the background before inversion
  (``weaken.background=dim``, ``dim_factor`` 0.5), restore brightness after (``restore``
  ``global``, the report's x 1/factor), injection everywhere (``mask_injection`` off).
* ``sdedit`` — diffusers' ``StableDiffusionImg2ImgPipeline`` at ``strength`` (default 0.6),
  sharing the editor's weights: the outside baseline.

Spec parameters override any config field: ``section.field=value`` (``weaken.dim_factor=0.3``,
``inversion.steps=100``), or a bare field name, looked up in the sections in the order of
``SECTIONS`` (so ``steps`` is ``pnp.steps``). Values are YAML (``attention_blocks=[4,5]``).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import yaml
from PIL import Image

from pnpsam.config import ConfigError, EditConfig, load_yaml
from pnpsam.errors import InputError
from pnpsam.masks.config import MaskConfig

if TYPE_CHECKING:  # the API needs torch; the CLI lists the methods without it
    from pnpsam.api import PnPEditor

# Config sections a spec may set, in the order bare field names are looked up.
SECTIONS = ("pnp", "weaken", "mask", "inversion", "preprocess")


class MethodSpecError(InputError):
    """A method spec names an unknown method or parameter, or a bad value."""


@dataclass
class MethodOutput:
    """What one method produced for one source image.

    ``subject`` is the subject mask the method used (``HxW float32`` in [0, 1] at the model input
    size, 1 = subject), or None when it used none: every method without the mask, ``sdedit``, and
    a mask-using method whose mask came out (almost) empty and so ran plain PnP.
    """

    source: Image.Image  # the source at the model's input size (what metrics compare against)
    images: list[Image.Image]  # one per target prompt, same size as ``source``
    details: dict[str, Any] = field(default_factory=dict)  # JSON-ready extras for the row
    subject: np.ndarray | None = None


@dataclass(frozen=True)
class MethodInfo:
    """A built-in method: the config values it sets and whether it needs the subject mask."""

    summary: str
    settings: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # section -> fields
    uses_mask: bool = False  # the item's subject mask goes to the editor (and is required)
    own: Mapping[str, Any] = field(default_factory=dict)  # parameters outside EditConfig
    kind: Literal["pnp", "sdedit"] = "pnp"


METHODS: dict[str, MethodInfo] = {
    "subject": MethodInfo(
        "the subject-aware default (editor defaults with the mask)", uses_mask=True
    ),
    "pnp": MethodInfo("plain PnP"),
    "pnp-masked": MethodInfo(
        "PnP injecting only on the subject mask",
        {
            # background_weight pinned: a model's settings file may set it for its own
            # subject-aware default (toy v2: 1), which must not turn this method into PnP
            "pnp": {"mask_injection": True, "background_intent": "follow", "background_weight": 0},
            "weaken": {"background": "keep"},
        },
        uses_mask=True,
    ),
    "scheme1": MethodInfo("start from seeded noise", {"pnp": {"start": "noise"}}),
    "scheme2": MethodInfo(
        "blend the features", {"pnp": {"injection": "blend", "blend_alpha": 0.5}}
    ),
    "scheme3": MethodInfo(
        "dim the background before inversion, restore brightness after",
        {
            "pnp": {"mask_injection": False},
            "weaken": {"background": "dim", "dim_factor": 0.5, "restore": "global"},
        },
        uses_mask=True,
    ),
    "sdedit": MethodInfo("diffusers img2img", own={"strength": 0.6}, kind="sdedit"),
}


def _section_fields() -> dict[str, set[str]]:
    config = EditConfig()
    return {name: {f.name for f in dataclasses.fields(getattr(config, name))} for name in SECTIONS}


@dataclass(frozen=True)
class MethodSpec:
    """A parsed ``NAME[:key=value...]``; ``label`` is the spec as written (the table's row)."""

    name: str
    settings: Mapping[str, Mapping[str, Any]]  # section -> field -> value, from the spec
    own: Mapping[str, Any]  # the method's own parameters, from the spec
    label: str

    @property
    def info(self) -> MethodInfo:
        return METHODS[self.name]

    @property
    def slug(self) -> str:
        """File-system-safe version of the label (output folder name)."""
        return re.sub(r"[^A-Za-z0-9_.=-]+", "_", self.label.replace(":", "__"))

    def method_params(self) -> dict[str, Any]:
        """The method's own parameters: its defaults updated by the spec."""
        return {**self.info.own, **self.own}

    def edit_config(self, base: EditConfig) -> EditConfig:
        """``base`` with the method's settings, then the spec's, applied and validated."""
        data = base.to_dict()
        for settings in (self.info.settings, self.settings):
            for section, values in settings.items():
                data[section].update(values)
        return EditConfig.from_dict(data).validate()


def parse_method(text: str) -> MethodSpec:
    """``"pnp:pnp_f_t=0.6:weaken.dim_factor=0.3"`` -> :class:`MethodSpec` (values are YAML)."""
    name, *assignments = text.strip().split(":")
    if name not in METHODS:
        raise MethodSpecError(f"unknown method {name!r} in {text!r}; choose from {sorted(METHODS)}")
    fields = _section_fields()
    settings: dict[str, dict[str, Any]] = {}
    own: dict[str, Any] = {}
    for assignment in assignments:
        key, sep, raw = assignment.partition("=")
        key = key.strip()
        if not sep or not key:
            raise MethodSpecError(f"method {text!r}: expected key=value, got {assignment!r}")
        try:
            value = load_yaml(raw, f"method {text!r} value {raw!r}")
        except ConfigError as error:
            raise MethodSpecError(f"method {text!r}: bad value for {key!r}: {raw!r}") from error
        section, dot, field_name = key.rpartition(".")
        if key in METHODS[name].own:
            own[key] = value
        elif dot and section in fields and field_name in fields[section]:
            settings.setdefault(section, {})[field_name] = value
        elif not dot and any(key in names for names in fields.values()):
            section = next(s for s in SECTIONS if key in fields[s])
            settings.setdefault(section, {})[key] = value
        else:
            raise MethodSpecError(
                f"method {text!r}: unknown parameter {key!r}; use a field of "
                f"{', '.join(SECTIONS)} (or section.field), or one of {sorted(METHODS[name].own)}"
            )
    return MethodSpec(name, settings, own, text.strip())


def split_method_list(text: str) -> list[str]:
    """Split ``"pnp,sdedit:strength=0.5,pnp:attention_blocks=[4,5]"`` at top-level commas."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for char in text:
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def parse_methods(text: str | Sequence[str]) -> list[MethodSpec]:
    """Parse a comma-separated list (or a list) of method specs; labels must be unique."""
    texts = split_method_list(text) if isinstance(text, str) else list(text)
    if not texts:
        raise MethodSpecError("no methods given")
    specs = [parse_method(t) for t in texts]
    labels = [s.label for s in specs]
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise MethodSpecError(f"methods listed twice: {duplicates}")
    return specs


def sweep_methods(specs: Sequence[MethodSpec], key: str, values: Sequence[Any]) -> list[MethodSpec]:
    """Each spec once per ``value`` of ``key`` (an ablation sweep), in spec-major order."""
    swept = []
    for spec in specs:
        for value in values:
            shown = yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...")
            swept.append(parse_method(f"{spec.label}:{key}={shown.strip()}"))
    return swept


def item_mask_config(base: MaskConfig, points, labels, box) -> MaskConfig:
    """``base`` with an item's SAM prompts ((x, y) points, 1/0 labels, XYXY box) filled in."""
    pairs = list(zip(points or (), labels or (), strict=True))
    return dataclasses.replace(
        base,
        points=[tuple(p) for p, label in pairs if label == 1],
        neg_points=[tuple(p) for p, label in pairs if label == 0],
        box=tuple(box) if box is not None else None,
    )


def run_method(
    spec: MethodSpec,
    editor: PnPEditor,
    image: Image.Image,
    mask: np.ndarray | None,
    prompts: Sequence[str],
    config: EditConfig,
) -> MethodOutput:
    """Run one method on one source image (``mask``: HxW at the image's size, or None).

    ``config`` is the method's resolved config; for mask-using methods its ``mask`` section
    may carry the item's clicks. Other methods get neither the mask nor the clicks. A method
    that uses the mask returns it in :attr:`MethodOutput.subject`.
    """
    info = spec.info
    if not info.uses_mask:
        config = dataclasses.replace(config, mask=MaskConfig())
        mask = None
    elif mask is None and not config.mask.has_source:
        raise MethodSpecError(
            f"method {spec.name!r} needs a subject mask (give 'mask' or points/box)"
        )
    if info.kind == "sdedit":
        return _run_sdedit(editor, image, prompts, config, spec.method_params())
    result = editor.edit(image, list(prompts), config, mask=mask)
    details: dict[str, Any] = {"timings": result.timings}
    subject = None
    if result.subject is not None:
        details["mask_method"] = result.subject.method
        subject = result.subject.mask if result.subject.usable else None
    return MethodOutput(result.source, result.images, details, subject)


def _run_sdedit(
    editor: PnPEditor,
    image: Image.Image,
    prompts: Sequence[str],
    config: EditConfig,
    params: Mapping[str, Any],
) -> MethodOutput:
    strength = float(params["strength"])
    result = editor.sdedit(image, prompts, config, strength)
    return MethodOutput(result.source, result.images, {"strength": strength})

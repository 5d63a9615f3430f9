"""The toy photos shipped in ``pnpsam/assets/photos``: the README's offline examples edit them.

Each is a 64 x 64 toy-world render (:func:`pnpsam.toyworld.world.render_scene`) with its exact
subject mask in ``masks/`` (white = subject) and a manifest ``photos.jsonl`` in the ``bench`` /
``batch`` schema (image, prompts, mask). Regenerate with ``python -m pnpsam.toyworld.photos``;
the test suite checks that the shipped files equal the renders.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from pnpsam.config import TOY_MODEL_DIR
from pnpsam.toyworld.world import SceneSpec, render_scene

TOY_PHOTOS_DIR = TOY_MODEL_DIR.parent / "photos"
MANIFEST = "photos.jsonl"
# file stem -> (scene, render seed, target prompts for the manifest)
TOY_PHOTOS: dict[str, tuple[SceneSpec, int, tuple[str, ...]]] = {
    "red-circle-on-grass": (
        SceneSpec("red", "circle", "grass"),
        1,
        ("a blue circle on snow",),
    ),
    "blue-square-on-snow": (
        SceneSpec("blue", "square", "snow", center=(0.45, 0.55)),
        2,
        ("a red square on desert", "a pink square on night"),
    ),
    "yellow-triangle-on-sea": (
        SceneSpec("yellow", "triangle", "sea", center=(0.55, 0.5)),
        3,
        ("a purple triangle on grass",),
    ),
}


def write_toy_photos(folder: Path = TOY_PHOTOS_DIR) -> list[Path]:
    """Render every toy photo, its mask and the manifest into ``folder``; returns the files."""
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    written, lines = [], []
    for stem, (spec, seed, prompts) in TOY_PHOTOS.items():
        scene = render_scene(spec, seed)
        photo, mask = folder / f"{stem}.png", folder / "masks" / f"{stem}.png"
        Image.fromarray(scene.image).save(photo)
        Image.fromarray(scene.subject_mask.astype(np.uint8) * 255).save(mask)
        written += [photo, mask]
        entry = {"id": stem, "image": photo.name, "prompts": list(prompts)}
        lines.append(json.dumps({**entry, "mask": f"masks/{mask.name}"}))
    (folder / MANIFEST).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return [*written, folder / MANIFEST]


if __name__ == "__main__":
    for path in write_toy_photos(Path(sys.argv[1]) if len(sys.argv) > 1 else TOY_PHOTOS_DIR):
        print(path)

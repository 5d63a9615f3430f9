"""Shared fixtures: a tiny SD 1.5-layout pipeline saved to disk, loaded by the real loader."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pnpsam.api import PnPEditor
from pnpsam.config import EditConfig, ModelConfig
from pnpsam.models.tiny import tiny_sd15_pipeline

# Tiny models gain nothing from intra-op threads, and on a busy 2-core machine two threads
# made them 15-60x slower (measured); one thread keeps the suite fast and steady.
torch.set_num_threads(1)
# ...and so does every `pnpsam` command a test runs, in this process or a child: the CLI's
# thread policy (pnpsam.threads) would otherwise pick the free cores and raise the whole test
# process's thread count after the first in-process command (the suite then ran 3x slower).
os.environ.setdefault("PNPSAM_THREADS", "1")

CHROMIUM_INSTALL = "apt-get update && apt-get install -y chromium chromium-driver"


def pytest_sessionstart(session: pytest.Session) -> None:
    """Under CI the browser tests must run: no Chromium is a loud failure, never a skip."""
    if os.environ.get("CI") == "true" and shutil.which("chromium") is None:
        pytest.exit(f"CI=true but Chromium is missing; install it: {CHROMIUM_INSTALL}", 3)


@pytest.fixture(scope="session")
def chromium() -> str:
    """Path of the system Chromium for the browser tests; missing = a failure, not a skip."""
    found = shutil.which("chromium")
    if found is None:
        pytest.fail(f"the browser tests need Chromium; install it: {CHROMIUM_INSTALL}")
    return found


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny SD 1.5-layout diffusers folder (random weights, conv_out x 0.1)."""
    folder = tmp_path_factory.mktemp("models") / "tiny-sd15"
    tiny_sd15_pipeline(seed=0).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def editor(tiny_model_dir: Path) -> PnPEditor:
    editor = PnPEditor.from_pretrained(ModelConfig(model=str(tiny_model_dir), device="cpu"))
    editor.set_progress_bar_config(disable=True)
    return editor


@pytest.fixture()
def small_config(editor: PnPEditor) -> EditConfig:
    """32 px images (16x16 latents) and 10 steps: fast, and thresholds give 8 / 5 steps."""
    cfg = editor.default_config()
    cfg.preprocess.size = 32
    cfg.inversion.steps = 10
    cfg.pnp.steps = 10
    return cfg


@pytest.fixture(scope="session")
def photo() -> Image.Image:
    """A real photo shipped with scikit-image (astronaut, 512x512 RGB)."""
    from skimage import data

    return Image.fromarray(np.asarray(data.astronaut()))

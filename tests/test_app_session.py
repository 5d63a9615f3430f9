"""The app's per-session rules without a browser: clicks to photo pixels, boxes, sources."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pnpsam.api import PnPEditor
from pnpsam.app.actions import (
    ADVANCED,
    mask_summary,
    method_values,
    parse_prompts,
    parse_value,
    segment,
    subject_config,
    with_values,
)
from pnpsam.app.session import Session, display_scale
from pnpsam.config import ConfigError, EditConfig


def test_display_scale_enlarges_small_and_reduces_large_photos() -> None:
    assert display_scale(64, 64) == 8.0  # 512 px on screen: a click lands within 1/8 px
    assert display_scale(640, 480) == 1.0
    assert display_scale(4096, 2048) == 0.25


def test_clicks_become_photo_pixels_and_two_clicks_make_a_box() -> None:
    session = Session.with_photo("toy.png", Image.new("RGB", (64, 48)))
    session = session.click(80.0, 40.0, "subject")  # shown 8x
    assert session.points == [(10.0, 5.0)]
    session = session.click(8000.0, -5.0, "not subject")  # off the photo: kept inside it
    assert session.neg_points == [(63.0, 0.0)]
    half = session.click(160.0, 160.0, "box")
    assert half.box is None and half.corner == (20.0, 20.0)
    full = half.click(80.0, 320.0, "box")
    assert full.box == (10.0, 20.0, 20.0, 40.0) and full.corner is None
    shown = full.display()
    assert shown is not None and shown.shape == (384, 512, 3)


def test_one_subject_source_at_a_time() -> None:
    session = Session.with_photo("toy.png", Image.new("RGB", (64, 64))).click(8, 8, "subject")
    by_text = session.with_subject_text(" the cat ")
    assert by_text.subject == "the cat" and by_text.points == []
    by_file = by_text.with_mask_file("mask.png")
    assert by_file.subject is None and by_file.mask_config(EditConfig().mask).mask_file
    assert by_file.click(8, 8, "subject").mask_file is None
    with pytest.raises(ValueError, match="upload a photo"):
        Session().click(1, 1, "subject")


def test_page_values_parse_like_the_cli_flags() -> None:
    steps = next(o for o in ADVANCED if o.flag == "--steps")
    blocks = next(o for o in ADVANCED if o.flag == "--attention-blocks")
    assert parse_value(blocks, "2-4,7") == (2, 3, 4, 7)
    with pytest.raises(ConfigError, match="--steps"):
        parse_value(steps, "ten")
    cfg = with_values(EditConfig(), [steps, blocks], ["12", "5"])
    assert cfg.pnp.steps == 12 and cfg.pnp.attention_blocks == (5,)
    shown = dict(
        zip([o.flag for o in ADVANCED], method_values("scheme3", EditConfig()), strict=True)
    )
    assert shown["--background"] == "dim" and shown["--no-mask-injection"] is False
    assert parse_prompts("a cat\n\n a dog ") == ["a cat", "a dog"]
    with pytest.raises(ConfigError, match="prompt"):
        parse_prompts(" \n")


def test_app_command_refuses_a_bad_port_before_loading_anything(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from pnpsam.cli.main import main

    assert main(["app", "--model", "toy", "--port", "70000"]) == 2
    assert "--port must be in 1..65535; got 70000" in capsys.readouterr().err
    assert main(["app", "--model", "toy", "--max-size", "0"]) == 2
    assert "--max-size must be >= 1; got 0" in capsys.readouterr().err
    assert main(["app", "--model", "toy", "--keep-files-minutes", "0"]) == 2
    assert "--keep-files-minutes must be > 0" in capsys.readouterr().err


def test_mask_file_source_gives_the_files_mask_at_the_photo_size(
    editor: PnPEditor, tmp_path: Path
) -> None:
    """The page's mask-file path: the session's file becomes the mask (the photo's size)."""
    truth = np.zeros((40, 48), np.uint8)
    truth[10:30, 12:36] = 255
    mask_path = tmp_path / "subject.png"
    Image.fromarray(truth).resize((96, 80), Image.Resampling.NEAREST).save(mask_path)
    photo = Image.new("RGB", (48, 40), (90, 120, 30))
    session = Session.with_photo("photo.png", photo).with_mask_file(str(mask_path))
    cfg = subject_config(editor.default_config(), session, True)
    made = segment(editor, session.require_photo(), cfg)
    assert made.subject is not None and made.subject.method == "file"
    assert np.array_equal(made.subject.mask > 0.5, truth > 0)
    assert "mask by **file**" in mask_summary(made)


def test_a_doubtful_selection_is_shown_under_the_mask() -> None:
    import warnings

    from pnpsam.app.actions import mask_notes
    from pnpsam.masks import DoubtfulMaskWarning, doubtful_selection

    doubt = doubtful_selection(np.pad(np.ones((2, 2), np.float32), 30))  # 0.1% of 64x64
    assert doubt is not None and "less than 1%" in doubt
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.warn(doubt, DoubtfulMaskWarning, stacklevel=1)
    assert mask_notes(caught, EditConfig()) == doubt


def test_background_intent_is_one_control_beside_the_prompts(editor: PnPEditor) -> None:
    import gradio as gr

    from pnpsam.app import build_app
    from pnpsam.app.actions import INTENT

    assert INTENT not in ADVANCED and INTENT.choices == ("auto", "follow", "keep")
    assert with_values(EditConfig(), [INTENT], ["keep"]).pnp.background_intent == "keep"
    with pytest.raises(ConfigError, match="background_intent"):
        with_values(EditConfig(), [INTENT], ["stay"])
    page = build_app(editor)
    radios = [b for b in page.blocks.values() if getattr(b, "elem_id", None) == "background-intent"]
    assert len(radios) == 1 and isinstance(radios[0], gr.Radio)
    assert [c[0] for c in radios[0].choices] == ["auto", "follow", "keep"]
    assert radios[0].value == "auto"

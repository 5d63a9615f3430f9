"""The Gradio page: upload a photo, click the subject, type prompts, get the translations.

>>> from pnpsam.app import build_app, serve
>>> demo = build_app("toy")                   # or a PnPEditor, a hub id, folder or file
>>> serve(demo, host="127.0.0.1", port=7860)  # the queue, upload limit, theme; blocks

State is per browser session (``gr.State`` holding a :class:`~pnpsam.app.session.Session`);
every event that runs the model shares one queue slot (``concurrency_id="device"``), so one
edit or mask runs at a time on the device. Named API endpoints ``segment`` and ``edit`` take
plain values (a file, a JSON object of config sections) for ``gradio_client``.
"""

import contextlib
import dataclasses
import logging
import os
import tempfile
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
from PIL import Image

from pnpsam.api import PnPEditor
from pnpsam.config import ConfigError, EditConfig, ModelConfig
from pnpsam.errors import UserError
from pnpsam.imageio import ImageInputError, load_image
from pnpsam.options import Option

from .actions import (
    ADVANCED,
    INTENT,
    INTENT_HELP,
    MASK_TOOLS,
    METHOD_CHOICES,
    NO_SUBJECT,
    label,
    mask_summary,
    merge_sections,
    method_summary,
    method_values,
    parse_prompts,
    run_edit,
    segment,
    shown_value,
    subject_config,
    uses_subject,
    with_values,
)
from .session import CLICK_MODES, Session

log = logging.getLogger(__name__)

DEVICE_QUEUE = "device"  # concurrency id shared by every event that runs a model
TRACK_TQDM = gr.Progress(track_tqdm=True)  # the editor's progress bars are tqdm bars


@dataclass
class AppSettings:
    """Limits and places of one app. ``max_upload_mb``: largest upload in MB (the server refuses
    bigger files); ``max_pixels``: largest photo in pixels (refused before decoding it whole);
    ``workdir``: where each run's PNGs, record and zip go (default: a new temporary folder)."""

    max_upload_mb: float = 50.0
    max_pixels: int = 40_000_000
    workdir: Path | None = None
    title: str = "pnp-sam"
    extra: dict[str, Any] = field(default_factory=dict)  # more gr.Blocks.launch options


@contextlib.contextmanager
def shown_errors() -> Iterator[None]:
    """Turn any failure into a message in the page (``gr.Error``), never a traceback."""
    try:
        yield
    except gr.Error:
        raise
    except UserError as error:  # bad input, unreadable file, model not found, full disk
        raise gr.Error(str(error), duration=None) from None
    except Exception as error:
        log.exception("unexpected error in the app")
        raise gr.Error(
            f"unexpected error ({type(error).__name__}: {error}); the app keeps running",
            duration=None,
        ) from None


def read_upload(path: str, max_pixels: int) -> Image.Image:
    """An uploaded photo, read like ``pnpsam edit`` reads one; errors name the file, not the
    server's upload folder."""
    try:
        return load_image(path, max_pixels)
    except ImageInputError as error:
        raise ImageInputError(str(error).replace(path, Path(path).name)) from None


def _component(option: Option, value: str | bool) -> gr.Checkbox | gr.Dropdown | gr.Textbox:
    name, elem_id = label(option), f"opt-{option.flag.removeprefix('--')}"
    if option.switch:
        return gr.Checkbox(
            value=bool(value), label=f"{option.field} ({name})", info=option.help, elem_id=elem_id
        )
    if option.choices:
        return gr.Dropdown(
            list(option.choices), value=value, label=name, info=option.help, elem_id=elem_id
        )
    return gr.Textbox(value=str(value), label=name, info=option.help, max_lines=1, elem_id=elem_id)


def _editor(model: PnPEditor | str | ModelConfig) -> PnPEditor:
    return model if isinstance(model, PnPEditor) else PnPEditor.from_pretrained(model)


def build_app(
    model: PnPEditor | str | ModelConfig,
    defaults: Mapping[str, Any] | None = None,
    settings: AppSettings | None = None,
) -> gr.Blocks:
    """The page for ``model`` (an editor, or what ``PnPEditor.from_pretrained`` takes, ``toy``
    included; loaded once). The page starts from the editor's default config (the model's
    recommended settings) with ``defaults`` (config sections) over it; ``settings``: limits and
    places. Launch it with :func:`serve`."""
    editor = _editor(model)
    settings = settings or AppSettings()
    workdir = settings.workdir or Path(tempfile.mkdtemp(prefix="pnpsam-app-"))
    # the model folder's recommended settings are in default_config already
    base = merge_sections(editor.default_config(), defaults or {})
    base.preprocess.max_input_pixels = settings.max_pixels
    info = editor.model_info()

    def config_of(values: Mapping[Any, Any]) -> EditConfig:
        """The base config with the page's mask tools (and advanced options, when given)."""
        cfg = with_values(base, MASK_TOOLS, [values[c] for c in tool_inputs])
        if intent in values:
            cfg = with_values(cfg, (INTENT,), [values[intent]])
        if advanced_inputs[0] not in values:
            return cfg
        return with_values(cfg, ADVANCED, [values[c] for c in advanced_inputs])

    def shown_mask(session: Session, values: Mapping[Any, Any]) -> tuple[Session, str]:
        if not session.has_subject_source:
            return dataclasses.replace(session, mask=None, mask_details={}), NO_SUBJECT
        cfg = subject_config(config_of(values), session, True)
        made = segment(editor, session.require_photo(), cfg)
        mask = None if made.subject is None else made.subject.mask
        details = {} if made.subject is None else made.subject.provenance()
        return dataclasses.replace(session, mask=mask, mask_details=details), mask_summary(made)

    with gr.Blocks(title=settings.title, analytics_enabled=False) as demo:
        # dropped when the tab closes, or after an idle hour (a photo can be 100+ MB of pixels)
        state = gr.State(Session(), time_to_live=3600)
        gr.Markdown(
            f"## pnp-sam · text-driven translation that keeps the subject\n"
            f"Model `{info['id']}` ({info['dtype']}, {editor.device}). Upload a photo, click "
            "on the subject (the mask appears at once), type target prompts, press Translate."
        )
        with gr.Row():
            with gr.Column(scale=1):
                photo_file = gr.UploadButton(
                    "Upload a photo (PNG, JPEG, WebP, TIFF, ...)",
                    file_types=["image"],
                    type="filepath",
                    elem_id="photo-upload",
                )
                photo = gr.Image(
                    label="Click the subject",
                    interactive=False,
                    type="numpy",
                    format="png",
                    elem_id="photo",
                    buttons=[],
                )
                mask_info = gr.Markdown("Upload a photo to start.", elem_id="mask-info")
                with gr.Row():
                    click_mode = gr.Radio(
                        list(CLICK_MODES), value="subject", label="A click adds", scale=3
                    )
                    clear = gr.Button("Clear", elem_id="clear", scale=1)
                with gr.Accordion("Subject by text, by mask file; mask tools", open=False):
                    with gr.Row():
                        subject_text = gr.Textbox(label="Subject by text", scale=3)
                        by_text = gr.Button("Select", scale=1)
                    mask_file = gr.File(label="Mask file (white = subject)", type="filepath")
                    tools = [_component(o, shown_value(o, base)) for o in MASK_TOOLS]
            with gr.Column(scale=1):
                prompts = gr.Textbox(
                    label="Target prompts (one per line)", lines=3, elem_id="prompts"
                )
                intent = gr.Radio(
                    list(INTENT.choices or ()),
                    value=shown_value(INTENT, base),
                    label="Background",
                    info=INTENT_HELP,
                    elem_id="background-intent",
                )
                method = gr.Radio(
                    list(METHOD_CHOICES),
                    value="auto",
                    label="Method",
                    info="; ".join(f"{m}: {method_summary(m)}" for m in METHOD_CHOICES),
                )
                translate = gr.Button("Translate", variant="primary", elem_id="translate")
                stats = gr.Markdown(elem_id="run-stats")
                gallery = gr.Gallery(
                    label="Source, mask used, translations",
                    format="png",
                    columns=3,
                    object_fit="contain",
                    height="auto",
                    elem_id="results",
                )
                download = gr.File(label="Download: PNGs, mask, photo, record", elem_id="download")
                with gr.Accordion("Advanced: every edit option of `pnpsam edit`", open=False):
                    advanced = [_component(o, shown_value(o, base)) for o in ADVANCED]
                with gr.Accordion("Record (pnpsam edit --config NAME.json reproduces)", open=False):
                    record = gr.JSON(label="record")

        tool_inputs, advanced_inputs = tools, advanced
        mask_outputs = [state, photo, mask_info]

        def on_photo(path: str | None, session: Session) -> tuple[Session, Any, str]:
            if not path:
                return Session(), None, "Upload a photo to start."
            with shown_errors():
                image = read_upload(path, settings.max_pixels)
                fresh = Session.with_photo(path, image)
                note = f"{image.width}x{image.height} photo. Click on the subject."
                return fresh, fresh.display(), note

        photo_file.upload(on_photo, [photo_file, state], mask_outputs, api_visibility="private")

        def on_click(values: dict[Any, Any], evt: gr.SelectData) -> tuple[Session, Any, str]:
            with shown_errors():
                x, y = evt.index
                session = values[state].click(float(x), float(y), values[click_mode])
                if session.corner is not None:  # half a box: mark it, no mask yet
                    return session, session.display(), "Box: click the opposite corner."
                session, note = shown_mask(session, values)
                return session, session.display(), note

        every: set[gr.blocks.Block] = {state, click_mode, *tool_inputs}
        photo.select(
            on_click,
            every,
            mask_outputs,
            api_visibility="private",
            concurrency_id=DEVICE_QUEUE,
            show_progress="hidden",
        )

        def remask(values: dict[Any, Any]) -> tuple[Session, Any, str]:
            session = values[state]
            if session.image is None:
                return session, None, "Upload a photo to start."
            with shown_errors():
                session, note = shown_mask(session, values)
                return session, session.display(), note

        for tool in tool_inputs:
            tool.input(
                remask, every, mask_outputs, api_visibility="private", concurrency_id=DEVICE_QUEUE
            )

        def remask_with(
            values: dict[Any, Any], source: Callable[[Session], Session]
        ) -> tuple[Session, Any, str]:
            """The mask after ``source`` sets the session's subject source (text or file)."""
            with shown_errors():
                values[state].require_photo()
                values = {**values, state: source(values[state])}
            return remask(values)

        def on_text(values: dict[Any, Any]) -> tuple[Session, Any, str]:
            return remask_with(values, lambda s: s.with_subject_text(values[subject_text]))

        def on_mask_file(values: dict[Any, Any]) -> tuple[Session, Any, str]:
            if not values[mask_file]:
                return remask(values)
            return remask_with(values, lambda s: s.with_mask_file(values[mask_file]))

        by_text.click(
            on_text,
            {*every, subject_text},
            mask_outputs,
            api_visibility="private",
            concurrency_id=DEVICE_QUEUE,
        )
        mask_file.upload(
            on_mask_file,
            {*every, mask_file},
            mask_outputs,
            api_visibility="private",
            concurrency_id=DEVICE_QUEUE,
        )

        def on_clear(session: Session) -> tuple[Session, Any, str]:
            session = session.cleared()
            return session, session.display(), "Cleared: click on the subject."

        clear.click(on_clear, [state], mask_outputs, api_visibility="private")

        def on_method(name: str) -> list[Any]:
            return method_values(name, base)

        method.change(on_method, [method], advanced, api_visibility="private")

        def on_edit(
            values: dict[Any, Any], progress: gr.Progress = TRACK_TQDM
        ) -> tuple[Any, str, str, dict[str, Any]]:
            with shown_errors():
                session: Session = values[state]
                session.require_photo()
                texts = parse_prompts(values[prompts])
                use = uses_subject(values[method], session)
                cfg = subject_config(config_of(values), session, use)
                out = workdir / uuid.uuid4().hex
                done = run_edit(editor, session, texts, cfg, out)
                return done.gallery, done.stats(), str(done.archive), done.record

        translate.click(
            on_edit,
            {state, prompts, intent, method, *tool_inputs, *advanced_inputs},
            [gallery, stats, download, record],
            api_visibility="private",
            concurrency_id=DEVICE_QUEUE,
        )

        # -- named API endpoints (plain values, for gradio_client) ------------------------
        with gr.Column(visible=False):
            api_image = gr.File(type="filepath")
            api_settings = gr.JSON()
            api_prompts = gr.Textbox()
            api_overlay = gr.Image(format="png", type="numpy")
            api_mask = gr.Image(format="png", type="numpy", image_mode="L")
            api_info = gr.JSON()
            api_gallery = gr.Gallery(format="png")
            api_record = gr.JSON()
            api_zip = gr.File()
            segment_button = gr.Button()
            edit_button = gr.Button()

        def api_session(path: str | None) -> Session:
            if not path:
                raise ConfigError("give an image file")
            return Session.with_photo(path, read_upload(path, settings.max_pixels))

        def segment_endpoint(
            path: str | None, mask_settings: dict[str, Any] | None
        ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
            """Subject mask of an image. ``mask_settings``: fields of the config's ``mask``
            section, e.g. ``{"points": [[32, 30]]}``, ``{"box": [...]}``, ``{"subject": "the
            cat"}``. Returns the overlay and the mask (white = subject) at the image's size,
            and how the mask was made."""
            with shown_errors():
                session = api_session(path)
                cfg = merge_sections(base, {"mask": mask_settings or {}})
                made = segment(editor, session.require_photo(), cfg)
                if made.subject is None:
                    raise ConfigError("no subject source: give points, a box or a subject text")
                mask = made.subject.mask
                marked = dataclasses.replace(
                    session,
                    scale=1.0,
                    mask=mask,
                    points=list(cfg.mask.points),
                    neg_points=list(cfg.mask.neg_points),
                    box=cfg.mask.box,
                )
                overlay = marked.display()
                assert overlay is not None  # the session has a photo
                details = {**made.subject.provenance(), "note": made.note}
                return overlay, (mask * 255).round().astype(np.uint8), details

        segment_button.click(
            segment_endpoint,
            [api_image, api_settings],
            [api_overlay, api_mask, api_info],
            api_name="segment",
            concurrency_id=DEVICE_QUEUE,
        )

        def edit_endpoint(
            path: str | None, text: str, config: dict[str, Any] | None
        ) -> tuple[Any, dict[str, Any], str]:
            """Translate an image by each prompt (one per line). ``config``: config sections
            like a ``--config`` file (``{"pnp": {"steps": 20}, "mask": {"points": [[32, 30]]}}``)
            over the app's defaults. Returns the gallery (source, mask used, one image per
            prompt), the record and a zip of the files."""
            with shown_errors():
                session = api_session(path)
                cfg = merge_sections(base, config or {})
                done = run_edit(
                    editor, session, parse_prompts(text), cfg, workdir / uuid.uuid4().hex
                )
                return done.gallery, done.record, str(done.archive)

        edit_button.click(
            edit_endpoint,
            [api_image, api_prompts, api_settings],
            [api_gallery, api_record, api_zip],
            api_name="edit",
            concurrency_id=DEVICE_QUEUE,
        )
    return demo


THEME_FONTS = ["ui-sans-serif", "system-ui", "sans-serif"]  # local fonts: works offline
CSS = "#photo img { cursor: crosshair; } #results img { image-rendering: pixelated; }"


def launch_options(settings: AppSettings | None = None) -> dict[str, Any]:
    """``gr.Blocks.launch`` options the app needs: upload limit, local fonts, no tracebacks."""
    settings = settings or AppSettings()
    return {
        "max_file_size": int(settings.max_upload_mb * 1024 * 1024),
        "theme": gr.themes.Default(font=THEME_FONTS, font_mono=["ui-monospace", "monospace"]),
        "css": CSS,
        "show_error": True,  # gr.Error messages only: every handler turns errors into them
        "footer_links": ["api"],
        **settings.extra,
    }


def serve(
    demo: gr.Blocks,
    host: str = "127.0.0.1",
    port: int = 7860,
    share: bool = False,
    settings: AppSettings | None = None,
    block: bool = True,
) -> gr.Blocks:
    """Queue (one model run at a time) and launch ``demo``; blocks unless ``block`` is False."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    demo.queue(default_concurrency_limit=1, max_size=32)
    demo.launch(
        server_name=host,
        server_port=port,
        share=share,
        prevent_thread_lock=not block,
        quiet=True,
        **launch_options(settings),
    )
    return demo

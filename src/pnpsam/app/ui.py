"""The Gradio page: upload a photo, click the subject, type prompts, get the translations.

>>> from pnpsam.app import build_app, serve
>>> demo = build_app("toy")                   # or a PnPEditor, a hub id, folder or file
>>> serve(demo, host="127.0.0.1", port=7860)  # the queue, upload limit, theme; blocks

State is per browser session (``gr.State`` holding a :class:`~pnpsam.app.session.Session`, and
the session's past runs). Edits share one queue group (``concurrency_id="device"``, one at a
time); masks have their own (``"mask"``), so a click never waits behind an edit. A click on
Translate is admitted first (a per-session cap, :class:`~pnpsam.app.jobs.Runs`), then queued;
Stop (or closing the tab) ends the running edit within one step and drops the queued ones.
Named API endpoints ``segment``, ``edit`` and ``stop`` take plain values (a file, a JSON object
of config sections) for ``gradio_client``.
"""

import contextlib
import dataclasses
import logging
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
from PIL import Image

from pnpsam.api import PnPEditor
from pnpsam.config import ConfigError, EditConfig, ModelConfig
from pnpsam.core.callbacks import EditStopped
from pnpsam.errors import UserError
from pnpsam.imageio import ImageInputError, load_image, save_png
from pnpsam.options import Option

from .actions import (
    ADVANCED,
    INTENT,
    INTENT_HELP,
    MASK_TOOLS,
    METHOD_CHOICES,
    NO_SUBJECT,
    Caps,
    label,
    mask_summary,
    merge_sections,
    method_summary,
    method_values,
    parse_prompts,
    prompt_notes,
    run_edit,
    segment,
    shown_value,
    subject_config,
    uses_subject,
    with_values,
)
from .jobs import Runs, StepWatch, Workspace, run_name, settings_digest
from .session import CLICK_MODES, Session

log = logging.getLogger(__name__)

DEVICE_QUEUE = "device"  # concurrency id of every event that runs the diffusion model
MASK_QUEUE = "mask"  # the masks' own group: a click never waits behind a translate
TOAST_S = 10  # seconds an error toast stays
PROGRESS = gr.Progress()  # a handler's progress bar (Gradio fills it in per call)


@dataclass
class AppSettings:
    """Limits and places of one app. ``max_upload_mb``: largest upload in MB (the server refuses
    bigger files); ``max_pixels``: largest photo in pixels (refused before decoding it whole);
    ``workdir``: where each session's runs (PNGs, record, zip) go, one folder per session
    (default: a new temporary folder); ``caps``: tops of size, steps and prompts below
    ``config.LIMITS`` (None: ``Caps.for_device``, i.e. lower on a CPU); ``edit_workers``:
    edits running at once (one per device); ``mask_workers``: masks computed at once, in their
    own queue; ``queued_runs``: runs one session may have queued or running; ``keep_files_minutes``:
    age after which run files and uploads are deleted (they are also deleted when the session
    ends); ``history_runs``: past runs a session keeps on its page."""

    max_upload_mb: float = 50.0
    max_pixels: int = 40_000_000
    workdir: Path | None = None
    title: str = "pnp-sam"
    caps: Caps | None = None
    edit_workers: int = 1
    mask_workers: int = 2
    queued_runs: int = 2
    keep_files_minutes: float = 60.0
    history_runs: int = 20
    extra: dict[str, Any] = field(default_factory=dict)  # more gr.Blocks.launch options

    @property
    def keep_s(self) -> float:
        return 60.0 * self.keep_files_minutes


def tell(error: BaseException) -> str:
    """Log a user's mistake as one line (no traceback: it is not a failure of the app)."""
    message = str(error)
    log.warning("user error: %s", message)
    return message


def user_failure(error: UserError) -> gr.Error:
    """A user's mistake as the page's error (one log line, no traceback)."""
    return gr.Error(tell(error), duration=TOAST_S, print_exception=False)


def app_failure(error: Exception) -> gr.Error:
    """A failure of the app: logged with its traceback, shown as a message."""
    log.error("unexpected error in the app", exc_info=error)
    return gr.Error(
        f"unexpected error ({type(error).__name__}: {error}); the app keeps running",
        duration=None,
        print_exception=False,  # logged above, once
    )


@contextlib.contextmanager
def shown_errors() -> Iterator[None]:
    """Turn any failure into an error message (``gr.Error``): a user's mistake logs one line,
    anything else its traceback."""
    try:
        yield
    except gr.Error:
        raise
    except UserError as error:  # bad input, unreadable file, model not found, full disk
        raise user_failure(error) from None
    except Exception as error:
        raise app_failure(error) from None


def warn(error: UserError) -> str:
    """A user's mistake shown as a toast that closes by itself, not as an error state of the
    outputs (the photo and results stay as they were); the message."""
    message = tell(error)
    gr.Warning(message, duration=TOAST_S, title="Error")
    return message


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


@dataclass(frozen=True)
class PastRun:
    """One run kept in a session's history: its translations (PNG, caption), zip and folder."""

    folder: Path
    when: float
    images: list[tuple[str, str]]
    archive: str


def history_views(runs: Sequence[PastRun]) -> tuple[list[tuple[str, str]], list[str]]:
    """The history gallery (every run's translations, newest run first) and its zips."""
    newest = sorted(runs, key=lambda r: r.when, reverse=True)
    return [item for run in newest for item in run.images], [run.archive for run in newest]


def settings_line(cfg: EditConfig, method: str, digest: str) -> str:
    """A run's settings in a caption: the ones a user changes most, and the digest of all."""
    return (
        f"{method}, {cfg.pnp.steps} steps, guidance {cfg.pnp.guidance:g}, "
        f"{cfg.preprocess.size} px, seed {cfg.pnp.seed} [{digest}]"
    )


def _sweeper(workspace: Workspace, every_s: float) -> None:
    """Delete old run files every ``every_s`` seconds, for as long as the process runs."""

    def loop() -> None:
        while True:
            time.sleep(every_s)
            try:
                workspace.sweep()
            except OSError as error:  # a folder removed meanwhile: the next sweep retries
                log.warning("file sweep: %s", error)

    threading.Thread(target=loop, name="pnpsam-app-sweeper", daemon=True).start()


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
    workspace = Workspace(
        settings.workdir or Path(tempfile.mkdtemp(prefix="pnpsam-app-")), settings.keep_s
    )
    _sweeper(workspace, min(60.0, max(1.0, settings.keep_s / 4)))
    runs = Runs(settings.queued_runs)
    # the model folder's recommended settings are in default_config already
    base = merge_sections(editor.default_config(), defaults or {})
    base.preprocess.max_input_pixels = settings.max_pixels
    native = editor.pipeline.native_size
    caps = settings.caps or Caps.for_device(editor.device.type, native)
    caps.check(base)  # the page's own defaults must be allowed
    tokenizer = editor.pipeline.sd.tokenizer
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

    def mask_step(
        session: Session, work: Callable[[], tuple[Session, str]]
    ) -> tuple[Session, Any, str]:
        """``work``'s new session, its photo and note; after a user's mistake the session and
        its photo as they were, and the message in the note (replaced once fixed)."""
        try:
            new, note = work()
        except UserError as error:
            return session, session.display(), f"⚠ {warn(error)}"
        except Exception as error:
            raise app_failure(error) from None
        return new, new.display(), note

    def drop_history(past: list[PastRun]) -> None:
        for run in past:
            workspace.remove(run.folder)

    with gr.Blocks(
        title=settings.title,
        analytics_enabled=False,
        # Gradio's own copies (uploads, files it serves) go after the same age as ours
        delete_cache=(max(1, int(min(300.0, settings.keep_s / 4))), max(1, int(settings.keep_s))),
    ) as demo:
        # dropped when the tab closes, or after an idle hour (a photo can be 100+ MB of pixels)
        state = gr.State(Session(), time_to_live=3600)
        history = gr.State([], time_to_live=3600, delete_callback=drop_history)
        gr.Markdown(
            f"## pnp-sam · text-driven translation that keeps the subject\n"
            f"Model `{info['id']}` ({info['dtype']}, {editor.device}; {caps.summary()}). "
            "Upload a photo, click on the subject (the mask appears at once), type target "
            "prompts, press Translate."
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
                    gr.Markdown("Mask tools apply when you leave a box or press Enter.")
                    tools = [_component(o, shown_value(o, base)) for o in MASK_TOOLS]
            with gr.Column(scale=1):
                prompts = gr.Textbox(
                    label="Target prompts (one per line)",
                    placeholder="a yellow circle on grass\na red square on sand",
                    lines=3,
                    elem_id="prompts",
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
                with gr.Row():
                    translate = gr.Button(
                        "Translate", variant="primary", elem_id="translate", scale=3
                    )
                    stop = gr.Button("Stop", variant="stop", elem_id="stop", scale=1)
                stats = gr.Markdown(elem_id="run-stats")
                # the admission of the run a click queues (read by that run when it starts)
                ticket = gr.Textbox(visible=False)
                gallery = gr.Gallery(
                    label="Source, mask used, translations",
                    format="png",
                    columns=3,
                    object_fit="contain",
                    height="auto",
                    elem_id="results",
                )
                download = gr.File(label="Download: PNGs, mask, photo, record", elem_id="download")
                past = gr.Gallery(
                    label="History: this session's runs, newest first",
                    format="png",
                    columns=4,
                    object_fit="contain",
                    height="auto",
                    elem_id="history",
                )
                past_files = gr.File(
                    label="History downloads, newest first",
                    file_count="multiple",
                    elem_id="history-files",
                )
                with gr.Accordion("Advanced: every edit option of `pnpsam edit`", open=False):
                    advanced = [_component(o, shown_value(o, base)) for o in ADVANCED]
                with gr.Accordion("Record (pnpsam edit --config NAME.json reproduces)", open=False):
                    record = gr.JSON(label="record")

        tool_inputs, advanced_inputs = tools, advanced
        mask_outputs = [state, photo, mask_info]
        in_mask_queue: dict[str, Any] = {
            "api_visibility": "private",
            "concurrency_id": MASK_QUEUE,
            "concurrency_limit": settings.mask_workers,
            "show_progress_on": [mask_info],  # a bar under the photo, which stays visible
        }

        def on_photo(
            path: str | None, session: Session, request: gr.Request
        ) -> tuple[Session, Any, str]:
            if not path:
                return Session(), None, "Upload a photo to start."
            workspace.adopt(request.session_hash or "", Path(path))

            def read() -> tuple[Session, str]:
                image = read_upload(path, settings.max_pixels)
                note = f"{image.width}x{image.height} photo. Click on the subject."
                return Session.with_photo(path, image), note

            return mask_step(session, read)

        photo_file.upload(
            on_photo, [photo_file, state], mask_outputs, **{**in_mask_queue, "concurrency_id": None}
        )

        def on_click(values: dict[Any, Any], evt: gr.SelectData) -> tuple[Session, Any, str]:
            session: Session = values[state]

            def click() -> tuple[Session, str]:
                x, y = evt.index
                clicked = session.click(float(x), float(y), values[click_mode])
                if clicked.corner is not None:  # half a box: mark it, no mask yet
                    return clicked, "Box: click the opposite corner."
                return shown_mask(clicked, values)

            return mask_step(session, click)

        every: set[gr.blocks.Block] = {state, click_mode, *tool_inputs}
        photo.select(on_click, every, mask_outputs, **in_mask_queue)

        def remask(values: dict[Any, Any]) -> tuple[Session, Any, str]:
            session: Session = values[state]
            if session.image is None:
                return session, None, "Upload a photo to start."
            return mask_step(session, lambda: shown_mask(session, values))

        for tool in tool_inputs:
            # on a committed change, not per keystroke: typing 40 must not apply 4 first
            commits = [tool.submit, tool.blur] if isinstance(tool, gr.Textbox) else [tool.input]
            gr.on(commits, remask, every, mask_outputs, **in_mask_queue)

        def remask_with(
            values: dict[Any, Any], source: Callable[[Session], Session]
        ) -> tuple[Session, Any, str]:
            """The mask after ``source`` sets the session's subject source (text or file)."""
            session: Session = values[state]

            def select() -> tuple[Session, str]:
                session.require_photo()
                return shown_mask(source(session), values)

            return mask_step(session, select)

        def on_text(values: dict[Any, Any]) -> tuple[Session, Any, str]:
            return remask_with(values, lambda s: s.with_subject_text(values[subject_text]))

        def on_mask_file(values: dict[Any, Any], request: gr.Request) -> tuple[Session, Any, str]:
            if not values[mask_file]:
                return remask(values)
            workspace.adopt(request.session_hash or "", Path(values[mask_file]))
            return remask_with(values, lambda s: s.with_mask_file(values[mask_file]))

        gr.on(
            [by_text.click, subject_text.submit],
            on_text,
            {*every, subject_text},
            mask_outputs,
            **in_mask_queue,
        )
        mask_file.upload(on_mask_file, {*every, mask_file}, mask_outputs, **in_mask_queue)

        def on_clear(session: Session) -> tuple[Session, Any, str]:
            session = session.cleared()
            return session, session.display(), "Cleared: click on the subject."

        clear.click(on_clear, [state], mask_outputs, api_visibility="private")

        def on_method(name: str) -> list[Any]:
            return method_values(name, base)

        method.change(on_method, [method], advanced, api_visibility="private")

        def admit(request: gr.Request) -> str:
            """Count the run against the session's cap before it joins the queue; its ticket."""
            try:
                return runs.admit(request.session_hash or "")
            except UserError as error:
                raise user_failure(error) from None

        def edit_watches(
            cfg: EditConfig, flag: threading.Event, progress: gr.Progress | None
        ) -> tuple[StepWatch, StepWatch]:
            """The step callbacks of one run: progress and stop, for the inversion and the
            sampling."""

            def report(done: int, total: int, desc: str) -> None:
                if progress is not None:
                    progress((done, total), desc=desc, unit="steps")

            inversion = StepWatch("inversion", cfg.inversion.steps_for(cfg.pnp.steps), flag, report)
            sampling = StepWatch("sampling", cfg.pnp.steps, flag, report)
            return inversion, sampling

        def edit_run(
            session_id: str,
            flag: threading.Event,
            session: Session,
            texts: list[str],
            cfg: EditConfig,
            progress: gr.Progress | None,
        ) -> tuple[Any, Path]:
            """Run one edit of a session into a new folder of its own; (outcome, folder).
            ``flag``: the run's stop flag."""
            caps.check(cfg)
            workspace.sweep()
            stem = Path(session.photo or "photo.png").stem
            name = run_name(stem, time.time(), {"prompts": texts, "config": cfg.to_dict()})
            folder = workspace.run_dir(session_id, name)
            inversion, sampling = edit_watches(cfg, flag, progress)
            try:
                done = run_edit(editor, session, texts, cfg, folder, name, sampling, inversion)
            except BaseException:
                workspace.remove(folder)  # nothing half-written stays
                raise
            return done, folder

        def on_edit(
            values: dict[Any, Any], request: gr.Request, progress: gr.Progress = PROGRESS
        ) -> tuple[Any, ...]:
            skip = [gr.skip()] * 6
            session_id = request.session_hash or ""
            try:
                with runs.running(session_id, values[ticket] or None) as flag:
                    if flag.is_set():  # dropped by a Stop while it waited
                        return ("Stopped: the queued run was dropped.", *skip)
                    session: Session = values[state]
                    session.require_photo()
                    texts = parse_prompts(values[prompts], caps.prompts)
                    use = uses_subject(values[method], session)
                    cfg = subject_config(config_of(values), session, use)
                    done, folder = edit_run(session_id, flag, session, texts, cfg, progress)
            except EditStopped as stopped:
                log.info("run of session %s stopped: %s", session_id[:8], stopped)
                return (f"Stopped ({stopped}); nothing of that run was kept.", *skip)
            except UserError as error:
                return (f"⚠ {warn(error)}", *skip)
            except Exception as error:
                raise app_failure(error) from None
            notes = prompt_notes(tokenizer, texts)
            stats_text = done.stats() + (f"\n\n⚠ {notes}" if notes else "")
            digest = settings_digest({"prompts": texts, "config": done.record["config"]})
            line = settings_line(cfg, values[method], digest)
            clock = datetime.fromtimestamp(time.time()).strftime("%H:%M:%S")
            shown = [(p, f"{clock} · {c} · {line}") for p, c in done.gallery[-len(texts) :]]
            kept = [PastRun(folder, time.time(), shown, str(done.archive)), *values[history]]
            drop_history(kept[settings.history_runs :])
            kept = kept[: settings.history_runs]
            items, archives = history_views(kept)
            return (
                stats_text,
                done.gallery,
                str(done.archive),
                done.record,
                kept,
                items,
                archives,
            )

        edit_inputs = {
            state,
            history,
            ticket,
            prompts,
            intent,
            method,
            *tool_inputs,
            *advanced_inputs,
        }
        edit_outputs = [stats, gallery, download, record, history, past, past_files]
        # admitted at once (no concurrency limit: never waits), then queued for the device;
        # "multiple": a click while a run is going queues another (up to the session's cap)
        admitted = translate.click(
            admit,
            None,
            ticket,
            api_visibility="private",
            concurrency_limit=None,
            show_progress="hidden",
            trigger_mode="multiple",
        )
        queued = admitted.success(
            on_edit,
            edit_inputs,
            edit_outputs,
            api_visibility="private",
            concurrency_id=DEVICE_QUEUE,
            concurrency_limit=settings.edit_workers,
            show_progress_on=[gallery],
            trigger_mode="multiple",
        )

        def on_stop(request: gr.Request) -> str:
            stopped = runs.stop(request.session_hash or "")
            if not stopped:
                return "Nothing running; queued runs (if any) were dropped."
            return "Stopping: the run ends after its current step."

        # cancels= drops this session's queued runs; the flag ends the running one at its step
        # (named "stop" for gradio_client: it stops the runs of the client's own session)
        stop.click(on_stop, None, stats, cancels=[queued], queue=False, api_name="stop")

        def on_unload(request: gr.Request) -> None:
            """The tab closed: stop its runs (Gradio drops its queued events) and delete its
            files."""
            session_id = request.session_hash or ""
            runs.end(session_id)
            workspace.end(session_id)

        demo.unload(on_unload)

        # -- named API endpoints (plain values, for gradio_client) ------------------------
        with gr.Column(visible=False):
            api_image = gr.File(type="filepath", label="image")
            api_settings = gr.JSON(label="settings")
            api_prompts = gr.Textbox(label="prompts")
            api_overlay = gr.Image(format="png", type="numpy", label="overlay")
            api_mask = gr.Image(format="png", type="numpy", image_mode="L", label="mask")
            api_info = gr.JSON(label="mask_info")
            api_gallery = gr.Gallery(format="png", label="images")
            api_record = gr.JSON(label="record")
            api_zip = gr.File(label="zip")
            segment_button = gr.Button()
            edit_button = gr.Button()

        def api_session(path: str | None) -> Session:
            if not path:
                raise ConfigError("give an image file")
            return Session.with_photo(path, read_upload(path, settings.max_pixels))

        def segment_endpoint(
            path: str | None, mask_settings: dict[str, Any] | None, request: gr.Request
        ) -> tuple[str, str, dict[str, Any]]:
            """The subject mask of an image. ``mask_settings``: fields of the config's ``mask``
            section, e.g. ``{"points": [[32, 30]]}``, ``{"box": [...]}``, ``{"subject": "the
            cat"}``. Returns the overlay and the mask (white = subject) at the image's size,
            and how the mask was made."""
            with shown_errors():
                session_id = request.session_hash or uuid.uuid4().hex
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
                # PNG files of this call, not arrays: Gradio writes an array into its cache at
                # a path named by its content, in place, so two users getting the same mask at
                # once could be sent a file being rewritten (seen under load: an empty reply);
                # a file is copied into the cache under a temporary name, then renamed
                folder = workspace.run_dir(session_id, f"mask-{uuid.uuid4().hex[:8]}")
                grey = (mask * 255).round().astype(np.uint8)
                save_png(Image.fromarray(overlay), folder / "overlay.png")
                save_png(Image.fromarray(grey), folder / "mask.png")
                return str(folder / "overlay.png"), str(folder / "mask.png"), details

        segment_button.click(
            segment_endpoint,
            [api_image, api_settings],
            [api_overlay, api_mask, api_info],
            api_name="segment",
            concurrency_id=MASK_QUEUE,
            concurrency_limit=settings.mask_workers,
        )

        def edit_endpoint(
            path: str | None,
            text: str,
            config: dict[str, Any] | None,
            request: gr.Request,
            progress: gr.Progress = PROGRESS,
        ) -> tuple[Any, dict[str, Any], str]:
            """Translate an image by each prompt (one per line). ``config``: config sections
            like a ``--config`` file (``{"pnp": {"steps": 20}, "mask": {"points": [[32, 30]]}}``)
            over the app's defaults. Returns the gallery (source, mask used, one image per
            prompt), the record and a zip of the files."""
            with shown_errors():
                session = api_session(path)
                cfg = merge_sections(base, config or {})
                texts = parse_prompts(text, caps.prompts)
                session_id = request.session_hash or uuid.uuid4().hex
                try:
                    with runs.running(session_id) as flag:
                        done, _ = edit_run(session_id, flag, session, texts, cfg, progress)
                except EditStopped as stopped:
                    raise gr.Error(f"cancelled: {stopped}", print_exception=False) from None
                return done.gallery, done.record, str(done.archive)

        edit_button.click(
            edit_endpoint,
            [api_image, api_prompts, api_settings],
            [api_gallery, api_record, api_zip],
            api_name="edit",
            concurrency_id=DEVICE_QUEUE,
            concurrency_limit=settings.edit_workers,
        )
    return demo


THEME_FONTS = ["ui-sans-serif", "system-ui", "sans-serif"]  # local fonts: works offline
CSS = (
    "#photo img { cursor: crosshair; } #results img { image-rendering: pixelated; } "
    # captions whole (a prompt and its settings), not cut at the thumbnail's width
    "#results .caption-label, #history .caption-label, #results .caption, #history .caption "
    "{ white-space: normal; text-overflow: clip; max-width: 100%; }"
)


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

"""The bench's (method, item) pairs as work for the batch engines (local or Ray).

:class:`BenchWork` runs :func:`~pnpsam.bench.item.run_item` on one pair; the runner gives it
to an engine and writes each :class:`~pnpsam.bench.item.ItemResult` as it arrives. The pairs
travel once, with the work (a task is the pair's index); results come back as their rows (JSON)
and PNG-encoded images, decoded to the same pixels on the driver.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from pnpsam.api import PnPEditor
from pnpsam.bench.item import ItemResult, failed_rows, run_item
from pnpsam.config import EditConfig
from pnpsam.manifest import EditItem
from pnpsam.methods import MethodSpec
from pnpsam.metrics import EditMetrics, EditMetricsConfig


@dataclass(frozen=True)
class BenchPair:
    """One (method, item) pair to run: the method's resolved config and its settings digest."""

    spec: MethodSpec
    item: EditItem
    config: EditConfig
    settings: str


@dataclass
class BenchWork:
    """:class:`~pnpsam.engines.local.Work` over ``pairs``; tasks are indexes into it.

    ``editor``/``metrics`` given (the runner's, local engine) are used as they are; otherwise
    ``setup`` loads them from ``model_config`` and ``metrics_config`` (a Ray actor, once).
    """

    model_config: EditConfig
    pairs: list[BenchPair]
    metrics_config: EditMetricsConfig | None = None
    metrics_device: str | None = None
    editor: PnPEditor | None = None
    metrics: EditMetrics | None = field(default=None)

    def setup(self) -> None:
        if self.editor is None:
            self.editor = PnPEditor.from_pretrained(self.model_config.model)
            self.editor.set_progress_bar_config(disable=True)
        if self.metrics is None and self.metrics_config is not None:
            device = self.metrics_device or self.editor.device
            self.metrics = EditMetrics.from_pretrained(self.metrics_config, device=device)

    def __call__(self, index: int) -> tuple[int, ItemResult]:
        if self.editor is None:
            self.setup()
        assert self.editor is not None
        pair = self.pairs[index]
        result = run_item(
            self.editor, pair.item, pair.spec, pair.config, pair.settings, self.metrics
        )
        return index, result

    def failed(self, index: int, reason: str) -> tuple[int, ItemResult]:
        pair = self.pairs[index]
        return index, ItemResult(failed_rows(pair.item, pair.spec, pair.settings, OSError(reason)))

    def encode_task(self, index: int) -> str:
        return str(index)

    def decode_task(self, text: str) -> int:
        return int(text)

    def encode_result(self, result: tuple[int, ItemResult]) -> bytes:
        index, item = result
        blobs = []
        for picture in item.images.values():
            buffer = io.BytesIO()
            picture.save(buffer, format="PNG")
            blobs.append(buffer.getvalue())
        header = {
            "index": index,
            "rows": item.rows,
            "images": [[path, len(blob)] for path, blob in zip(item.images, blobs, strict=True)],
        }
        return b"".join([json.dumps(header, default=_plain).encode(), b"\n", *blobs])

    def decode_result(self, blob: bytes) -> tuple[int, ItemResult]:
        head, _, body = blob.partition(b"\n")
        header = json.loads(head)
        images, offset = {}, 0
        for path, size in header["images"]:
            with Image.open(io.BytesIO(body[offset : offset + size])) as picture:
                images[path] = picture.copy()
            offset += size
        return header["index"], ItemResult(header["rows"], images)

    def __getstate__(self) -> dict[str, Any]:
        # loaded models never travel: each process loads its own
        return {**self.__dict__, "editor": None, "metrics": None}


def _plain(value: Any) -> Any:
    """JSON for numpy scalars in metric rows."""
    return value.item() if hasattr(value, "item") else str(value)

"""Loading a transformers model plus its processor after checking what kind of model it is.

Shared by the SAM and text-selection adapters: the config is read first (cheap), so an id of
the wrong kind fails with a clear error before any weights are loaded.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from transformers import AutoConfig


def load_checked(
    model_id_or_path: str,
    classes: Mapping[str, tuple[Any, Any]],
    wrong_kind: type[ValueError],
    example: str,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    **kwargs: Any,
) -> tuple[Any, Any]:
    """``(model, processor)`` for a hub id or folder whose ``config.model_type`` is in ``classes``
    (model type -> (model class, processor class)); the model is in ``eval`` mode on ``device``.

    ``kwargs`` go to every ``from_pretrained`` (``local_files_only``, ``revision``...). Raises
    ``OSError`` when the id cannot be found or downloaded, ``wrong_kind`` (naming the id, its
    type and ``example``) for another model type, and ``ImportError`` when the processor needs
    torchvision and it is missing (transformers 5's SAM-2 image processor does).
    """
    config = AutoConfig.from_pretrained(model_id_or_path, **kwargs)
    if config.model_type not in classes:
        raise wrong_kind(
            f"{model_id_or_path!r} is a {config.model_type!r} model; expected model_type in "
            f"{sorted(classes)} (e.g. {example})"
        )
    model_class, processor_class = classes[config.model_type]
    try:
        processor = processor_class.from_pretrained(model_id_or_path, **kwargs)
    except (ImportError, ValueError) as error:
        if "torchvision" not in str(error):
            raise
        raise ImportError(
            f"cannot load the image processor of {model_id_or_path!r} ({config.model_type}): "
            "it needs torchvision, which is not installed (or not importable) here"
        ) from error
    model = model_class.from_pretrained(
        model_id_or_path, dtype=dtype, device_map=torch.device(device), **kwargs
    )
    return model.eval(), processor

"""Subject masks: getting them (SAM clicks, text, a file, GrabCut fallback), mask tools, and the
report's pixel-space background weakening with brightness restores.

Masks are ``HxW float32`` in [0, 1], 1 = subject.
"""

from typing import TYPE_CHECKING

from pnpsam.lazy import lazy_exports
from pnpsam.masks.config import (
    DEFAULT_SAM_MODEL,
    DEFAULT_TEXT_MODEL,
    SAM_ALIASES,
    SUBJECT_FRACTION_RANGE,
    TOY_SAM_DIR,
    MaskConfig,
    PromptError,
    WeakenConfig,
    resolve_sam_name,
    validate_prompts,
)

if TYPE_CHECKING:
    from pnpsam.masks.files import (
        MaskFileError,
        load_mask_file,
        save_mask_png,
    )
    from pnpsam.masks.grabcut import (
        grabcut_from_prompts,
    )
    from pnpsam.masks.ops import (
        DoubtfulMaskWarning,
        EmptyMaskWarning,
        MaskCoverageError,
        check_mask_coverage,
        doubtful_selection,
        feather_mask,
        fill_mask_holes,
        grow_mask,
        invert_mask,
        largest_component,
        overlay_mask,
        resize_mask,
        subject_fraction,
    )
    from pnpsam.masks.sam import (
        NotASamModelError,
        SamPointSegmenter,
        SamPrediction,
    )
    from pnpsam.masks.select import (
        MaskMaker,
        SamUnavailableWarning,
        SubjectMask,
        finish_mask,
        make_subject_mask,
    )
    from pnpsam.masks.text import (
        Detection,
        NotATextSegmenterError,
        TextBoxDetector,
        TextSegmenter,
        load_text_selector,
        probability_to_mask,
        prompts_from_mask,
    )
    from pnpsam.masks.weaken import (
        DarknessStats,
        background_gain,
        luminance,
        measure_darkness,
        paste_background,
        restore_brightness,
        weaken_background,
    )

# The mask tools need OpenCV, SciPy and (SAM, text) transformers: imported on first use.
__getattr__ = lazy_exports(
    __name__,
    {
        "pnpsam.masks.files": (
            "MaskFileError",
            "load_mask_file",
            "save_mask_png",
        ),
        "pnpsam.masks.grabcut": ("grabcut_from_prompts",),
        "pnpsam.masks.ops": (
            "DoubtfulMaskWarning",
            "EmptyMaskWarning",
            "MaskCoverageError",
            "check_mask_coverage",
            "doubtful_selection",
            "feather_mask",
            "fill_mask_holes",
            "grow_mask",
            "invert_mask",
            "largest_component",
            "overlay_mask",
            "resize_mask",
            "subject_fraction",
        ),
        "pnpsam.masks.sam": (
            "NotASamModelError",
            "SamPointSegmenter",
            "SamPrediction",
        ),
        "pnpsam.masks.select": (
            "MaskMaker",
            "SamUnavailableWarning",
            "SubjectMask",
            "finish_mask",
            "make_subject_mask",
        ),
        "pnpsam.masks.text": (
            "Detection",
            "NotATextSegmenterError",
            "TextBoxDetector",
            "TextSegmenter",
            "load_text_selector",
            "probability_to_mask",
            "prompts_from_mask",
        ),
        "pnpsam.masks.weaken": (
            "DarknessStats",
            "background_gain",
            "luminance",
            "measure_darkness",
            "paste_background",
            "restore_brightness",
            "weaken_background",
        ),
    },
)

__all__ = [
    "DEFAULT_SAM_MODEL",
    "DEFAULT_TEXT_MODEL",
    "SAM_ALIASES",
    "SUBJECT_FRACTION_RANGE",
    "TOY_SAM_DIR",
    "DarknessStats",
    "Detection",
    "DoubtfulMaskWarning",
    "EmptyMaskWarning",
    "MaskConfig",
    "MaskCoverageError",
    "MaskFileError",
    "MaskMaker",
    "NotASamModelError",
    "NotATextSegmenterError",
    "PromptError",
    "SamPointSegmenter",
    "SamPrediction",
    "SamUnavailableWarning",
    "SubjectMask",
    "TextBoxDetector",
    "TextSegmenter",
    "WeakenConfig",
    "background_gain",
    "check_mask_coverage",
    "doubtful_selection",
    "feather_mask",
    "fill_mask_holes",
    "finish_mask",
    "grabcut_from_prompts",
    "grow_mask",
    "invert_mask",
    "largest_component",
    "load_mask_file",
    "load_text_selector",
    "luminance",
    "make_subject_mask",
    "measure_darkness",
    "overlay_mask",
    "paste_background",
    "probability_to_mask",
    "prompts_from_mask",
    "resize_mask",
    "resolve_sam_name",
    "restore_brightness",
    "save_mask_png",
    "subject_fraction",
    "validate_prompts",
    "weaken_background",
]

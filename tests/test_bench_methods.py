"""Method specs, sweeps and the summary statistics/tables (no models needed)."""

from __future__ import annotations

import math

import pytest

from pnpsam.bench.report import markdown_table, mean_ci, summarize
from pnpsam.config import EditConfig
from pnpsam.methods import MethodSpecError, parse_methods, sweep_methods


def test_specs_parse_names_and_yaml_values():
    pnp, sdedit, blocks, dotted = parse_methods(
        "pnp,sdedit:strength=0.5,pnp:attention_blocks=[4,5],scheme3:weaken.dim_factor=0.3"
    )
    assert (pnp.name, pnp.settings, pnp.own) == ("pnp", {}, {})
    assert sdedit.method_params() == {"strength": 0.5}
    assert blocks.settings == {"pnp": {"attention_blocks": [4, 5]}}
    assert dotted.settings == {"weaken": {"dim_factor": 0.3}}
    assert blocks.slug == "pnp__attention_blocks=_4_5_"


def test_methods_set_their_settings_and_specs_override_them():
    base = EditConfig()
    assert parse_methods("scheme1")[0].edit_config(base).pnp.start == "noise"
    blend = parse_methods("scheme2:blend_alpha=0.8")[0].edit_config(base).pnp
    assert (blend.injection, blend.blend_alpha) == ("blend", 0.8)
    blocks = parse_methods("pnp:attention_blocks=[4,5]")[0].edit_config(base).pnp
    assert blocks.attention_blocks == (4, 5)
    scheme3 = parse_methods("scheme3:dim_factor=0.25")[0].edit_config(base)
    assert (scheme3.weaken.background, scheme3.weaken.dim_factor) == ("dim", 0.25)
    assert scheme3.weaken.restore == "global" and not scheme3.pnp.mask_injection
    assert parse_methods("pnp:steps=7")[0].edit_config(base).pnp.steps == 7  # pnp first
    assert parse_methods("pnp:inversion.steps=7")[0].edit_config(base).inversion.steps == 7
    sdedit = parse_methods("sdedit:strength=0.3")[0].edit_config(base)
    assert (sdedit.pnp, sdedit.weaken) == (base.pnp, base.weaken)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("pnp,magic", "unknown method 'magic'"),
        ("pnp:strength=0.5", "unknown parameter 'strength'"),
        ("sdedit:strength", "expected key=value"),
        ("pnp,pnp", "listed twice"),
        ("", "no methods"),
    ],
)
def test_bad_specs_are_named(text, message):
    with pytest.raises(MethodSpecError, match=message):
        parse_methods(text)


def test_sweep_makes_one_method_per_value():
    swept = sweep_methods(parse_methods("pnp,scheme2"), "pnp_f_t", [0.2, 0.8])
    assert [s.label for s in swept] == [
        "pnp:pnp_f_t=0.2",
        "pnp:pnp_f_t=0.8",
        "scheme2:pnp_f_t=0.2",
        "scheme2:pnp_f_t=0.8",
    ]
    assert swept[1].edit_config(EditConfig()).pnp.pnp_f_t == 0.8


def test_mean_ci_is_the_student_t_interval():
    estimate = mean_ci([1.0, 2.0, 3.0, 4.0])
    half = 3.182446305 * math.sqrt(5 / 3) / 2  # t(0.975, 3) * sd / sqrt(n)
    assert estimate.mean == 2.5 and estimate.n == 4
    assert estimate.high - estimate.mean == pytest.approx(half, rel=1e-6)
    assert estimate.mean - estimate.low == pytest.approx(half, rel=1e-6)
    single = mean_ci([7.0, math.inf])  # inf (identical-image PSNR) is left out
    assert (single.mean, single.n) == (7.0, 1) and math.isnan(single.low)


def test_summary_uses_the_newest_row_and_counts_failures():
    rows = [
        {"method": "pnp", "item": "a", "prompt_index": 0, "status": "failed", "error": "x"},
        {"method": "pnp", "item": "a", "prompt_index": 0, "status": "ok", "structure": 0.01},
        {"method": "pnp", "item": "b", "prompt_index": 0, "status": "ok", "structure": 0.03},
        {"method": "pnp", "item": "c", "prompt_index": 0, "status": "failed", "error": "y"},
    ]
    (summary,) = summarize(rows, ["pnp"])
    assert (summary.items_ok, summary.items_failed) == (2, 1)
    assert summary.metrics["structure"].mean == pytest.approx(0.02)
    table = markdown_table([summary])
    assert "| structure ×10^3 ↓ |" in table
    assert "| pnp | 2 | 1 | 20.00 ± " in table  # x10^3 display scale

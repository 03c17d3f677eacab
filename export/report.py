"""The export report written beside the ``.net``: ``<stem>.report.json`` and ``.report.md``."""

from __future__ import annotations

import json
from pathlib import Path

from snn2loihi.atomic import atomic_path


def report_paths(net_path: str | Path) -> tuple[Path, Path]:
    """``model.net`` -> (``model.report.json``, ``model.report.md``)."""
    p = Path(net_path)
    return p.with_name(p.stem + ".report.json"), p.with_name(p.stem + ".report.md")


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return "x".join(map(str, value))
    return str(value)


def _rule(report: dict) -> str:
    """The report's prediction rule in words (reports written before it was recorded: the
    readout's v, the only rule export wrote then)."""
    from snn2loihi.readout import DESCRIPTIONS, READOUT_V

    rule = report.get("prediction", READOUT_V)
    return f"{DESCRIPTIONS[rule]}, first index on ties; rule '{rule}'"


def to_markdown(report: dict) -> str:
    """A human-readable Markdown rendering of the report dict."""
    lines = [
        f"# Export report: {report['net']}",
        "",
        f"- source: `{report.get('checkpoint') or report.get('onnx') or report.get('nir')}`",
        f"- time steps T: {report['steps']}, weight bits: {report['weight_bits']}",
        f"- input: {_fmt(report['input_shape'])} uint8 graded, "
        f"output: {_fmt(report['output_shape'])} (prediction: {_rule(report)})",
        "",
        "## Layers",
        "",
        *_layer_lines(report["layers"]),
    ]
    lines += ["", "## Headroom (24-bit u/v, limit 2^23)", ""]
    warnings = report["warnings"]
    lines += [f"- WARNING: {w}" for w in warnings] or ["- no layer can wrap u or saturate v"]
    lines += _coarse_grid_lines(report)
    lines += ["", "## Accuracy", ""]
    acc = report.get("accuracy")
    if acc is None:
        lines.append(f"- not measured: {report.get('accuracy_skipped', 'no data')}")
    else:
        lines += _accuracy_lines(acc)
    if "changes" in report:
        lines += ["", "## What the conversion changed", ""]
        lines += [f"- {c}" for c in report["changes"]] or [
            "- nothing: every neuron has its exact Loihi form"
        ]
    return "\n".join(lines) + "\n"


def _layer_lines(layers: list[dict]) -> list[str]:
    """The per-layer table (a row of empty cells for a layer without headroom figures)."""
    lines = [
        "| layer | type | shape | weight | scale | vThMant | weight range | clipped "
        "| max |W.s| | u peak | v peak +/- | headroom bits |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in layers:
        h = r.get("headroom")
        if h is None:
            lines.append(f"| {r['layer']} | {r['type']} | {_fmt(r['shape'])} |" + " |" * 9)
            continue
        lines.append(
            f"| {r['layer']} | {r['type']} | {_fmt(r['shape'])} | {_fmt(r['weight_shape'])} "
            f"| {_fmt(r['scale'])} | {r['vth_mant']} | [{r['weight_min']}, {r['weight_max']}] "
            f"| {_fmt(r['clipped_weights'])} | {h['a_max_mant']} | {h['u_peak']} "
            f"| {h['v_peak_pos']} / {h['v_peak_neg']} | {h['headroom_bits']} |"
        )
    return lines


def _accuracy_lines(acc: dict) -> list[str]:
    """The measured accuracies, the emulator's prediction mismatches and, for a NIR graph,
    the agreement of each pair of its forms."""
    named = (
        ("nir_reference_acc", "NIR graph, float reference"),
        ("loihi_form_float_acc", "NIR graph in Loihi's form, float (before quantization)"),
        ("emulator_acc", "emulator on the exported .net"),
        ("integer_snn_acc", "training's integer SNN branch"),
        ("ann_acc", "ONNX ANN"),
    )
    lines = [f"- split: {acc['split']} ({acc['samples']} samples)"]
    if "input" in acc:
        lines.append(f"- input: {acc['input']}")
    lines += [f"- {label}: {acc[key]:.4f}" for key, label in named if key in acc]
    vs = "NIR float reference" if "nir_reference_acc" in acc else "integer SNN"
    lines.append(
        f"- prediction mismatches (emulator vs {vs}): {acc['prediction_mismatches']} "
        f"({'equal' if acc['equal'] else 'NOT EQUAL'})"
    )
    pairs = (
        ("nir_reference_vs_loihi_form", "NIR float reference / Loihi form (float)"),
        ("nir_reference_vs_emulator", "NIR float reference / emulator"),
        ("loihi_form_vs_emulator", "Loihi form (float) / emulator"),
    )
    agreement = acc.get("agreement", {})
    lines += [
        f"- same prediction, {label}: {agreement[key]:.4f}"
        for key, label in pairs
        if key in agreement
    ]
    return lines


def _coarse_grid_lines(report: dict) -> list[str]:
    """The "Threshold grid" section: coarse layers, the measured agreement, what may help."""
    from snn2loihi.export.layer_table import COARSE_VTH_MANT

    coarse = report.get("coarse_grid") or []
    if not coarse:
        return []
    lines = ["", f"## Threshold grid (vThMant < {COARSE_VTH_MANT})", ""]
    for c in coarse:
        lines.append(
            f"- layer {c['layer']}: vThMant {c['vth_mant']}: one weight unit is "
            f"1/{c['vth_mant']} of the threshold, so its spikes follow the float network's only "
            f"as closely as that grid allows; {_grid_hint(c, report)}"
        )
    agreement = ((report.get("accuracy") or {}).get("agreement") or {}).get(
        "nir_reference_vs_emulator"
    )
    if agreement is not None:
        lines.append(f"- measured: same prediction as the float reference on {agreement:.4f}")
    return lines


def _grid_hint(coarse: dict, report: dict) -> str:
    """What sets a coarse layer's scale, and the option that refines it where there is one."""
    if coarse["weights_set_scale"]:
        if report["weight_bits"] < 9:
            return "its largest weight sets its scale: --weight-bits 9 doubles the grid"
        return "its largest weight sets its scale, at the 9-bit limit already"
    if coarse.get("first") and "nir" in report and not report.get("spike_input"):
        return (
            "its scale is set by its bias (13 bits) or by the bound on one step's input for "
            "graded inputs up to 255: --spike-input if the network takes spikes (0 or 1)"
        )
    return "its scale is set by its bias (13 bits) or its input bound, not by --weight-bits"


def write_report(
    report: dict, net_path: str | Path, *, overwrite: bool = True
) -> tuple[Path, Path]:
    """Write the JSON and Markdown reports atomically; return their paths."""
    json_path, md_path = report_paths(net_path)
    with atomic_path(json_path, overwrite=overwrite) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    with atomic_path(md_path, overwrite=overwrite) as tmp:
        tmp.write_text(to_markdown(report))
    return json_path, md_path

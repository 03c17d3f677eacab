"""Helpers of bench/device_run.sh.

``--pytest OUT.json -- ARGS``: run ``pytest ARGS`` and write its outcome per test as JSON (exit
code: pytest's). ``--status TSV --tag TAG --out DIR``: the status of every part
(``device_run_status_<tag>.json``) and a one-screen summary of the results, printed and saved as
``device_run_summary.txt`` in DIR.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from harness import machine, write_result

PARTS = ("tests", "emulator", "train_cost", "cifar")
TIMEOUT_CODES = (124, 137)  # `timeout` expired (TERM), or it had to KILL


def run_pytest(out: Path, args: list[str]) -> int:
    """``pytest args`` with a JUnit report, summarised as JSON in ``out``."""
    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / "junit.xml"
        t0 = time.perf_counter()
        rc = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", *args, f"--junitxml={xml}"]
        ).returncode
        wall = time.perf_counter() - t0
        tests = []
        if xml.is_file():
            for case in ET.parse(xml).getroot().iter("testcase"):
                outcome, message = "passed", ""
                for tag in ("failure", "error", "skipped"):
                    node = case.find(tag)
                    if node is not None:
                        outcome = {"failure": "failed", "error": "error"}.get(tag, tag)
                        message = (
                            (node.get("message") or "").splitlines()[0][:200]
                            if node.get("message")
                            else ""
                        )
                        break
                name = f"{case.get('classname', '').replace('.', '/')}.py::{case.get('name')}"
                tests.append({"test": name, "outcome": outcome, "message": message})
    counts = {
        k: sum(t["outcome"] == k for t in tests) for k in ("passed", "failed", "error", "skipped")
    }
    result = {
        "command": " ".join(["python -m pytest -q", *args]),
        "exit_code": rc,
        "wall_s": round(wall, 1),
        **counts,
        "tests": tests,
    }
    write_result(out, result)
    return rc


def _load(path: str) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def _tail(path: str, n: int = 3) -> list[str]:
    try:
        lines = Path(path).read_text(errors="replace").strip().splitlines()
    except OSError:
        return []
    return [line[:160] for line in lines[-n:]]


def part_status(rc: int, result_written: bool) -> str:
    if rc in TIMEOUT_CODES:
        return "timeout"
    if rc != 0:
        return "failed"
    return "ok" if result_written else "failed (no result file)"


def status(tsv: Path, tag: str, wall: int, started: float) -> dict:
    parts = {}
    for line in tsv.read_text().splitlines():
        name, rc, secs, limit, result, log = line.split("\t")
        written = Path(result).is_file() and Path(result).stat().st_mtime >= started
        st = part_status(int(rc), written)
        parts[name] = {
            "status": st,
            "exit_code": int(rc),
            "wall_s": int(secs),
            "limit_s": int(limit),
            "result": result if written else None,
            "log": log,
        }
        if st != "ok":
            parts[name]["log_tail"] = _tail(log)
    for name in PARTS:
        parts.setdefault(name, {"status": "not run"})
    return {
        "tag": tag,
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": machine(),
        "wall_s": wall,
        "all_ok": all(p["status"] == "ok" for p in parts.values()),
        "parts": parts,
    }


def _fmt(v, spec: str = ".1f") -> str:
    return "-" if v is None else format(v, spec)


def summary(st: dict) -> str:
    m = st["machine"]
    lines = [
        f"snn2loihi device run ({st['tag']}): {m.get('gpu') or 'no GPU'}, torch {m.get('torch')}, "
        f"{st['date']}, {st['wall_s']} s",
        f"{'part':<11} {'status':<24} {'time':>6} {'limit':>6}",
    ]
    for name, p in st["parts"].items():
        lines.append(
            f"{name:<11} {p['status']:<24} {p.get('wall_s', '-'):>5}s {p.get('limit_s', '-'):>5}s"
        )
    res = {name: _load(p["result"]) if p.get("result") else None for name, p in st["parts"].items()}
    # a. tests
    t = res.get("tests")
    if t:
        lines.append(
            f"CUDA tests: {t['passed']} passed, {t['failed']} failed, {t['error']} errors, "
            f"{t['skipped']} skipped ({t['wall_s']} s)"
        )
        lines += [
            f"  {x['outcome']}: {x['test']}"
            for x in t["tests"]
            if x["outcome"] in ("failed", "error")
        ][:4]
    # b. emulator
    e = res.get("emulator")
    if e:
        lines.append(f"emulator (T={e['steps']}): samples/s, x Lava speed-up, x float32 floor")
        for row in e["networks"]:
            lava = row.get("lava_samples_per_s", "FAILED") or "-"
            cells = [
                f"{r['device']} b{r['batch']}: {r['samples_per_s']:g} ({_fmt(r['speedup_vs_lava'], 'g')}x, "
                f"{r['x_float_floor']:g}x)"
                for r in row["emulator"]
            ]
            eq = row.get("outputs_equal")
            lines.append(f"  {row['network']:<6} Lava {lava}/s equal={eq}; " + "; ".join(cells))
    # c. training cost
    c = res.get("train_cost")
    if c:
        rows = [r for r in c["rows"] if "error" not in r]
        mem = (
            "cuda_max_allocated_mib"
            if any("cuda_max_allocated_mib" in r for r in rows)
            else "cpu_peak_rss_growth_mib"
        )
        variants = sorted({(r["bf16"], r["channels_last"]) for r in rows}, reverse=True)
        head = " | ".join(
            f"bf16 {'on' if b else 'off'} cl {'on' if cl else 'off'}" for b, cl in variants
        )
        lines.append(
            f"train cost, batch {rows[0]['batch'] if rows else '-'} (ms/iter, MiB): {head}"
        )
        for steps in sorted({r["steps"] for r in rows}):
            for method in dict.fromkeys(r["method"] for r in rows):
                cells = []
                for b, cl in variants:
                    hit = [
                        r
                        for r in rows
                        if (r["steps"], r["method"], r["bf16"], r["channels_last"])
                        == (steps, method, b, cl)
                    ]
                    cells.append(f"{hit[0]['ms_per_iter']:.1f} {hit[0][mem]:.0f}" if hit else "-")
                lines.append(f"  T={steps} {method:<8} " + " | ".join(cells))
        for r in c["rows"]:
            if "error" in r:
                lines.append(f"  FAILED {r['method']} T={r['steps']}: {r['error'][:100]}")
    # d. CIFAR
    f = res.get("cifar")
    if f:
        per = f["epoch_s"][1:] or f["epoch_s"]
        lines.append(
            f"cifar_fast: {f['epochs']} epochs of {f['train_file_samples']} images, "
            f"{sum(per) / len(per):.1f} s/epoch (-> {f['epochs_in_5_min']} epochs in 5 min), "
            f"emulator test {f['emulator_test_acc']:.2%} on {f['test_samples']} "
            f"(integer SNN {f['test_snn_acc']:.2%}, equal={f['emulator_equals_integer_snn']})"
        )
    for name, p in st["parts"].items():
        for line in p.get("log_tail", []):
            lines.append(f"  [{name}] {line}")
    return "\n".join(lines) + "\n"


def main() -> int:
    argv = sys.argv[1:]
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1 :]
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pytest", type=Path, help="run pytest (arguments after --), JSON here")
    p.add_argument("--status", type=Path, help="the status table device_run.sh wrote")
    p.add_argument("--tag", default="cuda")
    p.add_argument("--out", type=Path, default=Path("bench/results"))
    p.add_argument("--wall", type=int, default=0, help="seconds the whole run took")
    args = p.parse_args(argv)
    if args.pytest:
        return run_pytest(args.pytest, extra)
    if args.status is None:
        p.error("give --pytest or --status")
    started = time.time() - args.wall - 5
    st = status(args.status, args.tag, args.wall, started)
    write_result(args.out / f"device_run_status_{args.tag}.json", st)
    text = summary(st)
    write_result(args.out / "device_run_summary.txt", text)
    print(text, end="")
    return 0 if st["all_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

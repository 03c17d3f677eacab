"""Soak test: the tests that start processes, N times in a row while a CPU-heavy job runs.

    .venv/bin/python bench/soak_processes.py --rounds 20

Each round runs pytest on the process tests (Lava runs, signals, DDP, SIGKILL/resume) while
``--hogs`` busy-loop processes compete for the CPU; the rounds, their outcome and time go to
bench/results/soak_processes.json. Stops at the first failing round.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from harness import machine, write_result

ROOT = Path(__file__).resolve().parents[1]
TESTS = [
    "tests/test_lava_processes.py",
    "tests/test_signals.py",
    "tests/test_train_ddp.py",
    "tests/test_train_kill_resume.py",
]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--hogs", type=int, default=1, help="busy-loop processes beside the tests")
    args = p.parse_args()
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.hogs)]
    rounds = []
    try:
        for k in range(args.rounds):
            t0 = time.monotonic()
            res = subprocess.run(
                [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *TESTS],
                cwd=ROOT,
                capture_output=True,
                text=True,
            )
            tail = res.stdout.strip().splitlines()[-1] if res.stdout.strip() else ""
            rounds.append(
                {
                    "round": k + 1,
                    "exit": res.returncode,
                    "summary": tail,
                    "seconds": round(time.monotonic() - t0, 1),
                }
            )
            print(json.dumps(rounds[-1]), flush=True)
            if res.returncode != 0:
                print(res.stdout[-4000:], res.stderr[-2000:], flush=True)
                break
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    passed = sum(r["exit"] == 0 for r in rounds)
    out = {
        "command": f"python bench/soak_processes.py --rounds {args.rounds} --hogs {args.hogs}",
        "machine": machine(),
        "tests": TESTS,
        "rounds_passed_in_a_row": passed,
        "rounds": rounds,
    }
    write_result(ROOT / "bench" / "results" / "soak_processes.json", out)
    return 0 if passed == args.rounds else 1


if __name__ == "__main__":
    sys.exit(main())

"""decide() now against an earlier commit: the same workload, side by side, as a ratio.

Absolute times on a shared machine are noise; two trees timed in alternation, best of
several rounds each, are not. The earlier tree is taken from git (`git archive`), so
this needs a checkout. Usage: bench_engine_ratio.py [REF] (default: before the engine
work of issues 9, 10 and 14).

The workload (workload.py) meters what the relays draw, as a GX does, so both engines
see the same world and make the same decisions.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import report

REPO = Path(__file__).parent.parent
BEFORE = "82efd66"
SIZES = ((10, 2000), (100, 300), (1000, 40))
ROUNDS = 5


def _timings(tree: Path) -> list[float]:
    sizes = [f"{count}:{cycles}" for count, cycles in SIZES]
    env = {"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "bench/workload.py", *sizes],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return [float(v) for v in out.stdout.split()]


def main(ref: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        before = Path(tmp)
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", ref], capture_output=True, check=True
        )
        subprocess.run(["tar", "-x", "-C", str(before)], input=archive.stdout, check=True)
        shutil.copy(Path(__file__).parent / "workload.py", before / "bench" / "workload.py")
        best_before = [float("inf")] * len(SIZES)
        best_now = [float("inf")] * len(SIZES)
        for _ in range(ROUNDS):
            best_before = [min(a, b) for a, b in zip(best_before, _timings(before), strict=True)]
            best_now = [min(a, b) for a, b in zip(best_now, _timings(REPO), strict=True)]
    for (count, _), old, new in zip(SIZES, best_before, best_now, strict=True):
        report(f"decide_{count}_consumers_before_{ref}", old * 1e6, "us/cycle")
        report(f"decide_{count}_consumers_now", new * 1e6, "us/cycle")
        report(f"decide_{count}_consumers_ratio_now_to_before", new / old, "x")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else BEFORE)

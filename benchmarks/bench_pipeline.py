"""Per-quantum overhead of the pipeline runner: graph, registry and dispatch.

Runs ``skydiff demo`` once (simulate, ingest, run) in a temporary directory,
then times a second ``Pipeline.run`` over the finished repository: every
quantum is built from registry queries and found complete, so the time per
quantum is the runner's own overhead (graph + registry) without any task.
Registration cost is timed separately by re-registering the run's outputs
in a fresh registry transaction per quantum (what the driver does).

Usage: ``python benchmarks/bench_pipeline.py``
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from skydiff.pipeline import InProcessExecutor, Pipeline, PipelineConfig, Repository


def main() -> None:
    with tempfile.TemporaryDirectory() as name:
        out = Path(name) / "demo"
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "skydiff.cli", "demo", "-o", str(out)],
            check=True,
            capture_output=True,
        )
        demo_seconds = time.perf_counter() - start
        repo = Repository(out / "repo")
        config = PipelineConfig(
            steps=("warp", "match_backgrounds", "coadd", "template", "subtract"),
            template_visits=(1, 2, 3),
            science_visits=(4, 5, 6),
        )
        start = time.perf_counter()
        summary = Pipeline(repo, config).run(executor=InProcessExecutor(), progress=False)
        rerun = time.perf_counter() - start
        n = summary.count("skipped")
        refs = repo.query("difference")
        start = time.perf_counter()
        for ref in refs:
            repo.register(ref, inputs=(), config=None, overwrite=True)
        register = (time.perf_counter() - start) / len(refs)
    print("| measure | value |")
    print("|---|---|")
    print(f"| whole demo (simulate, ingest, run, score) | {demo_seconds:.1f} s |")
    print(f"| graph + registry checks per quantum ({n} quanta) | {1000 * rerun / n:.1f} ms |")
    print(f"| registering one output | {1000 * register:.1f} ms |")


if __name__ == "__main__":
    main()

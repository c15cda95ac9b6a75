"""The examples in examples/ do what their READMEs say."""

import json
import os

from conftest import REPO, wait_for


def test_incremental_analysis_sweeps_every_module_once_and_exports_findings(rota):
    modules = sorted(f"src/{d}/" for d in os.listdir(os.path.join(REPO, "src"))
                     if os.path.isdir(os.path.join(REPO, "src", d)))
    rota.ok("schedule", "add", "analyse", "--every", "200ms", "--cwd", REPO, "--over", "src/*/",
            "--", "python3", "examples/incremental-analysis/analyse.py", "{}")

    def one_cycle_done():
        rows = [json.loads(line) for line in
                rota.ok("results", "--schedule", "analyse", "--format", "jsonl").splitlines()]
        return rows if len(rows) >= len(modules) else None

    rows = wait_for(one_cycle_done, timeout=30, message="a run of every module")
    first_cycle = rows[: len(modules)]
    assert sorted(r["item"] for r in first_cycle) == modules
    for r in first_cycle:
        assert r["state"] == "succeeded", r
        assert r["result"]["module"] == r["item"]
        assert r["result"]["files"] > 0 and r["result"]["lines"] > 0

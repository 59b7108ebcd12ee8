"""The benchmark harness runs end to end at a trivial scale and writes its report.

Nothing here asserts a speed (machines are noisy); it asserts that every workload ran
against both servers, nothing failed, and the result files are there.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WORKLOADS = ("get_task", "list_tasks", "create_task", "update_status")


def test_benchmark_runs_end_to_end_with_zero_errors(tmp_path: Path) -> None:
    out = tmp_path / "results"
    completed = subprocess.run(
        [
            sys.executable, "-m", "bench",
            "--tasks", "300", "--projects", "3",
            "--duration", "0.5", "--warmup", "0.1", "--connections", "4",
            "--scale", "300", "--settle", "0.5", "--drain-timeout", "60",
            "--workloads", ",".join(WORKLOADS),
            "--output-dir", str(out),
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=400, check=False,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]

    [result_file] = [p for p in out.glob("*.json")]
    document = json.loads(result_file.read_text())
    assert document["summary"]["errors"] == 0, document["notes"]
    assert [row["workload"] for row in document["results"]] == list(WORKLOADS)
    for row in document["results"]:
        assert row["platform"]["requests"] > 0, row["workload"]
        assert row["ceiling"]["requests"] > 0, row["workload"]
        assert row["ratio"] is not None
    assert [row["project_tasks"] for row in document["scaling"]] == [300]
    assert document["config"]["seeded"] == {"tasks": 300, "projects": 3}
    assert document["git"]["commit"]

    latest = (out / "latest.md").read_text()
    assert latest == result_file.with_suffix(".md").read_text()
    assert "| get_task | read |" in latest
    assert "ceiling req/s" in latest
    assert "List scaling" in latest
    assert "| workload |" in completed.stdout

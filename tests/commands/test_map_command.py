"""``tvm-sparse map``: a plan per layer written as JSON, and errors named, as a user runs it."""

import json

from tests.commands.cli_process import run_cli
from tvm_sparse.plan import load_plan


def test_map_by_rules_writes_the_plan_and_the_report(tmp_path):
    plan_path, report_path = tmp_path / "plan.json", tmp_path / "report.json"
    # the generic x86 profile gives 3x3 layers on large maps patterns (R4), on any host
    result = run_cli("map", "resnet18", "--target", "llvm -mcpu=x86-64", "--compression", "8", "-o", str(plan_path),
                     "--report-json", str(report_path))
    assert result.returncode == 0, result.stderr
    plan = load_plan(plan_path)
    report = json.loads(report_path.read_text())["layers"]
    assert [row["name"] for row in report if row["choice"] != "dense"] == sorted(plan, key=[r["name"] for r in report].index)
    assert report[0]["name"] == "conv1.weight" and report[0]["reason"].startswith("R1")
    assert "R4: 3x3 on a 1024-pixel map (> 16): pattern" in result.stdout and f"wrote {plan_path}" in result.stdout


def test_map_names_bad_requests(tmp_path, program):
    out = str(tmp_path / "plan.json")
    for arguments, message in [
        (("resnet18", "--method", "search", "--latency-ms", "5", "-o", out), "pass calibration batches"),
        (("resnet18", "--rpc-key", "phone", "-o", out), "--rpc-tracker and --rpc-key go together"),
        ((str(program), "-o", out), "a saved program has no layers"),
        (("resnet18", "--compression", "5000", "-o", out), "out of reach"),  # the stem and head stay dense
    ]:
        result = run_cli("map", *arguments)
        assert result.returncode == 1 and message in result.stderr, (arguments, result.stderr)

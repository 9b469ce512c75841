"""The mapping benchmarks' reports: ratios against the uniform plans, prediction errors and drift."""

from tvm_sparse.bench import mapping, mapping_accuracy


def test_the_latency_report_compares_with_the_best_uniform_plan_and_names_the_drift():
    row = {"model": "resnet18", "threads": 1, "compression": 8.8, "predicted_ms": 1.1,
           "milliseconds": {"uniform pattern": 3.0, "uniform block-punched 8x4": 2.0, "mapped (rules)": 2.5,
                            "mapped (search)": 1.0, mapping.REFERENCE: 0.8, mapping.DENSE: 10.0},
           "compressions": dict.fromkeys(["uniform pattern", "uniform block-punched 8x4", "mapped (rules)",
                                          "mapped (search)", mapping.REFERENCE, mapping.DENSE], 9.0),
           "mapping_seconds": {"rules": 0.01, "search": 100.0}, "errors": {},
           "reference_calibrated_ms": 0.6, "refitted_predicted_ms": 0.95}
    row["errors"] = dict.fromkeys(row["milliseconds"], 1e-7)
    lines = mapping.format_rows([row])
    search = next(line for line in lines if line.lstrip().startswith("mapped (search)"))
    assert "2.00x vs uniform block-punched 8x4" in search
    assert "the rules' plan runs at 40% of the search's speed" in lines[-4]
    assert "predicted 1.100 ms, measured 1.000 ms (+10.0%)" in lines[-3]
    assert "0.600 ms when the table was calibrated, 0.800 ms now (-25.0%" in lines[-2]
    assert "0.950 ms (-5.0%: the prediction without the drift)" in lines[-1]


def test_the_accuracy_report_compares_each_mapped_plan_with_its_uniform_plan():
    results = [mapping_accuracy.PlanResult("uniform pattern", [80.0, 82.0, 81.0], 2.0, 8.0, 0.3, None, 1e-7),
               mapping_accuracy.PlanResult("mapped at the cost of uniform pattern", [81.0, 83.0, 80.0], 1.6, 9.0,
                                           0.29, 1.5, 1e-7)]
    lines = mapping_accuracy.format_rows(results)
    assert "accuracy  81.00%" in lines[0] and "accuracy  81.00%" in lines[1]
    assert "vs uniform pattern: 1.25x faster, accuracy +0.00 points" in lines[2]
    assert "predicted 1.500 ms (-6.2%)" in lines[2]

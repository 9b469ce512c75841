"""``--json`` and ``--plot`` of the measuring commands, each on its smallest case."""

import json

import pytest

from tvm_sparse.cli import main

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _outputs(tmp_path, name):
    return tmp_path / f"{name}.json", tmp_path / f"{name}.png", ["--json", str(tmp_path / f"{name}.json"),
                                                                 "--plot", str(tmp_path / f"{name}.png")]


def _is_png(path):
    return path.read_bytes()[:8] == PNG_SIGNATURE and path.stat().st_size > 5000


def test_bench_kernels_writes_its_rows_and_the_speed_up_plot(tmp_path):
    json_path, png_path, options = _outputs(tmp_path, "kernels")
    assert main(["bench", "kernels", "--layer", "mobilenetv2-1x1-32to192x28", "--density", "0.1", "0.5",
                 "--threads", "1", "--rounds", "1", *options]) == 0
    data = json.loads(json_path.read_text())
    assert [row["layer"] for row in data["timings"]] == ["mobilenetv2-1x1-32to192x28@0.1",
                                                         "mobilenetv2-1x1-32to192x28@0.5"]
    for row in data["timings"]:
        assert {"compact", "onnxruntime", "pytorch", "tvm_dense"} <= set(row["median_ms"])
        assert row["speedup"] > 0 and row["flop_reduction"] > 1 and row["scheme"] == "bsr"
    assert data["timings"][0]["flop_reduction"] > data["timings"][1]["flop_reduction"]
    assert _is_png(png_path)


def test_prune_report_writes_every_recipe_and_scheme(tmp_path):
    json_path, png_path, options = _outputs(tmp_path, "prune")
    assert main(["prune-report", "--epochs", "1", "--finetune-epochs", "1", "--admm-epochs", "1", "--repeats", "1",
                 *options]) == 0
    (digits,) = json.loads(json_path.read_text())["datasets"]
    assert digits["name"] == "digits"
    assert list(digits["cost"]) == ["dense training", "ClickTrain (during training)", "magnitude + fine-tune (after)",
                                    "ADMM + fine-tune (after)"]
    assert digits["cost"]["dense training"]["compression"] == 1.0
    assert len(digits["schemes"]) == 5
    for methods in digits["schemes"].values():
        for m in methods.values():
            assert 0 <= m["accuracy"] <= 100 and m["seconds"] > 0 and m["compression"] > 1
    assert _is_png(png_path)


@pytest.mark.slow
def test_bench_models_writes_each_runtime(tmp_path):
    json_path, png_path, options = _outputs(tmp_path, "models")
    assert main(["bench", "models", "--model", "mobilenet_v2", "--threads", "1", "--rounds", "1", *options]) == 0
    (row,) = json.loads(json_path.read_text())["timings"]
    assert row["model"] == "mobilenet_v2" and row["threads"] == 1
    assert {"tvm_sparse", "pytorch", "onnxruntime"} <= set(row["median_ms"])
    assert _is_png(png_path)


@pytest.mark.slow
def test_bench_model_writes_each_runtime(tmp_path):
    json_path, png_path, options = _outputs(tmp_path, "model")
    assert main(["bench", "model", "--model", "mobilenet_v2", "--threads", "1", "--rounds", "1", *options]) == 0
    data = json.loads(json_path.read_text())
    (row,) = data["timings"]
    assert {"tvm_sparse", "tvm_sparse dense", "pytorch", "onnxruntime"} <= set(row["median_ms"])
    assert data["prepared"][0]["routed"] >= 1
    (speedup,) = data["speedups"]
    assert speedup["ideal_speedup"] == data["prepared"][0]["ideal_speedup"] > 1
    assert speedup["fraction_of_ideal"] == pytest.approx(speedup["speedup"] / speedup["ideal_speedup"])
    assert _is_png(png_path)

"""Schemes, plan JSON and plan verification (numpy only, like the compiler side that reads plans)."""

import json
import subprocess
import sys

import numpy as np
import pytest

from tvm_sparse.plan import (
    BlockPunchedScheme,
    BSRScheme,
    FilterScheme,
    PatternScheme,
    PlanError,
    SchemeError,
    UnstructuredScheme,
    candidate_patterns,
    kept_count,
    load_plan,
    plan_from_json,
    plan_to_json,
    save_plan,
    scheme_from_dict,
    scheme_to_dict,
    verify_plan,
)

LIBRARY = candidate_patterns(4, True)[[0, 5, 11, 20, 30, 40, 50, 55]]


def test_plan_module_does_not_import_torch():
    code = "import sys, tvm_sparse.plan; print('torch' in sys.modules, 'tvm' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: PatternScheme(entries=3), "entries"),
        (lambda: PatternScheme(library_size=5), "library_size"),
        (lambda: PatternScheme(connectivity=1.0), "connectivity"),
        (lambda: PatternScheme(connectivity=-0.1), "connectivity"),
        (lambda: PatternScheme(keep_centre=1), "keep_centre"),
        (lambda: PatternScheme(library=LIBRARY[:4]), r"shape \(8, 3, 3\)"),
        (lambda: PatternScheme(library_size=4, library=candidate_patterns(5, True)[:4]), "keeps 5 entries"),
        (lambda: PatternScheme(library_size=4, library=np.stack([LIBRARY[0]] * 4)), "distinct"),
        (lambda: PatternScheme(library_size=4, library=candidate_patterns(4, False)[:4]), "drops the centre"),
        (lambda: PatternScheme(library_size=4, library=LIBRARY[:4] * 2), "0 or 1"),
        (lambda: BlockPunchedScheme(block=(0, 4)), "block"),
        (lambda: BlockPunchedScheme(block=(8,)), "block"),
        (lambda: BlockPunchedScheme(block=8), "block must be two positive integers"),
        (lambda: BlockPunchedScheme(sparsity=1.0), "sparsity"),
        (lambda: BSRScheme(block=(4, 2.5)), "block"),
        (lambda: BSRScheme(sparsity="0.5"), "sparsity"),
        (lambda: UnstructuredScheme(sparsity=2), "sparsity"),
        (lambda: FilterScheme(sparsity=-1), "sparsity"),
    ],
)
def test_invalid_schemes_raise_naming_the_problem(make, message):
    with pytest.raises(SchemeError, match=message):
        make()


def test_candidate_patterns_count_and_centre():
    assert len(candidate_patterns(4, True)) == 56  # C(8, 3)
    assert len(candidate_patterns(4, False)) == 126  # C(9, 4)
    assert len(candidate_patterns(5, True)) == 70  # C(8, 4)
    with_centre = candidate_patterns(5, True)
    assert (with_centre[:, 1, 1] == 1).all() and (with_centre.reshape(-1, 9).sum(1) == 5).all()


def test_compression_of_each_scheme():
    assert PatternScheme(entries=4, connectivity=0.5).compression == pytest.approx(4.5)
    assert PatternScheme(entries=5).compression == pytest.approx(1.8)
    assert BlockPunchedScheme(sparsity=0.875).compression == pytest.approx(8)
    assert BSRScheme(sparsity=0.75).compression == pytest.approx(4)


ALL_SCHEMES = [
    PatternScheme(entries=4, library_size=8, keep_centre=True, connectivity=0.3, library=LIBRARY),
    PatternScheme(entries=5, library_size=4, keep_centre=False, connectivity=0.0),
    BlockPunchedScheme(block=(8, 4), sparsity=0.75),
    BlockPunchedScheme(block=[4, 2], sparsity=0.5),
    BSRScheme(block=(1, 4), sparsity=0.9),
    UnstructuredScheme(sparsity=0.8),
    FilterScheme(sparsity=0.25),
]


@pytest.mark.parametrize("scheme", ALL_SCHEMES, ids=lambda s: s.name)
def test_scheme_dict_round_trip(scheme):
    config = scheme_to_dict(scheme)
    assert config["scheme"] == scheme.name
    assert scheme_from_dict(json.loads(json.dumps(config))) == scheme


def test_plan_json_and_file_round_trip(tmp_path):
    plan = {f"layer{i}.weight": scheme for i, scheme in enumerate(ALL_SCHEMES)}
    assert plan_from_json(plan_to_json(plan)) == plan
    save_plan(plan, tmp_path / "plan.json")
    loaded = load_plan(tmp_path / "plan.json")
    assert loaded == plan
    assert np.array_equal(loaded["layer0.weight"].library_array(), LIBRARY)
    raw = json.loads((tmp_path / "plan.json").read_text())
    assert raw["layer3.weight"] == {"scheme": "block_punched", "block": [4, 2], "sparsity": 0.5}
    assert len(raw["layer0.weight"]["library"]) == 8


@pytest.mark.parametrize(
    "text, message",
    [
        ("not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ('{"a.weight": {"scheme": "diagonal"}}', "a.weight: unknown scheme 'diagonal'"),
        ('{"a.weight": {"scheme": "bsr", "blocks": [4, 4]}}', r"a.weight: bsr: unknown field\(s\) \['blocks'\]"),
        ('{"a.weight": {"sparsity": 0.5}}', "a.weight: a scheme config must be a dict with a 'scheme' key"),
        ('{"a.weight": {"scheme": "pattern", "entries": 7}}', "a.weight: pattern: entries"),
        ('{"a.weight": {"scheme": "bsr", "block": 4, "sparsity": 0.5}}', "a.weight: bsr: block must be two positive integers, got 4"),
        ('{"a.weight": {"scheme": "bsr", "block": null, "sparsity": 0.5}}', "a.weight: bsr: block must be two positive integers, got None"),
        ('{"a.weight": {"scheme": "block_punched", "block": "4x1"}}', "block must be two positive integers, got '4x1'"),
        ('{"a.weight": {"scheme": "block_punched", "block": [4.0, 1]}}', r"block must be two positive integers, got \[4.0, 1\]"),
        ('{"a.weight": {"scheme": "block_punched", "sparsity": NaN}}', "a.weight: block_punched: sparsity must be a number in \\[0, 1\\), got nan"),
        ('{"a.weight": {"scheme": "block_punched", "sparsity": "0.5"}}', "sparsity must be a number"),
        ('{"a.weight": {"scheme": "pattern", "connectivity": Infinity}}', "connectivity must be a number in"),
        ('{"a.weight": {"scheme": ["bsr"]}}', r"a.weight: unknown scheme \['bsr'\]"),
        ('{"a.weight": "bsr"}', "a scheme config must be a dict"),
    ],
)
def test_malformed_plans_raise(text, message):
    with pytest.raises(PlanError, match=message):
        plan_from_json(text)


def test_load_plan_missing_file(tmp_path):
    with pytest.raises(PlanError, match="no plan file"):
        load_plan(tmp_path / "nope.json")


def _pattern_weight(rng, shape, library, connectivity):
    k, c = shape[:2]
    ids = rng.integers(len(library), size=(k, c))
    weight = rng.standard_normal((k, c, 3, 3)).astype(np.float32) * library[ids]
    removed = rng.permutation(k * c)[: k * c - kept_count(k * c, connectivity)]
    weight.reshape(k * c, 9)[removed] = 0
    return weight


def _block_punched_weight(rng, shape, block, sparsity):
    k, c, r, s = shape
    (bk, bc), weight = block, rng.standard_normal(shape).astype(np.float32)
    for k0 in range(0, k, bk):
        for c0 in range(0, c, bc):
            columns = min(bc, c - c0) * r * s
            drop = rng.permutation(columns)[: columns - kept_count(columns, sparsity)]
            tile = weight[k0 : k0 + bk, c0 : c0 + bc].reshape(-1, columns)  # a view: rows x columns
            tile[:, drop] = 0
            weight[k0 : k0 + bk, c0 : c0 + bc] = tile.reshape(weight[k0 : k0 + bk, c0 : c0 + bc].shape)
    return weight


def _bsr_weight(rng, shape, block, sparsity):
    (bh, bw), (k, c) = block, shape
    grid = (-(-k // bh), -(-c // bw))
    keep = np.zeros(grid[0] * grid[1], dtype=np.float32)
    keep[rng.permutation(keep.size)[: kept_count(keep.size, sparsity)]] = 1
    dense_mask = np.kron(keep.reshape(grid), np.ones(block, dtype=np.float32))[:k, :c]
    return rng.standard_normal(shape).astype(np.float32) * dense_mask


@pytest.fixture
def structured():
    rng = np.random.default_rng(0)
    pattern = PatternScheme(library=LIBRARY, connectivity=0.6)
    block = BlockPunchedScheme(block=(8, 4), sparsity=0.75)
    bsr = BSRScheme(block=(4, 4), sparsity=0.75)
    weights = {
        "conv.weight": _pattern_weight(rng, (16, 12), LIBRARY, 0.6),
        "edge.weight": _block_punched_weight(rng, (12, 6, 3, 3), (8, 4), 0.75),
        "fc.weight": _bsr_weight(rng, (30, 18), (4, 4), 0.75),
        "un.weight": rng.standard_normal((8, 8)).astype(np.float32) * (rng.random((8, 8)) < 0.2),
        "filt.weight": rng.standard_normal((8, 4, 3, 3)).astype(np.float32) * (np.arange(8) < 4)[:, None, None, None],
        "dense.bias": np.ones(3, dtype=np.float32),
    }
    plan = {
        "conv.weight": pattern,
        "edge.weight": block,
        "fc.weight": bsr,
        "un.weight": UnstructuredScheme(sparsity=0.75),
        "filt.weight": FilterScheme(sparsity=0.5),
    }
    return plan, weights


def test_verify_accepts_weights_with_the_structure(structured):
    plan, weights = structured
    verify_plan(plan, weights)


def test_verify_rejects_each_kind_of_mismatch(structured):
    plan, weights = structured
    rng = np.random.default_rng(1)
    broken = dict(weights)
    broken["conv.weight"] = weights["conv.weight"].copy()
    broken["conv.weight"][0, 0] = 1.0  # a full 3x3 kernel matches no 4-entry pattern
    broken["edge.weight"] = weights["edge.weight"].copy()
    broken["edge.weight"][0, 0] = 1.0  # columns kept in row 0 only
    broken["fc.weight"] = rng.standard_normal((30, 18)).astype(np.float32)  # every block kept
    broken["un.weight"] = np.ones((8, 8), dtype=np.float32)
    broken["filt.weight"] = np.ones((8, 4, 3, 3), dtype=np.float32)
    with pytest.raises(PlanError) as info:
        verify_plan(plan, broken)
    message = str(info.value)
    assert "conv.weight: not pattern-structured" in message
    assert "edge.weight: not block_punched-structured" in message
    assert "fc.weight: 40 of 40 blocks are non-zero but sparsity 0.75 allows 10" in message
    assert "un.weight: 64 of 64 weights are non-zero" in message
    assert "filt.weight: 8 of 8 filters are non-zero but sparsity 0.5 allows 4" in message


def test_verify_rejects_missing_tensors_shapes_rates_and_libraries(structured):
    plan, weights = structured
    with pytest.raises(PlanError, match="missing.weight: the plan names this tensor but the weights have no such tensor"):
        verify_plan({"missing.weight": FilterScheme(0.5)}, weights)
    with pytest.raises(PlanError, match=r"fc.weight: not pattern-structured: .*\[K, C, 3, 3\]"):
        verify_plan({"fc.weight": PatternScheme(library=LIBRARY)}, weights)
    with pytest.raises(PlanError, match=r"conv.weight: not bsr-structured"):
        verify_plan({"conv.weight": BSRScheme()}, weights)
    with pytest.raises(PlanError, match="77 of 192 kernels are non-zero but connectivity 0.9 allows 20"):
        verify_plan({"conv.weight": PatternScheme(library=LIBRARY, connectivity=0.9)}, weights)
    with pytest.raises(PlanError, match=r"block \(0, 0\) keeps 9 of 36 columns; sparsity 0.9 allows 4"):
        verify_plan({"edge.weight": BlockPunchedScheme(sparsity=0.9)}, weights)
    with pytest.raises(PlanError, match="has no library"):
        verify_plan({"conv.weight": PatternScheme(connectivity=0.6)}, weights)
    with pytest.raises(PlanError, match="is not a scheme"):
        verify_plan({"conv.weight": {"scheme": "pattern"}}, weights)


def test_verify_uses_the_plans_library(structured):
    plan, weights = structured
    other = candidate_patterns(4, True)[[1, 2, 3, 4, 6, 7, 8, 9]]
    with pytest.raises(PlanError, match="match no pattern of the library"):
        verify_plan({"conv.weight": PatternScheme(library=other, connectivity=0.6)}, weights)

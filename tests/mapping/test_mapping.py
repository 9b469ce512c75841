"""Per-layer scheme mapping: the rules' decisions, the latency table (here, over RPC, resumed), and
map -> prune -> compile giving PyTorch's output."""

import numpy as np
import pytest
import torch
from torch import nn

import tvm_sparse
from tvm_sparse.mapping.candidates import candidates_for, density
from tvm_sparse.mapping.keys import candidate_key
from tvm_sparse.mapping.latency import CALL, LatencyTable, LatencyTableError, Timer, measure_table
from tvm_sparse.mapping.layers import find_layers
from tvm_sparse.mapping.mapper import map_schemes
from tvm_sparse.mapping.rules import FLOOR_RATE_TOLERANCE, MIN_KEPT, map_by_rules
from tvm_sparse.mapping.solver import InfeasibleBudget
from tvm_sparse.models import build_model
from tvm_sparse.plan import BlockPunchedScheme, PatternScheme, verify_plan
from tvm_sparse.pruning.sparsifier import MagnitudeSparsifier
from tvm_sparse.runtime_threads import default_thread_count


class EveryKind(nn.Module):
    """A stem, wide and narrow 3x3 layers, a 3x3 on a small map, 1x1, 5x5, depthwise, dilated, linear."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.wide = nn.Conv2d(16, 32, 3, padding=1)
        self.pointwise = nn.Conv2d(32, 32, 1)
        self.five = nn.Conv2d(32, 32, 5, padding=2)
        self.depthwise = nn.Conv2d(32, 32, 3, padding=1, groups=32)
        self.dilated = nn.Conv2d(32, 32, 3, padding=2, dilation=2)
        self.down = nn.Conv2d(32, 64, 3, stride=2, padding=1)
        self.small_map = nn.Conv2d(64, 64, 3, stride=2, padding=1)
        self.head = nn.Linear(64, 2048)
        self.tiny_head = nn.Linear(2048, 10)

    def forward(self, x):
        for layer in (self.stem, self.wide, self.pointwise, self.five, self.depthwise, self.dilated, self.down,
                      self.small_map):
            x = torch.relu(layer(x))
        return self.tiny_head(self.head(x.mean(dim=(2, 3))))


@pytest.fixture(scope="module")
def every_kind():
    torch.manual_seed(0)
    return EveryKind().eval(), torch.randn(1, 3, 16, 16)


def rules_text(mapping, layer):
    return next(row.reason for row in mapping.report if row.name == f"{layer}.weight")


def test_rules_follow_the_documented_table(every_kind):
    model, example = every_kind
    mapping = map_schemes(model, example, "llvm -mcpu=x86-64", "rules", compression=4)  # generic x86: 3x3 patterns
    rules = {row.name: row.reason.split(":")[0] for row in mapping.report}
    assert rules == {"stem.weight": "R1", "wide.weight": "R4", "pointwise.weight": "R5", "five.weight": "R6",
                     "depthwise.weight": "R1", "dilated.weight": "R1", "down.weight": "R4",
                     "small_map.weight": "R3", "head.weight": "R5", "tiny_head.weight": "R2"}
    assert isinstance(mapping.plan["wide.weight"], PatternScheme)
    assert isinstance(mapping.plan["small_map.weight"], BlockPunchedScheme)
    assert isinstance(mapping.plan["pointwise.weight"], BlockPunchedScheme)
    assert mapping.plan["pointwise.weight"].block[0] == 8 and "block-punched" in rules_text(mapping, "pointwise")
    on_arm = map_schemes(model, example, "llvm -mtriple=aarch64-linux-gnu", "rules", compression=4)
    assert isinstance(on_arm.plan["pointwise.weight"], BlockPunchedScheme)
    assert on_arm.plan["pointwise.weight"].block[0] == 4  # the family's narrow block: 8x1 on x86, 4x1 on ARM
    assert set(mapping.plan) == {name for name, rule in rules.items() if rule not in ("R1", "R2")}
    layers = find_layers(model, example)
    kept = sum(layer.parameters * row.kept for layer, row in zip(layers, mapping.report))
    assert sum(layer.parameters for layer in layers) / kept == pytest.approx(4, rel=0.02)


@pytest.mark.parametrize("compression", [4, 8, 16])
def test_rules_prune_a_layer_by_its_output_map(compression):
    """Each pruned layer keeps ``c / output pixels`` (at least MIN_KEPT), up to its block's whole columns."""
    model, example = build_model("resnet18").eval(), torch.randn(1, 3, 32, 32)
    layers = {layer.name: layer for layer in find_layers(model, example)}
    mapping = map_schemes(model, example, "llvm -mcpu=rocketlake", "rules", compression=compression)
    pruned = [row for row in mapping.report if row.choice != "dense"]
    above_floor = [row for row in pruned if "the floor" not in row.reason]
    assert above_floor, "the layers on the smallest maps keep more than the floor"
    constants = [row.kept * layers[row.name].output_pixels for row in above_floor]
    # one constant c, up to the blocks' whole columns
    assert max(constants) / min(constants) < 1.1
    spread = (1 + FLOOR_RATE_TOLERANCE) / (1 - FLOOR_RATE_TOLERANCE)  # layers at the floor keep narrow blocks
    for row in pruned:
        assert row.kept >= MIN_KEPT * (1 - FLOOR_RATE_TOLERANCE)
        larger_maps = [other.kept for other in pruned if layers[other.name].output_pixels > layers[row.name].output_pixels]
        assert all(kept <= row.kept * spread for kept in larger_maps)
    kept = sum(layers[row.name].parameters * row.kept for row in mapping.report)
    assert sum(layer.parameters for layer in layers.values()) / kept == pytest.approx(compression, rel=0.02)


def test_layers_at_the_floor_keep_the_familys_block_when_its_columns_come_near():
    """ResNet-18 on Zen 4 (R3 for every 3x3 layer): its 3x3 layers at the floor keep 8x4 blocks
    (2 of 36 columns for 5%); 1x1 layers, whose 8x1 block has one column, are widened."""
    model, example = build_model("resnet18").eval(), torch.randn(1, 3, 32, 32)
    layers = {layer.name: layer for layer in find_layers(model, example)}
    mapping = map_schemes(model, example, "llvm -mcpu=znver4", "rules", compression=8)
    at_floor = {row.name for row in mapping.report if "the floor" in row.reason}
    assert len(at_floor) >= 10
    for name in at_floor:
        scheme = mapping.plan[name]
        assert isinstance(scheme, BlockPunchedScheme)
        assert abs(density(scheme) - MIN_KEPT) <= FLOOR_RATE_TOLERANCE * MIN_KEPT
        if layers[name].kernel_size == (3, 3):
            assert scheme.block == (8, 4), name
        else:
            assert scheme.block[0] == 8 and scheme.block[1] > 1, name


def test_a_rate_above_the_profiles_density_leaves_the_layer_dense(every_kind):
    model, example = every_kind
    mapping = map_schemes(model, example, "llvm -mcpu=rocketlake", "rules", compression=1.3)
    rows = {row.name: row for row in mapping.report}
    assert rows["head.weight"].reason.startswith("R7: ") and "largest density 0.6" in rows["head.weight"].reason
    assert "head.weight" not in mapping.plan
    layers = find_layers(model, example)
    kept = sum(layer.parameters * rows[layer.name].kept for layer in layers)
    assert sum(layer.parameters for layer in layers) / kept >= 1.3


def test_a_profile_without_pattern_layers_gives_every_3x3_layer_blocks(every_kind):
    """Profiles with ``pattern_3x3_min_pixels=None`` (Rocket Lake, Emerald Rapids, Zen 3 to 5): R3 takes every prunable 3x3 layer."""
    model, example = every_kind
    for cpu in ("rocketlake", "emeraldrapids", "znver3", "znver4", "znver5"):
        mapping = map_schemes(model, example, f"llvm -mcpu={cpu}", "rules", compression=4)
        rows = {row.name: row for row in mapping.report}
        for name in ("wide.weight", "down.weight", "small_map.weight"):
            assert rows[name].reason.startswith(f"R3: 3x3, the {cpu} profile gives no 3x3 layer a pattern")
            assert isinstance(mapping.plan[name], BlockPunchedScheme)


def test_rules_refuse_a_compression_the_dense_layers_forbid(every_kind):
    model, example = every_kind
    with pytest.raises(ValueError, match="out of reach"):
        map_schemes(model, example, "llvm", "rules", compression=1000)


#: Timing effort of the tests: their tables check plumbing, not speed.
QUICK = Timer(number=1, repeat=2, min_repeat_ms=1)


def _table(folder):
    """The latency table a search of these tests kept in ``folder``."""
    return LatencyTable.open(folder, tvm_sparse.parse_target("llvm"), default_thread_count())


def _rules(layers, compression):
    """The rules' decisions as ``map_schemes`` takes them for ``"llvm"``."""
    return map_by_rules(layers, tvm_sparse.parse_target("llvm"), compression)


def _few(layer, target):
    return candidates_for(layer, target, blocks=[(8, 1)], sparsities=(0.75,), patterns=((4, 0.5),))


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.body = nn.Conv2d(16, 16, 3, padding=1)
        self.again = nn.Conv2d(16, 16, 3, padding=1)  # the same signature as body: measured once
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        x = torch.relu(self.again(torch.relu(self.body(torch.relu(self.stem(x))))))
        return self.head(x.mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(1)
    return Small().eval(), torch.randn(1, 3, 12, 12)


def test_map_prune_compile_matches_pytorch(small, tmp_path):
    model, example = small
    data = [(torch.randn(4, 3, 12, 12), torch.randint(0, 10, (4,)))]
    mapping = map_schemes(model, example, "llvm", "search", compression=2.5, candidates=_few, data=data,
                          table=tmp_path, timer=QUICK)
    layers = find_layers(model, example)
    assert [row.name for row in mapping.report] == [layer.name for layer in layers]
    # entries leave out the cost of a call and are clamped at 0: a tiny layer may cost nothing more
    assert all(row.predicted_ms >= 0 and row.dense_ms >= 0 for row in mapping.report)
    assert sum(row.dense_ms for row in mapping.report) > 0
    table = _table(tmp_path)
    assert mapping.predicted_ms == pytest.approx(table.calibration.predict_ms(sum(row.predicted_ms for row in mapping.report)))
    assert table.calibration.dense_ms > 0 and table.calibration.scale > 0
    assert mapping.report[0].choice == "dense" and "stem" in mapping.report[0].reason
    kept = sum(layer.parameters * row.kept for layer, row in zip(layers, mapping.report))
    assert sum(layer.parameters for layer in layers) / kept >= 2.5
    assert len(table.entries) == 3  # stem, body = again, head
    pruned = Small().eval()
    pruned.load_state_dict(model.state_dict())
    sparsifier = MagnitudeSparsifier()
    sparsifier.prepare(pruned, mapping.plan)
    sparsifier.step()
    plan = sparsifier.plan()
    sparsifier.squash_mask()
    verify_plan(plan, {name: value.detach().numpy() for name, value in pruned.state_dict().items()})
    compiled = tvm_sparse.compile(*tvm_sparse.from_torch(pruned, example), "llvm", plan=plan)
    assert {d.name for d in compiled.report if d.decision == "sparse"} == set(plan)
    with torch.no_grad():
        np.testing.assert_allclose(compiled(example), pruned(example).numpy(), rtol=1e-5, atol=1e-5)


def test_search_refuses_an_infeasible_budget_and_a_missing_objective(small, tmp_path):
    model, example = small
    with pytest.raises(ValueError, match="exactly one of"):
        map_schemes(model, example, "llvm", "search", candidates=_few)
    with pytest.raises(InfeasibleBudget, match="compression 50 is out of reach"):
        map_schemes(model, example, "llvm", "search", compression=50, candidates=_few, table=tmp_path)
    assert not (tmp_path / "latency_table.json").exists(), "refused before measuring"


def test_a_table_of_another_target_is_refused(small, tmp_path):
    table = LatencyTable("llvm-aarch64-linux-gnu", path=str(tmp_path / "latency_table.json"))
    table.save()
    with pytest.raises(LatencyTableError, match="measured on llvm-aarch64-linux-gnu"):
        LatencyTable.open(tmp_path, tvm_sparse.parse_target("llvm"))
    with pytest.raises(LatencyTableError, match="measured with None threads, not 2"):
        LatencyTable.open(tmp_path, tvm_sparse.parse_target("llvm -mtriple=aarch64-linux-gnu"), 2)


def test_the_table_is_measured_over_rpc_and_resumed_after_the_device_is_lost(small, tracker, tmp_path):
    from tvm_sparse.rpc import local_server

    model, example = small
    target = tvm_sparse.parse_target("llvm")
    layers = find_layers(model, example)
    candidates = {layer.name: _few(layer, target) for layer in layers}
    table = LatencyTable.open(tmp_path, target)
    timer = Timer((tracker, "map-lost"), number=1, repeat=2, wait_s=3)
    with local_server(tracker, "map-lost") as server:
        def pull_the_plug(done, _total):
            if done == 2:
                server.terminate()

        with pytest.raises(TimeoutError):
            measure_table(model, example, layers, candidates, target, table, timer, pull_the_plug)
    measured = sum(len(cells) for cells in LatencyTable.open(tmp_path, target).entries.values())
    assert measured == 2
    with local_server(tracker, "map-lost"):
        again = measure_table(model, example, layers, candidates, target, LatencyTable.open(tmp_path, target), timer)
    total = sum(len(candidates[name]) for name in ("stem.weight", "body.weight", "head.weight"))
    assert again == total - measured + 1  # the rest and the calibration, nothing twice


@pytest.mark.phone
def test_a_mapping_measured_on_the_emulated_phone(small, phone, tmp_path):
    model, example = small
    phone_target = "llvm -mtriple=aarch64-linux-gnu -mattr=+neon"

    def fewer(layer, target):
        return candidates_for(layer, target, blocks=[(8, 1)], sparsities=(0.75,), patterns=())

    mapping = map_schemes(model, example, phone_target, "search", compression=1.5, candidates=fewer,
                          timer=Timer((phone.tracker, phone.key), number=1, repeat=2), table=tmp_path)
    table = LatencyTable.open(tmp_path, tvm_sparse.parse_target(phone_target))
    assert table.target == "llvm-aarch64-linux-gnu" and table.calibration.dense_ms > 0
    assert all(row.predicted_ms >= 0 for row in mapping.report)
    assert set(mapping.plan) <= {"body.weight", "again.weight", "head.weight"}


@pytest.mark.parametrize("sparsifier", ["clicktrain", "admm"])
def test_a_mapped_plan_drives_training_time_pruning(sparsifier):
    """ClickTrain and ADMM prune to a mapping's mixed per-layer schemes; the result verifies and compiles."""
    import torch.nn.functional as F

    from tvm_sparse.pruning.admm import ADMMSparsifier
    from tvm_sparse.pruning.clicktrain import ClickTrainSchedule, ClickTrainSparsifier
    from tvm_sparse.pruning.small_cnn import SmallCNN

    torch.manual_seed(0)
    model = SmallCNN(width=16).eval()
    example = torch.randn(1, 1, 16, 16)
    # the generic x86 profile gives large 3x3 maps patterns (R4), the rest blocks: a mixed plan on any host
    mapping = map_schemes(model, example, "llvm -mcpu=x86-64", "rules", compression=3)
    assert len({type(scheme) for scheme in mapping.plan.values()}) >= 2, "a mixed plan"
    pruner = (ClickTrainSparsifier(ClickTrainSchedule(prune_start=2, prune_end=6, stages=2, lasso_steps=2,
                                                      update_every=1))
              if sparsifier == "clicktrain" else ADMMSparsifier(update_every=2))
    model.train()
    pruner.prepare(model, mapping.plan)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(1)
    for _ in range(8):
        x, y = torch.randn(8, 1, 16, 16, generator=generator), torch.randint(0, 10, (8,), generator=generator)
        F.cross_entropy(model(x), y).backward()
        pruner.step()
        optimizer.step()
        optimizer.zero_grad()
    if sparsifier == "admm":
        pruner.hard_prune()
    plan = pruner.plan()
    pruner.squash_mask()
    model.eval()
    verify_plan(plan, {name: value.detach().numpy() for name, value in model.state_dict().items()})
    compiled = tvm_sparse.compile(*tvm_sparse.from_torch(model, example), "llvm", plan=plan)
    assert {d.name for d in compiled.report if d.decision == "sparse"} == set(plan)
    with torch.no_grad():
        np.testing.assert_allclose(compiled(example), model(example).numpy(), rtol=1e-5, atol=1e-5)


def test_a_second_search_measures_only_the_rules_choices_it_lacks(small, tmp_path):
    model, example = small
    first = map_schemes(model, example, "llvm", "search", compression=1.5, candidates=_few, table=tmp_path,
                        timer=QUICK)
    layers, table = find_layers(model, example), _table(tmp_path)
    lacking = {candidate_key(d.scheme) for layer, d in zip(layers, _rules(layers, 2.5))
               if table.get(layer, d.scheme) is None}
    assert lacking, "the rules choose other rates at 2.5x than at 1.5x"

    class OnlyTheLacking(Timer):
        def row(self, compiled, examples):
            assert set(compiled) - {CALL, "dense", "reference"} <= lacking, "measured an entry again"
            return QUICK.row(compiled, examples)

    again = map_schemes(model, example, "llvm", "search", compression=2.5, candidates=_few, table=tmp_path,
                        timer=OnlyTheLacking())
    for mapping, compression in ((first, 1.5), (again, 2.5)):
        kept = sum(layer.parameters * row.kept for layer, row in zip(layers, mapping.report))
        assert sum(layer.parameters for layer in layers) / kept >= compression


def test_the_search_weighs_the_rules_choices(small, tmp_path):
    model, example = small
    mapping = map_schemes(model, example, "llvm", "search", compression=2.5, candidates=_few, table=tmp_path,
                          timer=QUICK)
    layers, table = find_layers(model, example), _table(tmp_path)
    decisions = _rules(layers, 2.5)
    assert any(d.scheme not in _few(layer, "llvm") for layer, d in zip(layers, decisions))
    for layer, decision, row in zip(layers, decisions, mapping.report):
        assert table.get(layer, decision.scheme) is not None
        assert ("the rules' choice too" in row.reason) == (row.choice == candidate_key(decision.scheme)
                                                           and decision.scheme is not None)


@pytest.mark.parametrize("method", ["loss", "first_order", "recovered_loss", "refit_loss"])
def test_sensitivities_grow_with_what_a_candidate_removes_and_leave_the_weights(small, method):
    from tvm_sparse.mapping.sensitivity import sensitivities

    model, example = small
    layers = find_layers(model, example)
    schemes = [None, BlockPunchedScheme(block=(8, 1), sparsity=0.5), BlockPunchedScheme(block=(8, 1), sparsity=0.875)]
    candidates = {layer.name: schemes for layer in layers}
    before = {name: value.clone() for name, value in model.state_dict().items()}
    generator = torch.Generator().manual_seed(2)
    batches = [(torch.randn(8, 3, 12, 12, generator=generator), torch.randint(0, 10, (8,), generator=generator))]
    costs = sensitivities(model, layers, candidates, batches, method=method)
    assert all(torch.equal(before[name], value) for name, value in model.state_dict().items())
    assert not model.training and all(p.grad is None for p in model.parameters())
    for layer in layers:
        row = costs[layer.name]
        assert row["dense"] == 0.0 and all(cost >= 0.0 for cost in row.values())
        if method == "first_order":  # the 0.875 mask removes every weight the 0.5 one does, and more
            assert row[candidate_key(schemes[2])] >= row[candidate_key(schemes[1])] > 0.0


@pytest.mark.parametrize("layer", [torch.nn.Conv2d(5, 6, 3, padding=1, bias=False), torch.nn.Conv2d(4, 8, 3, stride=2),
                                   torch.nn.Conv2d(6, 7, 1), torch.nn.Linear(12, 9)])
def test_a_refit_layer_keeps_its_mask_and_reproduces_its_dense_outputs_best(layer, monkeypatch):
    """The refit's kept weights are the least-squares optimum: masked gradients of the output error vanish."""
    from tvm_sparse.mapping import sensitivity

    monkeypatch.setattr(sensitivity, "REFIT_DAMPING", 0.0)
    generator = torch.Generator().manual_seed(3)
    shape = (40, layer.in_features) if isinstance(layer, torch.nn.Linear) else (24, layer.in_channels, 7, 7)
    batches = [(torch.randn(shape, generator=generator), None) for _ in range(2)]
    weight = layer.weight.detach()
    mask = (torch.rand(weight.shape, generator=generator) > 0.6).float()
    gram = sensitivity._input_gram(layer, layer, batches)
    refit = sensitivity._refit(weight.reshape(len(weight), -1), mask.reshape(len(mask), -1), gram).reshape(weight.shape)
    assert torch.equal(refit * mask, refit)

    def output_error(candidate):
        return sum(((torch.func.functional_call(layer, {"weight": candidate}, (x,)) - layer(x)) ** 2).sum()
                   for x, _ in batches)

    def masked_gradient(candidate):
        variable = candidate.clone().requires_grad_()
        output_error(variable).backward()
        return float((variable.grad * mask).abs().max())

    assert masked_gradient(refit) <= 1e-5 * masked_gradient(weight * mask)
    with torch.no_grad():
        assert float(output_error(refit)) < float(output_error(weight * mask))

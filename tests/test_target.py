"""Target parsing: the strings TVM users type, dicts and Target objects; errors name the bad part."""

import pytest
import tvm

from tvm_sparse.target import TargetError, is_aarch64, is_android, parse_target


@pytest.mark.parametrize(
    "text, kind, triple, keys",
    [
        ("llvm", "llvm", None, ["cpu"]),
        ("llvm -mtriple=aarch64", "llvm", "aarch64-linux-gnu", ["arm_cpu", "cpu"]),
        ("llvm -mtriple=aarch64-linux-gnu -mattr=+neon", "llvm", "aarch64-linux-gnu", ["arm_cpu", "cpu"]),
        ("llvm -mtriple=aarch64-linux-android -mcpu=cortex-a76", "llvm", "aarch64-linux-android", ["arm_cpu", "cpu"]),
        ("opencl -device=mali", "opencl", None, ["mali", "opencl", "gpu"]),
        ("opencl -device=adreno", "opencl", None, ["adreno", "opencl", "gpu"]),
    ],
)
def test_strings_tvm_users_type(text, kind, triple, keys):
    target = parse_target(text)
    assert target.kind.name == kind
    assert list(target.keys) == keys
    if triple is not None:
        assert target.attrs["mtriple"] == triple


def test_options_get_their_types():
    target = parse_target("llvm -mtriple=aarch64-linux-gnu -mattr=+neon,+dotprod -num-cores=4 -fast-math")
    assert list(target.attrs["mattr"]) == ["+neon", "+dotprod"]
    assert int(target.attrs["num-cores"]) == 4
    assert bool(target.attrs["fast-math"]) is True
    assert target.attrs["mtriple"] == "aarch64-linux-gnu"


def test_phone_gpus_get_an_aarch64_host():
    for text in ("opencl -device=mali", "opencl -device=adreno"):
        target = parse_target(text)
        assert target.host.attrs["mtriple"] == "aarch64-linux-gnu"
        assert is_aarch64(target)


def test_explicit_host_overrides_the_default():
    target = parse_target("opencl -device=mali", host="llvm -mtriple=aarch64-linux-android")
    assert target.host.attrs["mtriple"] == "aarch64-linux-android"
    assert is_android(target)


def test_dicts_and_targets_are_accepted():
    from_dict = parse_target({"kind": "llvm", "mtriple": "aarch64"})
    assert from_dict.attrs["mtriple"] == "aarch64-linux-gnu"
    existing = tvm.target.Target({"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a55"})
    again = parse_target(existing)
    assert again.attrs["mcpu"] == "cortex-a55" and is_aarch64(again)
    assert str(parse_target(parse_target("opencl -device=mali"))) == str(parse_target("opencl -device=mali"))


def test_local_cpu_is_not_aarch64():
    assert not is_aarch64(parse_target("llvm"))


def test_this_machine_gets_its_own_cpu_unless_told_otherwise():
    from tvm.target import codegen

    assert parse_target("llvm").attrs["mcpu"] == codegen.llvm_get_system_cpu()
    assert parse_target("llvm -mcpu=x86-64").attrs["mcpu"] == "x86-64"
    assert "mcpu" not in parse_target("llvm -mtriple=aarch64").attrs


@pytest.mark.parametrize(
    "bad, named",
    [
        ("", "empty"),
        ("lvm -mtriple=aarch64", "'lvm'"),
        ("llvm -mtriple=aarch64 -mcpu=cortex-zz", "-mcpu=cortex-zz"),
        ("llvm -mcpu=foo", "for this machine's triple x86_64"),
        ("llvm -bogus=1", "-bogus"),
        ("llvm -num-cores=four", "-num-cores=four"),
        ("llvm mtriple=aarch64", "'mtriple=aarch64'"),
        ("llvm -mcpu", "-mcpu"),
        ("-mcpu=cortex-a76 llvm", "'-mcpu=cortex-a76'"),
        ("cuda", "'cuda'"),
        ("llvm -mtriple='aarch64", "cannot be split"),
        ({"mtriple": "aarch64"}, "no 'kind'"),
        ({"kind": "llvm", "bogus": 1}, "bogus"),
        (42, "int"),
    ],
)
def test_bad_targets_name_the_problem(bad, named):
    with pytest.raises(TargetError, match=None) as info:
        parse_target(bad)
    assert named in str(info.value)

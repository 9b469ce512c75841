"""Test tiers: the ``phone`` and OpenCL tests fail in CI when their tools are missing, skip elsewhere.

``scripts/setup.sh test`` installs PoCL and prepares the emulated phone; ``tests/conftest.py``
(``require``, the ``phone`` marker's check, ``opencl_context``) stops the tests that lack them.
"""

import pytest

from tests.conftest import SETUP_COMMAND, pytest_runtest_setup, require
from tvm_sparse.rpc.phone import is_prepared


def test_a_missing_tier_skips_with_the_install_command(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=f"install it with `{SETUP_COMMAND}`"):
        require("PoCL")


def test_a_missing_tier_fails_in_ci(monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI runs every test tier"):
        require("PoCL")


def test_an_empty_cache_holds_no_prepared_phone(tmp_path):
    assert not is_prepared(tmp_path / "phone-aarch64")


class _PhoneTest:
    """The part of a pytest item that the ``phone`` check reads."""

    @staticmethod
    def get_closest_marker(name):
        return pytest.mark.phone.mark if name == "phone" else None


@pytest.mark.parametrize("ci", [True, False], ids=["ci", "elsewhere"])
def test_a_phone_test_without_a_prepared_phone_fails_in_ci_and_skips_elsewhere(tmp_path, monkeypatch, ci):
    monkeypatch.setenv("TVM_SPARSE_CACHE", str(tmp_path))
    if ci:
        monkeypatch.setenv("CI", "true")
    else:
        monkeypatch.delenv("CI", raising=False)
    outcome = pytest.fail.Exception if ci else pytest.skip.Exception
    with pytest.raises(outcome, match=f"the emulated aarch64 phone .* is missing: install it with `{SETUP_COMMAND}`"):
        pytest_runtest_setup(_PhoneTest())
    assert not (tmp_path / "phone-aarch64").exists()  # the check prepared nothing

"""Test tiers: the ``phone`` and OpenCL tests fail in CI when their tools are missing, skip elsewhere.

``scripts/setup.sh test`` installs PoCL and prepares the emulated phone; ``tests/conftest.py``
(``require``, the ``phone`` marker's check, ``opencl_context``) stops the tests that lack them.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SETUP_COMMAND, require
from tvm_sparse.rpc.phone import is_prepared

ROOT = Path(__file__).resolve().parents[1]


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


def test_phone_tests_fail_in_ci_without_a_prepared_phone(tmp_path):
    env = {**os.environ, "CI": "true", "TVM_SPARSE_CACHE": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_phone.py"],
                            cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=300)
    assert result.returncode != 0 and "2 errors" in result.stdout
    assert f"the emulated aarch64 phone (qemu-user, the aarch64 cross compiler, the phone's root) is missing: " \
           f"install it with `{SETUP_COMMAND}` (CI runs every test tier)" in result.stdout
    assert not (tmp_path / "phone-aarch64").exists()  # the tests prepared nothing

"""Every code example in ``README.md`` and ``docs/*.md`` runs.

The convention (README, "Test it"): a file's ``python`` blocks run in order in one namespace, as a
reader would type them; its ``bash`` blocks run in a temporary folder with this environment's
``bin`` first on ``PATH``. A block right after a line ``<!-- not run: reason -->`` is not run; such
blocks are counted and must say why. An unlabelled block may not hold a ``tvm-sparse`` command,
so that no command escapes the test by losing its language. New files in ``docs/`` are picked up
without a change here.
"""

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import require_aarch64_linker

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

PYTHON = ("python", "py")
SHELL = ("bash", "sh", "shell")

#: How many blocks may be marked not run, over all the docs: raise it only with a reason.
MAX_NOT_RUN = 8

_FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,})(?P<language>[\w+-]*)\s*$")
_NOT_RUN = re.compile(r"^\s*<!--\s*not run:(?P<reason>.*?)-->\s*$")


@dataclass(frozen=True)
class CodeBlock:
    """One fenced block of a markdown file."""

    path: Path
    line: int
    language: str
    code: str
    not_run: str = None  # the reason, for a block marked not run

    @property
    def where(self):
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def code_blocks(path):
    """The fenced blocks of a markdown file, with the not-run mark that precedes each.

    Raises
    ------
    ValueError
        For a not-run mark that no block follows, or a block that is never closed.
    """
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks, mark, index = [], None, 0
    while index < len(lines):
        line = lines[index]
        opening = _FENCE.match(line)
        if opening is None:
            found = _NOT_RUN.match(line)
            if found:
                mark = (index + 1, found["reason"].strip())
            elif line.strip() and mark is not None:
                raise ValueError(f"{path.name}:{mark[0]}: a not-run mark must come right before a code block")
            index += 1
            continue
        indent, fence = len(opening["indent"]), opening["fence"]
        end = index + 1
        while end < len(lines) and lines[end].strip() != fence:
            end += 1
        if end == len(lines):
            raise ValueError(f"{path.name}:{index + 1}: the code block is never closed")
        code = "\n".join(text[indent:] for text in lines[index + 1:end]) + "\n"
        blocks.append(CodeBlock(path, index + 1, opening["language"].lower(), code,
                                mark[1] if mark is not None else None))
        mark, index = None, end + 1
    return blocks


BLOCKS = [block for path in DOCS for block in code_blocks(path)]
PYTHON_FILES = sorted({b.path for b in BLOCKS if b.language in PYTHON and b.not_run is None})
SHELL_BLOCKS = [b for b in BLOCKS if b.language in SHELL and b.not_run is None]


def _require_tools(code):
    if "export_library" in code:
        require_aarch64_linker()


@pytest.mark.parametrize("path", PYTHON_FILES, ids=lambda path: path.name)
def test_python_examples_run(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # files the examples write land here
    namespace = {"__name__": "__docs__"}
    for block in (b for b in BLOCKS if b.path == path and b.language in PYTHON and b.not_run is None):
        _require_tools(block.code)
        try:
            exec(compile(block.code, block.where, "exec"), namespace)  # pylint: disable=exec-used
        except Exception as error:  # noqa: BLE001 - name the block, keep the cause
            raise AssertionError(f"the example at {block.where} failed: {error!r}") from error


@pytest.mark.parametrize("block", SHELL_BLOCKS, ids=lambda block: block.where)
def test_shell_examples_run(block, tmp_path):
    _require_tools(block.code)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", block.code], cwd=tmp_path, env=env,
                            capture_output=True, text=True, check=False, timeout=600)
    assert result.returncode == 0, (f"the example at {block.where} exited with {result.returncode}:\n"
                                    f"{result.stdout[-2000:]}\n{result.stderr[-3000:]}")


def test_every_command_block_has_a_language():
    unlabelled = [b.where for b in BLOCKS if not b.language and not b.not_run
                  and any(line.lstrip("$ ").startswith("tvm-sparse") for line in b.code.splitlines())]
    assert not unlabelled, f"label these blocks `bash` (run) or mark them not run: {unlabelled}"


def test_blocks_not_run_say_why_and_are_few():
    not_run = [(b.where, b.not_run) for b in BLOCKS if b.not_run is not None]
    assert all(reason for _, reason in not_run), f"a not-run mark needs a reason: {not_run}"
    assert len(not_run) <= MAX_NOT_RUN, f"{len(not_run)} blocks are not run (at most {MAX_NOT_RUN}): {not_run}"


def test_the_convention_is_read_as_documented(tmp_path):
    doc = tmp_path / "example.md"
    doc.write_text("text\n\n<!-- not run: needs a phone -->\n```python\nphone()\n```\n\n"
                   "- a list item:\n  ```bash\n  tvm-sparse --help\n  ```\n```\nplain\n```\n")
    blocks = code_blocks(doc)
    assert [(b.line, b.language, b.code, b.not_run) for b in blocks] == [
        (4, "python", "phone()\n", "needs a phone"), (9, "bash", "tvm-sparse --help\n", None),
        (12, "", "plain\n", None)]
    doc.write_text("<!-- not run: forgotten -->\ntext\n")
    with pytest.raises(ValueError, match="right before a code block"):
        code_blocks(doc)

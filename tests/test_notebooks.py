"""Every notebook in notebooks/ runs top to bottom in its small size without an error and draws its figures.

The notebooks read ``TVM_SPARSE_NOTEBOOK_SIZE`` (``small`` here, ``full`` by default and in
``scripts/run-notebooks.sh``) and save their figures under ``TVM_SPARSE_FIGURE_DIR``.
"""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))

#: Figures (image/png outputs) each notebook draws; a notebook not listed draws at least one.
FIGURES = {"01_quickstart.ipynb": 0, "02_pruning_accuracy.ipynb": 2, "03_where_sparse_pays.ipynb": 1,
           "04_end_to_end.ipynb": 2, "05_phone_over_rpc.ipynb": 1, "06_scheme_mapping.ipynb": 2}

#: Notebooks that need the emulated phone (the ``phone`` tier).
ON_THE_PHONE = {"05_phone_over_rpc.ipynb"}


def _params():
    return [pytest.param(path, id=path.name, marks=[pytest.mark.phone] if path.name in ON_THE_PHONE else [])
            for path in NOTEBOOKS]


@pytest.mark.parametrize("path", _params())
def test_notebook_runs_in_its_small_size_and_draws_its_figures(path, tmp_path, monkeypatch):
    monkeypatch.setenv("TVM_SPARSE_NOTEBOOK_SIZE", "small")
    monkeypatch.setenv("TVM_SPARSE_FIGURE_DIR", str(tmp_path / "figures"))
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [output for output in outputs if output.output_type == "error"]
    figures = [output for output in outputs if "image/png" in output.get("data", {})]
    if path.name in FIGURES:
        assert len(figures) == FIGURES[path.name]
        assert len(list((tmp_path / "figures").glob("*.png"))) == FIGURES[path.name]
    else:
        assert figures, f"{path.name} draws no figure"


def test_there_are_notebooks():
    assert NOTEBOOKS

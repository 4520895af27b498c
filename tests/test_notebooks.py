"""The notebooks: stored without outputs; executed (01-03 and 05 on the demo folder, 04 up to its
GPU check) with nbclient."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from test_demo import demo_dir, demo_run  # noqa: F401  (session fixtures: one demo run)

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = (
    "01_quickstart.ipynb",
    "02_latent_discovery.ipynb",
    "03_steering.ipynb",
    "04_real_model_gpu.ipynb",
    "05_persona.ipynb",
)


def execute(name: str, env: dict[str, str], cwd: Path, timeout: int = 600) -> nbformat.NotebookNode:
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    old = {key: os.environ.get(key) for key in env}
    os.environ.update(env)  # the kernel inherits the test's environment
    try:
        NotebookClient(
            notebook, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": cwd}}
        ).execute()
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return notebook


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_stored_without_outputs(name):
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code, "a notebook without code"
    for cell in code:
        assert cell.outputs == [] and cell.execution_count is None, cell.source[:80]


@pytest.mark.parametrize("name", NAMES)
def test_notebook_figures_render_outside_jupyterlab(name):
    """Each notebook sets the portable renderer before its first figure, and that renderer
    stores a figure as HTML beside plotly's own mimetype (what nbconvert and viewers draw)."""
    import plotly.graph_objects as go
    import plotly.io as pio

    from interp.viz.notebook import portable_figures

    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    code = [cell.source for cell in notebook.cells if cell.cell_type == "code"]
    first_figure = next(i for i, source in enumerate(code) if ".show()" in source)
    assert any("portable_figures()" in source for source in code[:first_figure])
    previous = pio.renderers.default
    try:
        portable_figures()
        bundle = pio.renderers._build_mime_bundle(go.Figure(go.Bar(y=[1])).to_dict())
    finally:
        pio.renderers.default = previous
    assert {"application/vnd.plotly.v1+json", "text/html"} <= set(bundle)
    assert "plotly-graph-div" in bundle["text/html"]


def test_gpu_notebook_stops_at_its_gpu_check(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: notebook 04 would run a 7B model, not stop at its check")
    with pytest.raises(CellExecutionError) as failure:
        execute("04_real_model_gpu.ipynb", {"VSFA_GPU_OUT": str(tmp_path / "gpu")}, tmp_path)
    assert "This notebook needs a CUDA GPU (none found)" in str(failure.value)
    notebook = nbformat.read(NOTEBOOKS / "04_real_model_gpu.ipynb", as_version=4)
    check = [i for i, c in enumerate(notebook.cells) if "gpu-check" in c.metadata.get("tags", [])]
    assert len(check) == 1 and "torch.cuda.is_available()" in notebook.cells[check[0]].source
    assert not (tmp_path / "gpu").exists()  # nothing after the check ran


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES[:3] + NAMES[4:])
def test_organism_notebooks_execute(name, request, tmp_path):
    demo_folder = request.getfixturevalue("demo_dir")  # the session's one `vsfa demo --fast`
    notebook = execute(name, {"VSFA_DEMO_DIR": str(demo_folder)}, tmp_path)
    errors = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.output_type == "error"
    ]
    assert errors == []
    text = "".join(
        output.get("text", "")
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
    )
    assert "fast settings: True" in text
    assert "IProgress" not in text  # ipywidgets is installed with the notebooks extra
    # every figure is stored as HTML too, and nbconvert's HTML draws it
    figures = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if "application/vnd.plotly.v1+json" in output.get("data", {})
    ]
    assert figures and all("text/html" in output["data"] for output in figures)
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_notebook_node(notebook)
    assert body.count('class="plotly-graph-div"') >= len(figures)

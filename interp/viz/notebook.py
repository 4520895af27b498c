"""Plotly figures in notebooks that render anywhere, not only in a live JupyterLab.

Plotly's default notebook output is its own mimetype, which only JupyterLab's plotly extension
draws: ``jupyter nbconvert --to html`` and GitHub show an empty cell. :func:`portable_figures`
makes every ``fig.show()`` store the figure three ways: the plotly mimetype (JupyterLab, live),
``text/html`` with plotly.js embedded once per notebook (nbconvert's HTML, offline browsers) and,
when ``kaleido`` is installed, ``image/png`` (GitHub and other static viewers).
"""

from __future__ import annotations

import importlib.util

HTML_RENDERERS = "plotly_mimetype+notebook"


def portable_renderers() -> str:
    """The plotly renderer string :func:`portable_figures` sets (with ``png`` when kaleido is
    importable)."""
    if importlib.util.find_spec("kaleido") is not None:
        return HTML_RENDERERS + "+png"
    return HTML_RENDERERS


def portable_figures() -> str:
    """Set plotly's default renderer to :func:`portable_renderers`; returns it."""
    import plotly.io as pio

    pio.renderers.default = portable_renderers()
    return pio.renderers.default

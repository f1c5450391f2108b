"""A progress line for long notebook cells that keeps strict nbval deterministic.

``for item in progress(grid, "FedAvg runs"):`` shows, in JupyterLab, a bar that
moves while the loop runs (``FedAvg runs: 7/24``) and ends on a fixed line
(``FedAvg runs: 24 done``). The line is *displayed* with that final text first
and then updated in place: a saved notebook holds the final text, and nbval,
which compares the first display of a cell (it ignores in-place updates), sees
the same text. No timings, so nothing in the saved output changes between runs.
Outside IPython (scripts, tests) it shows nothing.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Iterator


def _bundle(label: str, done: int, total: int, final: bool) -> dict:
    text = f"{label}: {total} done" if final else f"{label}: {done}/{total}"
    bar = f'<progress value="{done}" max="{max(total, 1)}" style="width: 16em"></progress> '
    return {"text/plain": text, "text/html": bar + html.escape(text)}


def _display():
    """IPython's display function when a kernel runs this, else None."""
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:                     # pragma: no cover - IPython comes with ipywidgets
        return None
    shell = get_ipython()
    if shell is None or not hasattr(shell, "kernel"):
        return None
    return display


def progress(items: Iterable, label: str, *, total: int | None = None, display=None) -> Iterator:
    """Yield ``items`` while a progress line counts them (see the module docstring).

    ``total`` defaults to ``len(items)``; ``display`` (for tests) replaces IPython's display function.
    """
    if not isinstance(label, str):
        raise TypeError(f"label must be a str, got {type(label).__name__}")
    items = list(items) if total is None and not hasattr(items, "__len__") else items
    total = len(items) if total is None else total
    show = display or _display()
    if show is None:
        yield from items
        return
    handle = show(_bundle(label, total, total, True), raw=True, display_id=True)
    for k, item in enumerate(items, start=1):
        yield item
        handle.update(_bundle(label, k, total, False), raw=True)
    handle.update(_bundle(label, total, total, True), raw=True)

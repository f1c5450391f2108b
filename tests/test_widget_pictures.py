"""Every live widget's saved output carries a picture of its state for readers without a kernel.

GitHub and nbconvert cannot run widgets: they show the richest type they can
render from the saved bundle. So the bundle must hold the widget view (for
JupyterLab and Voila), a PNG of the current state, and a plain-text note
instead of the widget's repr.
"""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

import fl_helpers as fl
from fl_helpers.widgets import dashboard, explorer, lr_demo

VIEW = "application/vnd.jupyter.widget-view+json"


def _widgets():
    X, y, _ = fl.make_regression(40, 1, noise=0.5, seed=0)
    small = explorer.Settings(n_parties=5, rounds=20)
    return {
        "explorer": lambda: (w := explorer.explorer(small), w.children[2]),
        "lr_demo": lambda: (w := lr_demo.widget(X, y, rounds=20), w.children[1]),
        "dashboard": lambda: (d := dashboard.dashboard(dashboard.DEFAULT.replace(rounds=20)), d.image),
    }


@pytest.mark.parametrize("name", ["explorer", "lr_demo", "dashboard"])
def test_the_bundle_has_the_live_view_a_picture_and_a_note(name):
    widget, image = _widgets()[name]()

    bundle = widget._repr_mimebundle_()

    assert VIEW in bundle and bundle[VIEW]["model_id"]
    picture = Image.open(io.BytesIO(base64.b64decode(bundle["image/png"])))
    current = Image.open(io.BytesIO(image.value))
    assert picture.format == "PNG" and picture.size == current.size
    # the same picture, reduced to 256 colours: close to the widget's current image pixel by pixel
    diff = np.abs(np.asarray(picture.convert("RGB"), dtype=int) - np.asarray(current.convert("RGB"), dtype=int))
    assert diff.mean() < 3.0
    text = bundle["text/plain"]
    assert "run this notebook" in text and "VBox" not in text and "children" not in text


def test_the_picture_follows_the_state():
    """After a slider move the saved picture is the new state's, not the first one."""
    widget, image = _widgets()["explorer"]()
    before = widget._repr_mimebundle_()["image/png"]

    widget.children[0].children[0].children[1].value = 0.01          # the learning-rate slider

    after = widget._repr_mimebundle_()["image/png"]
    assert after != before
    assert Image.open(io.BytesIO(base64.b64decode(after))).size == Image.open(io.BytesIO(image.value)).size

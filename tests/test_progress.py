"""The progress line: what a notebook saves is fixed text, what JupyterLab shows moves."""

import pytest

from fl_helpers.progress import progress


class FakeDisplay:
    """Records what a notebook cell would show: the first display and every in-place update."""

    def __init__(self):
        self.first, self.updates = None, []

    def __call__(self, bundle, *, raw, display_id):
        assert raw and display_id
        self.first = bundle
        return self

    def update(self, bundle, *, raw):
        self.updates.append(bundle["text/plain"])


def test_the_first_display_is_the_final_text_so_nbval_and_the_saved_output_agree():
    shown = FakeDisplay()
    assert list(progress(range(3), "runs", display=shown)) == [0, 1, 2]
    assert shown.first["text/plain"] == "runs: 3 done"
    assert shown.updates == ["runs: 1/3", "runs: 2/3", "runs: 3/3", "runs: 3 done"]
    assert 'value="3" max="3"' in shown.first["text/html"]


def test_outside_a_notebook_it_only_yields():
    assert list(progress(iter("abc"), "letters")) == ["a", "b", "c"]


def test_the_label_must_be_text():
    with pytest.raises(TypeError, match="label must be a str"):
        list(progress([1], 3))

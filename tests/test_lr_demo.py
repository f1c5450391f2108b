"""The learning-rate demo: closed-form limits, and the simulate/draw pair without a browser."""

import matplotlib.pyplot as plt
import numpy as np
import pytest

from fl_helpers import make_regression
from fl_helpers.widgets import lr_demo


@pytest.fixture
def data():
    X, y, _ = make_regression(60, 1, noise=0.3, seed=2)
    return X + 2.0, y


def test_limits_by_hand():
    # X = [[0], [2]]: X~ = [[1, 0], [1, 2]], H = (2/2) X~^T X~ = [[2, 2], [2, 4]]
    lim = lr_demo.learning_rate_limits(np.array([[0.0], [2.0]]))
    lam = np.array([3 - np.sqrt(5), 3 + np.sqrt(5)])
    np.testing.assert_allclose(lim.eigenvalues, lam)
    assert lim.lr_max == pytest.approx(2 / lam[1])
    assert lim.lr_opt == pytest.approx(2 / 6)
    kappa = lam[1] / lam[0]
    assert lim.condition_number == pytest.approx(kappa)
    assert lim.rate_opt == pytest.approx((kappa - 1) / (kappa + 1))


def test_contraction_factor_is_rate_opt_at_lr_opt(data):
    X, _ = data
    lim = lr_demo.learning_rate_limits(X)
    assert lr_demo.contraction_factor(X, lr=lim.lr_opt) == pytest.approx(lim.rate_opt)
    assert lr_demo.contraction_factor(X, lr=0.99 * lim.lr_max) < 1 < lr_demo.contraction_factor(X, lr=1.01 * lim.lr_max)
    with pytest.raises(ValueError, match="lr must be a positive"):
        lr_demo.contraction_factor(X, lr=0.0)


def test_stability_boundary_decides_divergence(data):
    X, y = data
    lim = lr_demo.learning_rate_limits(X)
    ok = lr_demo.simulate(X, y, lr=0.95 * lim.lr_max, rounds=400)
    bad = lr_demo.simulate(X, y, lr=1.05 * lim.lr_max, rounds=400)
    assert ok.history.diverged_at is None
    np.testing.assert_allclose(ok.history.theta, ok.theta_star, atol=1e-6)
    assert bad.history.diverged_at is not None
    assert "diverged at step" in bad.message and "1.05" in bad.message


def test_observed_rate_matches_theory_at_lr_opt(data):
    X, y = data
    run = lr_demo.simulate(X, y, lr=lr_demo.learning_rate_limits(X).lr_opt, rounds=60)
    excess = run.history.losses - run.loss_star
    ratio = excess[21:41] / excess[20:40]
    np.testing.assert_allclose(ratio, run.limits.rate_opt ** 2, rtol=1e-6)


def test_simulate_is_deterministic_and_loss2d_is_the_mse(data):
    X, y = data
    a = lr_demo.simulate(X, y, lr=0.05, rounds=10)
    b = lr_demo.simulate(X, y, lr=0.05, rounds=10)
    np.testing.assert_array_equal(a.history.thetas, b.history.thetas)
    from fl_helpers.linear import mse
    assert a.loss2d(0.3, -0.2) == pytest.approx(mse(np.array([0.3, -0.2]), X, y))
    assert a.loss2d(*a.theta_star) == pytest.approx(a.loss_star)


def test_draw_two_panels_and_diverged_run_has_no_nan(data):
    X, y = data
    lim = lr_demo.learning_rate_limits(X)
    fig, axes = plt.subplots(1, 2)
    out = lr_demo.draw(lr_demo.simulate(X, y, lr=1.05 * lim.lr_max, rounds=400), axes, fontsize=14)
    assert tuple(out) == tuple(axes)
    ax_loss, ax_path = axes
    assert "diverged" in ax_loss.get_title()
    assert any(line.get_marker() == "x" for line in ax_loss.get_lines())
    for ax in axes:
        for line in ax.get_lines():
            assert np.all(np.isfinite(line.get_xydata()))
    assert len(ax_path.get_lines()) == 3 + 1          # path, start, end, star


def test_draw_makes_its_own_figure(data):
    X, y = data
    axes = lr_demo.draw(lr_demo.simulate(X, y, lr=0.05, rounds=5))
    assert len(axes) == 2 and "converges" in axes[0].get_title()


def test_simulate_rejects_bad_arguments(data):
    X, y = data
    with pytest.raises(ValueError, match="lr must be a positive"):
        lr_demo.simulate(X, y, lr=-1.0, rounds=5)
    with pytest.raises(ValueError, match="rounds"):
        lr_demo.simulate(X, y, lr=0.1, rounds=-1)
    with pytest.raises(ValueError, match="dims"):
        lr_demo.simulate(X, y, lr=0.1, rounds=5, dims=(1, 1))


def test_widget_redraws_when_a_slider_moves(data):
    X, y = data
    box = lr_demo.widget(X, y, lr=0.1, rounds=30)
    lr_slider, rounds_slider = box.children[0].children
    image = box.children[1]
    first = bytes(image.value)
    assert first.startswith(b"\x89PNG")
    lr_slider.value = 0.02
    second = bytes(image.value)
    assert second.startswith(b"\x89PNG") and second != first
    rounds_slider.value = 5
    assert bytes(image.value) != second

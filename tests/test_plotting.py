"""Plotting: pure draw functions (Agg backend, no display)."""

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest

from fl_helpers import centralized_gd, make_regression
from fl_helpers.linear import mse
from fl_helpers.plotting import (
    plot_loss_contours,
    plot_losses,
    plot_round_diagram,
    quadratic_loss2d,
    quadratic_slice,
)


@pytest.fixture
def data():
    X, y, _ = make_regression(40, 1, noise=0.3, seed=1)
    return X + 2.0, y


def legend_labels(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


def all_finite(ax):
    return all(np.all(np.isfinite(np.asarray(line.get_xydata(), dtype=float))) for line in ax.get_lines())


# ----------------------------------------------------------------- plot_losses


def test_plot_losses_one_line_per_run_with_labels():
    ax = plot_losses({"a": [4.0, 2.0, 1.0], "b": np.array([3.0, 1.0])}, title="t")
    assert isinstance(ax, matplotlib.axes.Axes)
    assert len(ax.get_lines()) == 2
    assert legend_labels(ax) == ["a", "b"]
    np.testing.assert_array_equal(ax.get_lines()[0].get_xydata(), [[0, 4.0], [1, 2.0], [2, 1.0]])
    assert ax.get_yscale() == "log" and ax.get_title() == "t"


def test_plot_losses_draws_on_given_axes_and_keeps_rcparams():
    before = dict(matplotlib.rcParams)
    fig, ax = plt.subplots()
    out = plot_losses({"a": [1.0, 0.5]}, ax, log=False, fontsize=20)
    assert out is ax and ax.get_yscale() == "linear"
    assert ax.xaxis.label.get_fontsize() == 20
    assert dict(matplotlib.rcParams) == before


def test_plot_losses_stops_nan_run_at_last_finite_round_and_marks_it():
    ax = plot_losses({"ok": [3.0, 2.0, 1.0, 0.5], "bad": [3.0, 9.0, 50.0, np.nan, np.inf]})
    lines = ax.get_lines()
    assert len(lines) == 3                               # ok, bad, the 'x'
    bad, marker = lines[1], lines[2]
    np.testing.assert_array_equal(bad.get_xdata(), [0, 1, 2])
    assert marker.get_marker() == "x"
    np.testing.assert_array_equal(marker.get_xydata(), [[2, 50.0]])
    assert legend_labels(ax) == ["ok", "bad"]
    assert any("diverged at round 3" in t.get_text() for t in ax.texts)
    assert all_finite(ax)


def test_plot_losses_history_diverged_run(data):
    X, y = data
    ok = centralized_gd(X, y, lr=0.01, rounds=50)
    bad = centralized_gd(X, y, lr=1.0, rounds=200)
    assert bad.diverged_at is not None
    ax = plot_losses({"ok": ok, "bad": bad}, reference=ok.losses[-1])
    lines = ax.get_lines()
    assert len(lines) == 4                               # reference line, ok, bad, the 'x'
    assert lines[2].get_xdata()[-1] == bad.rounds == bad.diverged_at - 1
    assert any(f"diverged at round {bad.diverged_at}" in t.get_text() for t in ax.texts)
    assert all_finite(ax)


def test_plot_losses_reference_curve_is_dashed_and_excess_loss(data):
    X, y = data
    ref = centralized_gd(X, y, lr=0.05, rounds=30)
    ax = plot_losses({"run": ref.losses[:10]}, reference=ref, optimum=0.05, reference_label="GD")
    first = ax.get_lines()[0]
    assert first.get_linestyle() == "--" and first.get_label() == "GD"
    np.testing.assert_allclose(ax.get_lines()[1].get_ydata(), ref.losses[:10] - 0.05)
    assert "L*" in ax.get_ylabel()


def test_plot_losses_log_axis_leaves_out_nonpositive_excess():
    ax = plot_losses({"run": [2.0, 1.0, 1.0]}, optimum=1.0)
    np.testing.assert_array_equal(ax.get_lines()[0].get_xdata(), [0])


@pytest.mark.parametrize("bad, error", [({}, ValueError), ([1.0, 2.0], TypeError),
                                        ({"a": [[1.0, 2.0]]}, ValueError), ({"a": "text"}, TypeError)])
def test_plot_losses_rejects_bad_curves(bad, error):
    with pytest.raises(error, match="curves"):
        plot_losses(bad)


def test_plot_losses_rejects_bad_fontsize():
    with pytest.raises(ValueError, match="fontsize must be a positive"):
        plot_losses({"a": [1.0]}, fontsize=-3)


# ----------------------------------------------------------------- loss landscapes


def test_quadratic_slice_equals_mse_at_grid_points(data):
    X, y = data
    ref = np.array([0.3, -0.7])
    loss2d = quadratic_slice(X, y, ref)
    for t0, t1 in [(0.0, 0.0), (1.5, -2.0), (-3.0, 4.0)]:
        assert loss2d(t0, t1) == pytest.approx(mse(np.array([t0, t1]), X, y), rel=1e-12)
    T0, T1 = np.meshgrid([0.0, 1.0, 2.0], [-1.0, 0.5])
    Z = loss2d(T0, T1)
    assert Z.shape == (2, 3)
    assert Z[1, 2] == pytest.approx(mse(np.array([2.0, 0.5]), X, y), rel=1e-12)


def test_quadratic_slice_keeps_other_coordinates_fixed():
    X, y, _ = make_regression(30, 3, noise=0.2, seed=4)
    ref = np.array([0.1, 0.2, -0.3, 0.4])
    loss2d = quadratic_slice(X, y, ref, dims=(1, 3))
    theta = ref.copy()
    theta[[1, 3]] = (2.0, -1.0)
    assert loss2d(2.0, -1.0) == pytest.approx(mse(theta, X, y), rel=1e-12)


def test_quadratic_slice_rejects_bad_dims(data):
    X, y = data
    with pytest.raises(ValueError, match="dims"):
        quadratic_slice(X, y, [0.0, 0.0], dims=(0, 0))
    with pytest.raises(ValueError, match="dims"):
        quadratic_slice(X, y, [0.0, 0.0], dims=(0, 2))
    with pytest.raises(ValueError, match="theta_ref"):
        quadratic_slice(X, y, [0.0, 0.0, 0.0])


def test_quadratic_loss2d_by_hand():
    loss2d = quadratic_loss2d([[2.0, 1.0], [1.0, 4.0]], [1.0, -1.0], min_loss=0.5)
    # d = (1, 1): 0.5 + 0.5 * (2 + 2 + 4) = 4.5
    assert loss2d(2.0, 0.0) == pytest.approx(4.5)
    assert loss2d(1.0, -1.0) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="symmetric"):
        quadratic_loss2d([[1.0, 2.0], [0.0, 1.0]], [0.0, 0.0])
    with pytest.raises(ValueError, match="positive semi-definite"):
        quadratic_loss2d([[1.0, 0.0], [0.0, -1.0]], [0.0, 0.0])


def test_contour_grid_equals_mse(data):
    X, y = data
    star = np.linalg.lstsq(np.hstack([np.ones((len(y), 1)), X]), y, rcond=None)[0]
    ax = plot_loss_contours(quadratic_slice(X, y, star), center=star, span=2.0, resolution=11, levels=6)
    assert isinstance(ax, matplotlib.axes.Axes)
    assert ax.get_xlim() == pytest.approx((star[0] - 2, star[0] + 2))
    cs = ax.collections[0]
    levels = np.asarray(cs.levels)
    assert len(levels) == 6 and np.all(np.diff(levels) > 0)
    # the lowest level sits just above the minimum of the grid, the highest at its maximum
    corner = mse(star + np.array([2.0, 2.0]), X, y)
    other = mse(star + np.array([2.0, -2.0]), X, y)
    assert levels[-1] == pytest.approx(max(corner, other, mse(star - 2.0, X, y),
                                           mse(star + np.array([-2.0, 2.0]), X, y)))


def test_contours_accept_precomputed_grid():
    T0, T1 = np.meshgrid(np.linspace(-1, 1, 9), np.linspace(-2, 2, 9))
    ax = plot_loss_contours((T0, T1, T0**2 + T1**2), levels=[0.5, 1.0, 2.0])
    np.testing.assert_allclose(ax.collections[0].levels, [0.5, 1.0, 2.0])
    assert ax.get_ylim() == pytest.approx((-2, 2))


def test_contours_paths_markers_and_legend(data):
    X, y = data
    star = np.linalg.lstsq(np.hstack([np.ones((len(y), 1)), X]), y, rcond=None)[0]
    run = centralized_gd(X, y, lr=0.05, rounds=20)
    path = np.array([[0.0, 0.0], [1.0, -0.5], [np.nan, np.nan]])
    ax = plot_loss_contours(quadratic_slice(X, y, star), paths={"GD": run, "manual": path},
                            optimum=star, marks={"fixed point": star + 0.5}, fontsize=15)
    lines = ax.get_lines()
    assert len(lines) == 2 * 3 + 2                    # 3 per path + star + mark
    np.testing.assert_allclose(lines[0].get_xydata(), run.thetas)
    np.testing.assert_array_equal(lines[3].get_xydata(), path[:2])    # NaN row dropped
    assert lines[-2].get_marker() == "*"
    assert legend_labels(ax) == ["GD", "manual", "least squares θ*", "fixed point"]
    assert all_finite(ax)
    # default window: centred on the optimum, reaching past the start (0, 0)
    lo, hi = ax.get_xlim()
    assert lo < 0.0 < hi and (lo + hi) / 2 == pytest.approx(star[0])


def test_contours_equal_scales_labelled_levels_markers_on_top(data):
    X, y = data
    star = np.linalg.lstsq(np.hstack([np.ones((len(y), 1)), X]), y, rcond=None)[0]
    run = centralized_gd(X, y, lr=0.05, rounds=20)
    ax = plot_loss_contours(quadratic_slice(X, y, star), paths={"GD": run, "other": run.thetas[::-1]},
                            optimum=star, marks={"fixed point": star + 0.5}, span=(3.0, 0.5), levels=7)
    assert ax.get_aspect() == 1.0                     # one unit of θ0 is as long as one of θ1
    assert ax.get_xlim() == pytest.approx((star[0] - 3, star[0] + 3))
    assert ax.get_ylim() == pytest.approx((star[1] - 3, star[1] + 3))   # the larger half-width for both
    cs = ax.collections[0]
    labelled = sorted(float(t.get_text()) for t in cs.labelTexts)
    assert labelled and set(labelled) <= {float(f"{v:.3g}") for v in cs.levels}
    lines = ax.get_lines()
    paths, markers = lines[0::3][:2], lines[1:6:3] + lines[2:6:3] + lines[6:]
    assert len(markers) == 6
    assert min(m.get_zorder() for m in markers) > max(p.get_zorder() for p in paths) > cs.get_zorder()


def test_contours_precomputed_grid_keeps_its_limits_with_equal_aspect():
    T0, T1 = np.meshgrid(np.linspace(-1, 1, 9), np.linspace(-2, 2, 9))
    ax = plot_loss_contours((T0, T1, T0**2 + T1**2), levels=4)
    assert ax.get_aspect() == 1.0
    assert ax.get_xlim() == pytest.approx((-1, 1)) and ax.get_ylim() == pytest.approx((-2, 2))


def test_contours_diverging_path_keeps_the_window(data):
    X, y = data
    bad = centralized_gd(X, y, lr=1.0, rounds=200)
    ax = plot_loss_contours(quadratic_slice(X, y, np.zeros(2)), center=(0.0, 0.0), span=3.0,
                            paths={"bad": bad})
    assert ax.get_xlim() == pytest.approx((-3, 3))
    assert len(ax.get_lines()[0].get_xdata()) == bad.rounds + 1


def test_contours_reject_bad_input(data):
    X, y = data
    loss2d = quadratic_slice(X, y, np.zeros(2))
    with pytest.raises(ValueError, match="center is required"):
        plot_loss_contours(loss2d)
    with pytest.raises(ValueError, match="span"):
        plot_loss_contours(loss2d, center=(0, 0), span=-1.0)
    with pytest.raises(TypeError, match="loss2d"):
        plot_loss_contours("not a loss", center=(0, 0), span=1.0)
    with pytest.raises(ValueError, match="shaped like"):
        plot_loss_contours(lambda a, b: 1.0, center=(0, 0), span=1.0)
    with pytest.raises(ValueError, match="paths"):
        plot_loss_contours(loss2d, center=(0, 0), span=1.0, paths={"p": np.zeros(3)})


# ----------------------------------------------------------------- round diagram


@pytest.mark.parametrize("n", [1, 3, 5])
def test_round_diagram_has_server_parties_and_four_blocks(n):
    ax = plot_round_diagram(n_parties=n)
    texts = " ".join(t.get_text() for t in ax.texts)
    assert sum(t.get_text().startswith("Party") for t in ax.texts) == n
    for step in ("1. broadcast", "2. local work", "update Δ", "3. aggregate", "4. server update"):
        assert step in texts
    assert len(ax.patches) == 1 + n + 2 * n           # server, parties, two arrows each


@pytest.mark.parametrize("n", [1, 5])
def test_round_diagram_local_work_sits_in_the_parties_not_on_the_arrows(n):
    ax = plot_round_diagram(n_parties=n)
    server, *parties = [p for p in ax.patches if type(p).__name__ == "FancyBboxPatch"]
    assert len(parties) == n
    work = [t for t in ax.texts if t.get_text().startswith("2. local work")]
    assert len(work) == n
    for label, box in zip(work, parties, strict=True):   # each label inside its own party's box
        x, y = label.get_position()
        assert box.get_x() < x < box.get_x() + box.get_width()
        assert box.get_y() < y < box.get_y() + box.get_height()
    gap = (max(b.get_y() + b.get_height() for b in parties), server.get_y())   # where the arrows run
    between = [t.get_text() for t in ax.texts if gap[0] < t.get_position()[1] < gap[1]]
    assert between.count("θ") == n and "Δ$_1$, m$_1$" in between and "1. broadcast θ" in between
    assert not any("local work" in text for text in between)


def test_round_diagram_rejects_too_many_parties():
    with pytest.raises(ValueError, match="n_parties"):
        plot_round_diagram(n_parties=9)


def test_colors_by_label_keep_a_run_in_one_colour(data):
    X, y = data
    colors = {"b": "#123456"}
    ax1 = plot_losses({"a": [2.0, 1.0], "b": [3.0, 1.0]}, colors=colors)
    ax2 = plot_loss_contours(quadratic_slice(X, y, np.zeros(2)), center=(0, 0), span=1.0,
                             paths={"b": np.zeros((2, 2))}, colors=colors)
    assert ax1.get_lines()[1].get_color() == ax2.get_lines()[0].get_color() == "#123456"
    with pytest.raises(ValueError, match="colors"):
        plot_losses({"a": [1.0], "b": [1.0]}, colors=["red"])

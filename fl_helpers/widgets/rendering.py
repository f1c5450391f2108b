"""The shared drawing layer of the course's widgets: explorer, dashboard, learning-rate demo.

The widgets (:mod:`fl_helpers.widgets.explorer`, :mod:`fl_helpers.widgets.dashboard`,
:mod:`fl_helpers.widgets.lr_demo`) redraw a matplotlib figure on every slider move
and send it to the browser as PNG bytes. What they share lives here:

- figures outside pyplot with their own Agg canvas (:func:`agg_figure`) and
  their PNG bytes (:func:`render_png`);
- cheap axes: plain-text log ticks (:func:`plain_log_axis`,
  :func:`tick_label`, :func:`power_of_ten`), few ticks (:func:`few_ticks`),
  log limits (:func:`set_log_limits`);
- opaque legends (:data:`LEGEND_STYLE`, :func:`add_legend`) whose pixels a
  redraw reuses when they did not change (:func:`draw_reusing_legends`);
- the widgets' drawing state (:class:`ArtistCache`, shared as
  :data:`ARTISTS`): the artists a widget made on an Axes, found again on the
  next redraw so that it only updates their data.

Nothing is stored on matplotlib objects and no private matplotlib attribute is
read: the state lives in :data:`ARTISTS`, keyed weakly by the Axes, Figure or
Legend it belongs to, and goes away with it.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Mapping, MutableMapping

import numpy as np

__all__ = [
    "ARTISTS", "LEGEND_STYLE", "ArtistCache", "Artists", "add_legend", "agg_figure", "draw_reusing_legends",
    "few_ticks", "legend_loc", "plain_log_axis", "power_of_ten", "render_png", "set_log_limits", "tick_label",
]


# --------------------------------------------------------------------------- drawing state

class _ArtistRef(weakref.ref):
    """A weak reference to an artist held in :class:`Artists` (told apart from plain values)."""

    __slots__ = ()


def _is_artist(value) -> bool:
    from matplotlib.artist import Artist

    return isinstance(value, Artist)


class Artists(MutableMapping):
    """Named artists a widget drew (on one Axes or Figure), and plain values about them.

    A dict, except that matplotlib artists are held by *weak* reference: the
    figure owns its artists, this only finds them again, so it never keeps a
    figure alive. Other values (numbers, strings, tuples, ``None``, pixel
    buffers, ...) are held as they are and must not refer to the figure.
    :attr:`alive` is False once an artist has been garbage-collected (its
    Axes was cleared); :meth:`ArtistCache.get` then treats the entry as gone.
    """

    def __init__(self, items: Mapping | None = None, /, **values):
        self._items: dict = {}
        self.update(items or {}, **values)

    def __setitem__(self, name: str, value) -> None:
        self._items[name] = _ArtistRef(value) if _is_artist(value) else value

    def __getitem__(self, name: str):
        value = self._items[name]
        if isinstance(value, _ArtistRef):
            value = value()
            if value is None:
                raise KeyError(f"{name!r}: its artist no longer exists (the Axes was cleared)")
        return value

    def __delitem__(self, name: str) -> None:
        del self._items[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    @property
    def alive(self) -> bool:
        """True while every artist held still exists."""
        return all(v() is not None for v in self._items.values() if isinstance(v, _ArtistRef))

    def __repr__(self) -> str:
        return f"Artists({', '.join(self._items)})"


class ArtistCache:
    """The widgets' drawing state, found again from the matplotlib object it belongs to.

    ``cache.set(owner, name, {...})`` stores an :class:`Artists` entry for
    ``owner`` (an Axes, a Figure, a Legend) under ``name`` (which widget, or
    what for); ``cache.get(owner, name)`` returns it, or None when there is
    none (never drawn, forgotten, or its artists are gone). The entry is the
    same object each time, so changing it changes the cache.

    The owners are keys of a :class:`weakref.WeakKeyDictionary` and the
    entries hold their artists weakly (a value referring to its own key would
    keep it alive for ever): an owner's entries are garbage-collected with it.
    Nothing is set on the matplotlib objects themselves.
    """

    def __init__(self):
        self._owners: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def get(self, owner, name: str) -> Artists | None:
        """``owner``'s entry ``name``, or None."""
        entry = self._owners.get(owner, {}).get(name)
        return entry if entry is not None and entry.alive else None

    def set(self, owner, name: str, entry: Mapping | None) -> Artists | None:
        """Store ``entry`` (an :class:`Artists`, or a mapping made into one) as ``owner``'s ``name``.

        ``None`` forgets the entry. Returns what is stored.
        """
        if entry is None:
            self.forget(owner, name)
            return None
        if not isinstance(entry, Artists):
            entry = Artists(entry)
        self._owners.setdefault(owner, {})[name] = entry
        return entry

    def forget(self, owner, name: str | None = None) -> None:
        """Drop ``owner``'s entry ``name`` (all of its entries when ``name`` is None)."""
        entries = self._owners.get(owner)
        if entries is None:
            return
        if name is None:
            entries.clear()
        else:
            entries.pop(name, None)
        if not entries:
            del self._owners[owner]

    def clear(self) -> None:
        """Forget everything (the next draws rebuild their artists)."""
        self._owners.clear()

    def __len__(self) -> int:
        """How many owners have entries."""
        return len(self._owners)


#: The state of every widget figure in this kernel (see :class:`ArtistCache`).
ARTISTS = ArtistCache()


# --------------------------------------------------------------------------- figures and PNG

def agg_figure(figsize: tuple[float, float], *, dpi: float = 80, **subplots_adjust):
    """A figure outside pyplot with its own Agg canvas, laid out by ``subplots_adjust``.

    The canvas (and its pixel buffer) is reused by every :func:`render_png`.
    A fixed layout rather than ``constrained``: re-measuring every label on
    each redraw would cost more than a simulation.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(**subplots_adjust)
    return fig


def render_png(fig, *, compress_level: int = 1, palette: bool = False) -> bytes:
    """The figure as PNG bytes, for an ``ipywidgets.Image`` (or IPython's ``Image``).

    Renders with Agg on the figure's own canvas and encodes RGB with light
    zlib compression: at the explorer's size that is about 10 ms instead of
    the 20 ms of ``savefig``'s defaults, and no tight bounding box (which would
    draw everything twice). ``palette=True`` reduces to 256 colours, a file
    less than half the size for pictures saved in a notebook.
    """
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from PIL import Image

    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    draw_reusing_legends(canvas)
    rgba = Image.frombuffer("RGBA", canvas.get_width_height(), canvas.buffer_rgba(), "raw", "RGBA", 0, 1)
    image = rgba.convert("RGB")
    if palette:
        image = image.quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    buf = io.BytesIO()
    image.save(buf, format="png", compress_level=compress_level)
    return buf.getvalue()


# --------------------------------------------------------------------------- axes

_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def power_of_ten(exponent: int) -> str:
    """``6`` -> ``'10⁶'`` in plain text (no mathtext)."""
    return "10" + str(int(exponent)).translate(_SUPERSCRIPT)


def tick_label(value: float, _pos=None) -> str:
    """A log-axis tick in plain text: ``0.5``, ``20``, ``10⁶``, ``2×10⁻⁴``."""
    if value <= 0 or not np.isfinite(value):
        return ""
    if 1e-3 <= value < 1e4:
        return f"{value:g}"
    exponent = int(np.floor(np.log10(value) + 1e-9))
    mantissa = value / 10.0**exponent
    power = power_of_ten(exponent)
    return power if abs(mantissa - 1) < 1e-6 else f"{mantissa:g}×{power}"


def plain_log_axis(axis) -> None:
    """Log-scale ticks without minor ticks, labelled in plain text (see :func:`tick_label`).

    The default labels are mathtext (:math:`10^{0}`), whose parser costs
    about 10 ms per redraw.
    """
    from matplotlib.ticker import FuncFormatter, NullLocator

    axis.set_minor_locator(NullLocator())
    axis.set_major_formatter(FuncFormatter(tick_label))


def few_ticks(*axes, n: int = 5) -> None:
    """At most about ``n`` ticks on each linear axis: each tick label costs ~0.5 ms per redraw."""
    from matplotlib.ticker import MaxNLocator

    for axis in axes:
        axis.set_major_locator(MaxNLocator(n))


def set_log_limits(axis, lo: float, hi: float) -> None:
    """Set a log axis' view to [lo, hi]; ticks at 1, 2, 5 x 10^k when it spans few decades."""
    from matplotlib.ticker import LogLocator

    subs = (1.0, 2.0, 5.0) if hi / lo < 300 else (1.0,)
    axis.set_major_locator(LogLocator(subs=subs, numticks=12))
    if axis is axis.axes.yaxis:
        axis.axes.set_ylim(lo, hi)
    else:
        axis.axes.set_xlim(lo, hi)


# --------------------------------------------------------------------------- legends

#: Legends the widgets draw: opaque and square, so their pixels can be reused.
LEGEND_STYLE = {"framealpha": 1.0, "fancybox": False}


def add_legend(ax, *, loc: str, **options):
    """``ax.legend(loc=loc, **LEGEND_STYLE, **options)``, its place recorded for :func:`draw_reusing_legends`.

    Only legends made here have their pixels reused (matplotlib has no public
    getter for a legend's ``loc``); others are simply drawn every time.
    Returns the legend.
    """
    legend = ax.legend(loc=loc, **{**LEGEND_STYLE, **options})
    ARTISTS.set(legend, "legend", {"loc": loc})
    return legend


def legend_loc(legend):
    """The ``loc`` that :func:`add_legend` made ``legend`` with, or None for another legend."""
    entry = ARTISTS.get(legend, "legend")
    return None if entry is None else entry["loc"]


def _legend_key(legend) -> tuple:
    """What a legend's pixels depend on in these figures: place, font size, texts."""
    return (tuple(np.round(legend.axes.bbox.bounds, 3)), str(legend_loc(legend)), legend.prop.get_size(),
            tuple(t.get_text() for t in legend.texts))


def _reusable(legend) -> bool:
    """An opaque, framed, shadowless legend made by :func:`add_legend`: its inside can be pasted."""
    frame = legend.get_frame()
    return (legend.get_visible() and frame.get_visible() and frame.get_alpha() == 1.0
            and not legend.shadow and legend_loc(legend) is not None)


def draw_reusing_legends(canvas) -> None:
    """``canvas.draw()``, reusing the legends' pixels when no legend changed.

    Legends are a quarter of a redraw (each entry is text to lay out and
    rasterize), yet a slider move rarely changes them. After a full draw the
    *inside* of each opaque legend is copied (it depends only on the entries:
    :func:`_legend_key`), with the frame's place and size. The next draws
    with the same legends render the figure without them, draw each legend's
    frame (fill and border, over the current picture) where it was, and paste
    the copied inside into it: the same pixels as a full draw (tested), in
    about 30 % less time. The copies are kept in :data:`ARTISTS` under the
    figure (entry ``"legend pixels"``).
    """
    from matplotlib.transforms import Bbox

    fig = canvas.figure
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None and ax.get_visible()]
    legends = [lg for lg in legends if _reusable(lg)]
    key = (canvas.get_width_height(), tuple(_legend_key(lg) for lg in legends))
    cached = ARTISTS.get(fig, "legend pixels")
    if legends and cached is not None and cached["key"] == key:
        for lg in legends:
            lg.set_visible(False)
        try:
            canvas.draw()
        finally:
            for lg in legends:
                lg.set_visible(True)
        renderer = canvas.get_renderer()
        for lg, (bounds, scale), inside in zip(legends, cached["frames"], cached["insides"]):
            frame = lg.get_frame()          # placed as the legend's own draw would place it
            frame.set_bounds(*bounds)
            frame.set_mutation_scale(scale)
            frame.draw(renderer)
            canvas.restore_region(inside)
        return
    canvas.draw()
    frames, insides = [], []
    for lg in legends:
        frame = lg.get_frame()          # placed by the draw above, in pixels
        frames.append(((frame.get_x(), frame.get_y(), frame.get_width(), frame.get_height()),
                       frame.get_mutation_scale()))
        (x0, y0), (x1, y1) = frame.get_window_extent().get_points()
        inset = frame.get_linewidth() * fig.dpi / 72 / 2 + 0.5     # half the border, and snapping
        inside = Bbox.from_extents(np.ceil(x0 + inset), np.ceil(y0 + inset),
                                   np.floor(x1 - inset), np.floor(y1 - inset))
        insides.append(canvas.copy_from_bbox(inside))
    ARTISTS.set(fig, "legend pixels", {"key": key, "frames": frames, "insides": insides})


# --------------------------------------------------------------------------- widgets readable without a kernel

def picture_bundle(bundle: dict, png: bytes, note: str) -> dict:
    """A widget's display bundle plus a PNG of its current state and a plain-text note.

    Each front end shows the richest type it can render: JupyterLab and Voila
    the live widget (its view outranks ``image/png``), GitHub and nbconvert,
    which have no widget state, the picture; ``text/plain`` replaces the
    widget's repr (``VBox(children=...)``) everywhere else.
    """
    import base64
    import io

    from PIL import Image

    small = io.BytesIO()           # 256 colours: less than half the bytes in the saved notebook
    Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(
        small, format="png")
    bundle = dict(bundle or {})
    bundle["image/png"] = base64.b64encode(small.getvalue()).decode("ascii")
    bundle["text/plain"] = note
    return bundle


_LIVE_BOX = None


def live_box(children, *, picture, note: str):
    """An ``ipywidgets.VBox`` of ``children`` whose saved output also shows ``picture`` (an ``ipywidgets.Image``).

    It is a plain VBox in every other respect (same model, same children).
    """
    global _LIVE_BOX
    if _LIVE_BOX is None:
        import ipywidgets

        class LiveBox(ipywidgets.VBox):
            """A VBox displayed with a picture of its current state (see :func:`picture_bundle`)."""

            def _repr_mimebundle_(self, **kwargs):
                return picture_bundle(super()._repr_mimebundle_(**kwargs), self._picture.value, self._note)

        _LIVE_BOX = LiveBox
    box = _LIVE_BOX(children)
    box._picture, box._note = picture, note
    return box


class BoundedCache:
    """A widget's federation cache: built once per data setting, reused across redraws.

    Least recently used first out, at most ``maxsize`` entries. Subclasses say
    what an entry depends on (:meth:`key`) and how it is built (:meth:`build`);
    each engine is stored with the very parties it was built for, so a run
    always gets a matching pair.
    """

    def __init__(self, maxsize: int = 16):
        from .. import validation as valid

        self.maxsize = valid.integer("maxsize", maxsize, minimum=1)
        self._items: dict = {}

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        self._items.clear()

    def key(self, settings):                      # pragma: no cover - every subclass says
        raise NotImplementedError

    def build(self, settings):                    # pragma: no cover - every subclass says
        raise NotImplementedError

    def get(self, settings):
        """The entry for ``settings``' data knobs (built on first use)."""
        key = self.key(settings)
        if key in self._items:
            self._items[key] = self._items.pop(key)          # most recently used last
        else:
            if len(self._items) >= self.maxsize:
                self._items.pop(next(iter(self._items)))
            self._items[key] = self.build(settings)
        return self._items[key]


def panel(ax, fontsize: float, build, tag: str):
    """The artists stored on ``ax`` under ``tag``, created by ``build(ax)`` on first use (or after an error)."""
    art = ARTISTS.get(ax, tag)
    if art is None:
        ax.clear()
        ax.set_axis_on()
        ax.tick_params(labelsize=fontsize - 1)
        art = ARTISTS.set(ax, tag, build(ax))
    return art

"""A matplotlib canvas for docks, coloured like napari's current theme.

The napari-matplotlib pattern: one :class:`~matplotlib.figure.Figure` in a
``FigureCanvasQTAgg``, its background, text, ticks and spines taken from
``napari.utils.theme.get_theme(viewer.theme)`` and redrawn when the theme
changes. The canvas does not know what it draws: :meth:`ThemedCanvas.plot`
takes a function ``draw(ax)`` (the ``ax=`` functions of
:mod:`napari_pvm.core.stats.plots`), so the
same function renders the on-screen figure in the theme's colours and, in
:meth:`ThemedCanvas.save_png`, a paper-white PNG.
"""

import matplotlib as mpl
import matplotlib.style
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from qtpy.QtWidgets import QSizePolicy, QVBoxLayout, QWidget

__all__ = ["ThemedCanvas", "theme_colors", "theme_rc"]


def theme_colors(theme_id="dark"):
    """Background and text colours of a napari theme as ``#rrggbb``.

    Parameters
    ----------
    theme_id : str
        ``viewer.theme`` (``"dark"``, ``"light"``, ``"system"`` or a custom id).

    Returns
    -------
    dict
        ``background``, ``foreground`` (panels), ``text`` and ``type``
        (``"dark"`` or ``"light"``).
    """
    try:
        from napari.utils.theme import get_theme

        theme = get_theme(theme_id)
        return {
            "background": theme.background.as_hex(),
            "foreground": theme.foreground.as_hex(),
            "text": theme.text.as_hex(),
            "type": str(getattr(theme, "type", "dark")),
        }
    except (ImportError, ValueError, KeyError):
        return {"background": "#23242b", "foreground": "#2e333e", "text": "#f0f1f2", "type": "dark"}


def theme_rc(colors):
    """rcParams that colour new artists like the theme (cf. napari-matplotlib's style sheet)."""
    text = colors["text"]
    return {
        "figure.facecolor": colors["background"],
        "axes.facecolor": colors["background"],
        "savefig.facecolor": colors["background"],
        "axes.edgecolor": _mix(text, colors["background"], 0.35),
        "axes.labelcolor": text,
        "axes.titlecolor": text,
        "text.color": text,
        "xtick.color": text,
        "ytick.color": text,
        "xtick.labelcolor": text,
        "ytick.labelcolor": text,
        "legend.labelcolor": text,
        "legend.edgecolor": _mix(text, colors["background"], 0.6),
        "legend.facecolor": colors["foreground"],
        "grid.color": _mix(text, colors["background"], 0.8),
    }


def _mix(a, b, t):
    """Colour ``a`` moved a fraction ``t`` of the way to ``b``."""
    ra, rb = to_rgba(a), to_rgba(b)
    return tuple(x + t * (y - x) for x, y in zip(ra[:3], rb[:3], strict=True))


def _regrey(color, colors):
    """A grey drawn for a white page, re-mapped onto the theme (black → text, white → background)."""
    if color is None or (isinstance(color, str) and color.lower() == "none"):
        return color
    try:
        r, g, b, a = to_rgba(color)
    except ValueError:
        return color
    if a == 0 or max(r, g, b) - min(r, g, b) > 0.02:
        return color  # transparent or coloured: keep
    mixed = _mix(colors["text"], colors["background"], (r + g + b) / 3)
    return (*mixed, a)


def retheme(figure, colors):
    """Re-colour the greys that plotting code hard-coded for a white page.

    The core plots draw medians, limits of agreement and box outlines in
    black or grey, and hollow markers in white; on a dark theme those would
    vanish or glare. Only the data artists (lines, patches, collections and
    their legend handles) are touched: text, ticks and spines already have the
    theme's colours, and coloured artists (the ``C0``… cycle) keep theirs.
    """
    from matplotlib.lines import Line2D

    for ax in figure.axes:
        artists = [*ax.lines, *ax.patches, *ax.collections]
        legend = ax.get_legend()
        if legend is not None:
            artists += list(legend.legend_handles)
        for artist in artists:
            if isinstance(artist, Line2D):
                artist.set_color(_regrey(artist.get_color(), colors))
                artist.set_markerfacecolor(_regrey(artist.get_markerfacecolor(), colors))
                artist.set_markeredgecolor(_regrey(artist.get_markeredgecolor(), colors))
            elif hasattr(artist, "get_fill"):  # a Patch
                artist.set_edgecolor(_regrey(artist.get_edgecolor(), colors))
                if artist.get_fill():
                    artist.set_facecolor(_regrey(artist.get_facecolor(), colors))
            elif hasattr(artist, "get_facecolors") and len(artist.get_facecolors()) == 1:
                artist.set_facecolor(_regrey(tuple(artist.get_facecolors()[0]), colors))


class ThemedCanvas(QWidget):
    """One matplotlib figure in a Qt widget, in the colours of napari's theme.

    Parameters
    ----------
    viewer : napari.Viewer, optional
        Its ``theme`` sets the colours; the figure is redrawn when it changes.
        Without a viewer the dark theme is used.
    figsize : (float, float), optional
        Size of the paper PNG written by :meth:`save_png`, in inches.
    min_height : int, optional
        Minimum height on screen, in pixels.

    Attributes
    ----------
    figure : matplotlib.figure.Figure
    canvas : FigureCanvasQTAgg
    """

    def __init__(self, viewer=None, *, figsize=(5.0, 4.0), min_height=260, parent=None):
        super().__init__(parent)
        self.viewer = viewer
        self.figsize = figsize
        self.figure = Figure(layout="constrained")
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(min_height)
        self.canvas.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.canvas)
        self._draw = None  # the last draw(ax) function
        self._message = ""
        if viewer is not None:
            viewer.events.theme.connect(self._on_theme)
        self.show_message("")

    @property
    def colors(self):
        """The current theme's colours (see :func:`theme_colors`)."""
        return theme_colors(self.viewer.theme if self.viewer is not None else "dark")

    @property
    def has_plot(self):
        """Whether the canvas shows a plot (not a message)."""
        return self._draw is not None

    @property
    def axes(self):
        """The Axes of the plot shown, or None."""
        return self.figure.axes[0] if self._draw is not None and self.figure.axes else None

    def plot(self, draw):
        """Draw ``draw(ax)`` on a fresh Axes in the theme's colours.

        Exceptions of ``draw`` propagate, leaving a blank canvas.
        """
        self._draw, self._message = None, ""
        self._render(self.figure, draw, self.colors)
        self._draw = draw
        self.canvas.draw_idle()

    def show_message(self, text):
        """Clear the figure and show ``text`` in its middle (why there is no plot)."""
        self._draw, self._message = None, text
        colors = self.colors
        self.figure.clear()
        self.figure.set_facecolor(colors["background"])
        if text:
            self.figure.text(
                0.5,
                0.5,
                text,
                ha="center",
                va="center",
                wrap=True,
                color=_mix(colors["text"], colors["background"], 0.3),
                fontsize=9,
            )
        self.canvas.draw_idle()

    @property
    def message(self):
        """The message shown instead of a plot ("" when there is a plot)."""
        return self._message

    def redraw(self):
        """Draw the current plot (or message) again, e.g. after a theme change."""
        if self._draw is not None:
            self.plot(self._draw)
        else:
            self.show_message(self._message)

    def save_png(self, path, *, dpi=150):
        """Write the plot shown as a PNG for a paper: white background, matplotlib's defaults.

        Returns
        -------
        bool
            False (nothing written) when the canvas shows no plot.
        """
        if self._draw is None:
            return False
        from ..core.stats.plots import figure_png

        with matplotlib.style.context("default"):
            figure = Figure(figsize=self.figsize, layout="constrained")
            self._draw(figure.add_subplot())
            data = figure_png(figure, dpi=dpi)
        with open(path, "wb") as handle:
            handle.write(data)
        return True

    # ---------------------------------------------------------------- private
    @staticmethod
    def _render(figure, draw, colors):
        figure.clear()
        with mpl.rc_context(theme_rc(colors)):
            figure.set_facecolor(colors["background"])
            ax = figure.add_subplot()
            try:
                draw(ax)
            except Exception:
                figure.clear()
                raise
        retheme(figure, colors)

    def _on_theme(self, event=None):
        self.redraw()

"""Outline and sample bookkeeping behind the Measure dock.

napari's Shapes layer draws; this controller keeps what the drawing means:

- identity: every outline is one muscle (``features["roi"]``), every sample
  one class (``features["class"]``); a new shape (drawn or pasted) becomes
  the muscle chosen in the draw list and replaces that muscle's older
  outline, so no muscle is ever outlined twice;
- colour: recomputed from the identity after every change, so a just-drawn
  outline keeps its muscle's colour whatever is chosen next;
- origin (contract 7): ``drawn``, ``proposed`` or ``edited`` (the mask
  differs from the proposal's), in ``features["origin"]``;
- overlaps: a new or edited outline is clipped to its neighbours at once
  (:func:`napari_pvm.core.clip.clip_outline`); a clip that would split it or
  leave a hole is refused and its place marked on the canvas;
- undo: every completed operation on the outlines or samples can be undone,
  :data:`UNDO_DEPTH` steps deep (napari's Shapes layer has no undo).

Nothing here changes a layer while napari is in the middle of drawing on it:
events only schedule a check (``QTimer.singleShot(0)``), and the check waits
until the layer has finished drawing.
"""

import numpy as np
import pandas as pd
from qtpy.QtCore import QTimer

from ..core import schema
from ..core.clip import ClipError, clip_outline
from ..core.errors import AnnotationError
from ..core.rois import roi_mask
from ._style import ROI_COLORS, SAMPLE_COLORS

#: Operations the undo stack keeps.
UNDO_DEPTH = 50
ORIGINS = ("drawn", "proposed", "edited")


class _Snapshot:
    """The outlines and samples at one moment (what undo restores)."""

    __slots__ = ("outlines", "samples")

    def __init__(self, outlines, samples):
        self.outlines = outlines  # [(vertices, roi, origin)]
        self.samples = samples  # [(vertices, class)]

    def same_as(self, other):
        return other is not None and _same(self.outlines, other.outlines) and _same(self.samples, other.samples)


def _same(a, b):
    """Whether two lists of (vertices, identity…) entries are equal."""
    return len(a) == len(b) and all(
        x[1:] == y[1:] and x[0].shape == y[0].shape and np.allclose(x[0], y[0]) for x, y in zip(a, b)
    )


class OutlineController:
    """Keeps the outlines and samples layers of one image consistent.

    Parameters
    ----------
    outlines, samples : napari.layers.Shapes
        The layers (roles ``outlines`` and ``samples``).
    image : napari.layers.Image
        The image they belong to (for the slice shape and coordinates).
    slice_index : callable
        Returns the marked slice index (or None).
    target : callable
        Returns the draw-list choice: a roi key or ``"fat"`` / ``"muscle"``.
    on_change : callable
        Called after every settled change (the dock refreshes its list and
        advances the draw list).
    notify : callable
        ``notify(message, level)``.
    """

    def __init__(self, outlines, samples, image, *, slice_index, target, on_change, notify, marker=None):
        self.outlines = outlines
        self.samples = samples
        self.image = image
        self._slice_index = slice_index
        self._target = target
        self._on_change = on_change
        self._notify = notify
        self._marker = marker  # callable(location or None, text)
        self.undo_stack = []
        self.proposals = {}  # roi key -> proposal vertices (image [row, col])
        self.problems = {}  # roi key -> message of a refused clip
        self._applying = False
        self._cancel = False
        self._scheduled = False
        self._data_event_seen = False
        self._state = self.snapshot()
        for layer in (outlines, samples):
            layer.events.data.connect(self._on_event)
            layer.events.features.connect(self._on_event)  # pastes emit only this

    # ----------------------------------------------------------- state
    def snapshot(self):
        o, s = self.outlines, self.samples
        rois = list(o.features["roi"]) if "roi" in o.features and len(o.data) else []
        origins = list(o.features["origin"]) if "origin" in o.features and len(o.data) else []
        origins += ["drawn"] * (len(rois) - len(origins))
        classes = list(s.features["class"]) if "class" in s.features and len(s.data) else []
        return _Snapshot(
            [(np.array(v, dtype=float), r, g) for v, r, g in zip(o.data, rois, origins)],
            [(np.array(v, dtype=float), c) for v, c in zip(s.data, classes)],
        )

    def _apply(self, snap):
        """Show ``snap`` in the layers (no undo record, no clipping). A layer
        that already shows its part is left alone: napari re-triangulates
        every polygon of a layer whose data is set."""
        shown = self.snapshot()
        colors_ok = self._colors_ok()
        self._applying = True
        try:
            if not (colors_ok and _same(shown.outlines, snap.outlines)):
                _set_layer(
                    self.outlines,
                    [v for v, _, _ in snap.outlines],
                    {
                        "roi": pd.Categorical([r for _, r, _ in snap.outlines], categories=schema.ROI_KEYS),
                        "origin": pd.Categorical([g for _, _, g in snap.outlines], categories=ORIGINS),
                    },
                    [ROI_COLORS.get(r, "white") for _, r, _ in snap.outlines],
                )
            if not (colors_ok and _same(shown.samples, snap.samples)):
                _set_layer(
                    self.samples,
                    [v for v, _ in snap.samples],
                    {"class": pd.Categorical([c for _, c in snap.samples], categories=schema.SAMPLE_CLASSES)},
                    [SAMPLE_COLORS.get(c, "white") for _, c in snap.samples],
                )
        finally:
            self._applying = False
        self._state = snap

    def record(self, snap):
        """Make ``snap`` the current state, keeping the previous one for undo."""
        if snap.same_as(self._state):
            return False
        self.undo_stack.append(self._state)
        del self.undo_stack[:-UNDO_DEPTH]
        self._apply(snap)
        return True

    def undo(self):
        """Revert the last outline or sample operation; False when there is none."""
        if self.busy():
            return False
        self.sync_now()
        if not self.undo_stack:
            return False
        self._apply(self.undo_stack.pop())
        self.problems.clear()
        self._show_marker(None, "")
        self._on_change()
        return True

    def mid_draw(self):
        """Whether a polygon is being drawn right now (napari's drawing state)."""
        return any(layer._is_creating and layer._moving_value[0] is not None for layer in (self.outlines, self.samples))

    def settled(self):
        """What the layers hold once the pending change settles, computed
        without touching them (safe inside napari's own event emission; a
        polygon still being drawn is left out)."""
        if not self.busy():
            self.sync_now()
            return self._state
        if self.mid_draw() or self._cancel:
            return self._state
        now = self.snapshot()
        return now if now.same_as(self._state) else self._resolve(now, quiet=True)

    def busy(self):
        """Whether napari is drawing, or emitting a data event of these layers:
        changing a layer then would pull the ground from under napari's own
        code (the redraw TypeError); the change settles right after."""
        return any(
            layer._is_creating
            or getattr(layer.events.data, "_emitting", False)
            or getattr(layer.events.features, "_emitting", False)
            for layer in (self.outlines, self.samples)
        )

    # ---------------------------------------------------------- events
    def _on_event(self, event=None):
        if self._applying or _in_progress(event):
            return
        if getattr(event, "type", "data") == "data":
            self._data_event_seen = True
        self.schedule()

    def schedule(self, delay=0):
        if not self._scheduled:
            self._scheduled = True
            QTimer.singleShot(delay, self._settle)

    def _settle(self):
        self._scheduled = False
        if self.busy():  # napari is still drawing: look again later
            self.schedule(30)
            return
        self.sync_now()

    def cancel_drawing(self):
        """Escape: drop the polygon in progress (nothing else changes)."""
        for layer in (self.outlines, self.samples):
            if layer._is_creating:
                self._cancel = True
                layer._finish_drawing()
        self.schedule()

    def sync_now(self):
        """Bring the layers' content in line with the rules and record it."""
        if self._applying or self.busy():
            return
        if self._cancel:
            self._cancel = False
            self._apply(self._state)
            self._on_change()
            return
        now = self.snapshot()
        if now.same_as(self._state):
            return
        snap = self._resolve(now)
        seen, self._data_event_seen = self._data_event_seen, False
        # a paste changes the layer without a data event: apply, so that data listeners hear of it
        if seen and snap.same_as(now) and self._colors_ok():
            # nothing to correct: keep napari's selection (copy, move again …)
            self.undo_stack.append(self._state)
            del self.undo_stack[:-UNDO_DEPTH]
            self._state = now
        else:
            self.record(snap)
        self._on_change()

    def _colors_ok(self):
        from napari.utils.colormaps.standardize_color import transform_color

        for layer, feature, colors in ((self.outlines, "roi", ROI_COLORS), (self.samples, "class", SAMPLE_COLORS)):
            if not len(layer.data):
                continue
            want = transform_color([colors.get(k, "white") for k in layer.features[feature]])
            if not np.allclose(np.asarray(layer.edge_color)[:, :3], want[:, :3], atol=1 / 255):
                return False
        return True

    # ------------------------------------------------------- the rules
    def _resolve(self, now, *, quiet=False):
        before = self._state
        outlines = self._resolve_outlines(before.outlines, now.outlines, quiet=quiet)
        target = self._target()
        samples = []
        for v, c in now.samples:
            if c not in schema.SAMPLE_CLASSES:
                c = target if target in schema.SAMPLE_CLASSES else "fat"
            samples.append((v, c))
        return _Snapshot(outlines, samples)

    def _resolve_outlines(self, old, new, *, quiet=False):
        """The outlines ``new`` under the rules (identity, replacement, clipping,
        origin); ``quiet``: compute only (no messages, markers or bookkeeping)."""
        target = self._target()
        n_old = len(old)
        kept = []  # (vertices, roi, origin, status) status: "new" | "changed" | "same"
        # shapes beyond the old count are new (drawn or pasted); the others keep their order
        for i, (v, r, g) in enumerate(new):
            if i >= n_old and len(new) > n_old:
                kept.append([v, None, "drawn", "new"])
            else:
                j = i if len(new) >= n_old else None
                same = j is not None and old[j][0].shape == v.shape and np.allclose(old[j][0], v)
                status = "same" if same else "changed"
                if len(new) < n_old:  # removal: match by identity, not position
                    status = "same" if any(o[0].shape == v.shape and np.allclose(o[0], v) for o in old) else "changed"
                kept.append([v, r, g, status])
        # identities of new shapes: the draw-list choice, then the next missing muscles
        present = {e[1] for e in kept if e[3] != "new"}
        choice = target if target in schema.ROI_KEYS else None
        for entry in kept:
            if entry[3] != "new":
                continue
            key = choice
            if key is None or any(e[1] == key and e is not entry and e[3] == "new" for e in kept):
                missing = [k for k in schema.ROI_KEYS if k not in present]
                key = missing[0] if missing else None
            entry[1] = key
            present.add(key)
            choice = None
        # a new outline replaces the older outline of its muscle
        new_keys = {e[1] for e in kept if e[3] == "new"}
        kept = [e for e in kept if e[1] is not None and not (e[3] != "new" and e[1] in new_keys)]
        if not quiet:
            for key in new_keys:
                self.proposals.pop(key, None)  # drawn again: no longer a proposal
        # clip new and edited outlines to their neighbours, in drawing order
        for entry in kept:
            if entry[3] == "same":
                continue
            key = entry[1]
            if not quiet:
                self.problems.pop(key, None)
            others = {e[1]: self._to_image(e[0]) for e in kept if e is not entry}
            try:
                res = clip_outline(self._to_image(entry[0]), others, shape=self._shape(), name=key)
            except ClipError as exc:
                if not quiet:
                    self.problems[key] = str(exc)
                    self._show_marker(exc.location, f"{key}: {'split' if 'pieces' in str(exc) else 'hole'}")
                    self._notify(str(exc), "warning")
                continue
            if res.changed:
                entry[0] = self._from_image(res.vertices, entry[0])
            if res.changed and not quiet:
                self._notify(
                    f"{key} clipped to {', '.join(res.clipped_by)}: {res.removed_pixels} shared "
                    "pixels now belong to the neighbour only",
                    "info",
                )
            if entry[2] in ("proposed", "edited"):
                entry[2] = "edited" if self._differs_from_proposal(key, entry[0]) else "proposed"
        if not self.problems and not quiet:
            self._show_marker(None, "")
        order = {k: i for i, k in enumerate(schema.ROI_KEYS)}
        kept.sort(key=lambda e: order[e[1]])
        return [(e[0], e[1], e[2]) for e in kept]

    def _differs_from_proposal(self, key, vertices):
        proposal = self.proposals.get(key)
        if proposal is None:
            return True
        shape = self._shape()
        return not np.array_equal(roi_mask(self._to_image(vertices), shape), roi_mask(proposal, shape))

    # ------------------------------------------------------ proposals
    def set_proposals(self, proposed):
        """Add proposed outlines ({key: image [row, col] vertices}) for the
        muscles not outlined yet; returns the keys added."""
        self.sync_now()
        current = self._state
        present = {r for _, r, _ in current.outlines}
        outlines = list(current.outlines)
        added = []
        for key in schema.ROI_KEYS:
            if key not in proposed or key in present:
                continue
            verts = np.asarray(proposed[key], dtype=float)
            self.proposals[key] = verts
            others = {r: self._to_image(v) for v, r, _ in outlines}
            try:
                res = clip_outline(verts, others, shape=self._shape(), name=key)
            except ClipError as exc:
                self._notify(f"proposal for {key} not used: {exc}", "warning")
                continue
            origin = "edited" if res.changed else "proposed"
            outlines.append((self._from_image(res.vertices, None), key, origin))
            added.append(key)
        order = {k: i for i, k in enumerate(schema.ROI_KEYS)}
        outlines.sort(key=lambda e: order[e[1]])
        self.record(_Snapshot(outlines, list(current.samples)))
        self._on_change()
        return added

    # -------------------------------------------------------- reshape
    def reshape(self, stroke, *, spacing, prefer=None, other_side=False, replace_last=False):
        """Reshape the outline whose border the stroke (image ``[row, col]``
        points) starts and ends on (:mod:`napari_pvm.core.reshape`); on a
        shared border the stroke is the neighbour's new border too.
        One undo step; ``replace_last`` applies the stroke to the state
        before the last operation instead and replaces that operation's
        result (the last stroke the other way round). Returns ``(key,
        ReshapeResult)``; raises
        :class:`~napari_pvm.core.errors.AnnotationError` (nothing changes).
        """
        from ..core.reshape import reshape_neighbours, reshape_outline, reshape_target

        self.sync_now()
        if replace_last and not self.undo_stack:
            raise AnnotationError("there is no stroke to turn round")
        state = self.undo_stack[-1] if replace_last else self._state
        shape = self._shape()
        current = {r: self._to_image(v) for v, r, _ in state.outlines}
        key = reshape_target(current, stroke, spacing=spacing, prefer=prefer, shape=shape)
        result = reshape_outline(current[key], stroke, shape=shape, spacing=spacing, other_side=other_side, name=key)
        # the stroke is the new border of both outlines where they share one
        others = {r: v for r, v in current.items() if r != key}
        moved = reshape_neighbours(key, current[key], result.vertices, others, shape=shape)
        moved[key] = result.vertices
        outlines = []
        for v, r, g in state.outlines:
            new = moved.get(r)
            if new is not None:
                v = self._from_image(new, v)
                if g in ("proposed", "edited"):
                    g = "edited" if self._differs_from_proposal(r, v) else "proposed"
            outlines.append((v, r, g))
        self.problems.clear()
        self._show_marker(None, "")
        snap = _Snapshot(outlines, list(state.samples))
        if replace_last:
            self._apply(snap)  # undo still goes back to before the stroke
        else:
            self.record(snap)
        self._on_change()
        return key, result

    # ------------------------------------------------------- geometry
    def _shape(self):
        return tuple(self.image.data.shape[-2:])

    def _to_image_3d(self, vertices):
        """Layer data vertices → image data coordinates (all axes)."""
        from . import _layers

        return _layers._to_image_data(self.outlines, self.image, vertices)

    def _to_image(self, vertices):
        """Layer data vertices → [row, col] of the image slice."""
        from . import _layers

        return _layers._to_image_data(self.outlines, self.image, vertices)[:, -2:]

    def _from_image(self, rc, like):
        """[row, col] of the image → layer data vertices on the marked slice."""
        rc = np.asarray(rc, dtype=float)
        if self.image.ndim == 3:
            k = self._slice_index()
            if k is None and like is not None:
                k = float(np.asarray(like)[0, 0])
            rc = np.column_stack([np.full(len(rc), float(k or 0)), rc])
        world = np.array([self.image.data_to_world(p) for p in rc])
        return np.array([self.outlines.world_to_data(w) for w in world])

    def _show_marker(self, location, text):
        if self._marker is not None:
            self._marker(location, text)

    def disconnect(self):
        for layer in (self.outlines, self.samples):
            for emitter in (layer.events.data, layer.events.features):
                try:
                    emitter.disconnect(self._on_event)
                except (TypeError, ValueError, RuntimeError):
                    pass


def _in_progress(event):
    """Whether a layer event announces a change still under way (napari's
    ``adding``/``removing``/``changing``); the finished event follows."""
    action = str(getattr(event, "action", "") or "").lower().rsplit(".", 1)[-1]
    return action in ("adding", "removing", "changing")


def _set_layer(layer, vertices, features, colors):
    """Replace a Shapes layer's polygons, features and edge colours."""
    layer.selected_data = set()
    if len(vertices):
        layer.data = [(np.asarray(v, dtype=float), "polygon") for v in vertices]
        layer.features = pd.DataFrame(features)
        layer.edge_color = colors
    elif len(layer.data):
        layer.data = []
        layer.features = pd.DataFrame({k: v[:0] for k, v in features.items()})
    layer.refresh_text() if hasattr(layer, "refresh_text") else None

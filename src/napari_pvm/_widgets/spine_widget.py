"""Spine measures dock: VBQ score and local kyphotic angle on a sagittal slice (contract 8).

On the mid-sagittal slice the observer draws an ROI in the cancellous bone
of each of L1–L4 and one in the CSF at L3, marks levels to exclude with a
reason, and draws two endplate lines; the dock shows VBQ, the per-level
medians, the angle and warnings as soon as anything changes. The core
(:mod:`napari_pvm.core.spine`) measures; this dock only keeps what each
shape means, undo, and the files.

Every control has a method of the same meaning: :meth:`mark_slice`,
:meth:`choose`, :meth:`exclude`, :meth:`include`, :meth:`measure`,
:meth:`annotation`, :meth:`results`, :meth:`add_to_csv`,
:meth:`save_annotation`, :meth:`load_annotation`, :meth:`undo`,
:meth:`confirm_anterior`; and a key (see :data:`KEYS`).

A reading session (``session_widget``) drives the dock per case through
:meth:`reset_case`, :meth:`load_annotation` (``start=True``),
:meth:`remember_row`, :meth:`cancel_drawing`, the hooks ``path_guard`` (which
files *Load…* / *Save…* may use, and whether a row may be added) and
``view_guard`` (marking only while the
sagittal image is shown), and the signals :attr:`SpineWidget.changed`
(something drawn, deleted or excluded: save it) and
:attr:`SpineWidget.row_added` (a row went to the shared spine CSV).
"""

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from psygnal import Signal
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..core.errors import PvmError
from ..core.spine import CSF_LEVELS, EXCLUSION_REASONS, VBQ_LEVELS
from . import _layers
from ._dock import RefusingDock
from ._outlines import _in_progress

#: What can be drawn, in the order the dock proposes them.
ROI_PARTS = (*VBQ_LEVELS, "CSF")
LINE_PARTS = ("upper", "lower")
PARTS = ROI_PARTS + LINE_PARTS
PART_LABELS = {
    **{lv: f"{lv} ROI" for lv in VBQ_LEVELS},
    "CSF": "CSF ROI",
    "upper": "upper endplate line",
    "lower": "lower endplate line",
}
PART_COLORS = {
    "L1": "#4fc3f7",
    "L2": "#81c784",
    "L3": "#ffb74d",
    "L4": "#ba68c8",
    "CSF": "#ffffff",
    "upper": "#ffeb3b",
    "lower": "#ff5252",
}
LAYER_ROLE = "spine"
#: Annotation key (an extra key of contract 8) of a single endplate line drawn
#: so far: ``{"part": "upper" | "lower", "points": [[r0, c0], [r1, c1]]}``.
UNPAIRED_KEY = "unpaired_line"
UNDO_DEPTH = 50

#: Keys of the Spine measures dock. ``Shift-K`` works on the viewer; the
#: others on the dock's shapes layer (active while drawing).
KEYS = {
    "Shift-K": "mark the slice shown as the mid-sagittal slice",
    "n": "next part to draw (L1 … L4, CSF, upper line, lower line)",
    "Shift-N": "previous part to draw",
    "x": "exclude / include the chosen level (with the reason chosen in the dock)",
    "Control-Z": "undo the last drawing, deletion or exclusion",
    "Control-Enter": "add the row to the shared spine CSV",
}


class SpineWidget(RefusingDock, QWidget):
    """Measure VBQ and the local kyphotic angle on the mid-sagittal slice."""

    #: Emitted with the stored row (``row_id`` included) after a successful add.
    row_added = Signal(dict)
    #: Emitted when what is drawn (shapes, exclusions, CSF level, slice) settled after a change.
    changed = Signal()

    def __init__(self, napari_viewer):
        super().__init__()
        # plugins get a proxy that wraps layers anew on every access; the dock
        # keeps layer objects (identity, events), so it works on the viewer itself
        self.viewer = getattr(napari_viewer, "__wrapped__", napari_viewer)
        self.slice_index = None
        self.layer = None  # the shapes layer of the current image
        self.result = None  # last SpineResult
        self.row = None  # last row (dict)
        self.anterior = None  # {"side_in_file": ..., "source": "observer"} for radiographs
        self._state = None  # (parts snapshot, excluded) as last settled
        self.undo_stack = []
        self._scheduled = False
        self._applying = False
        self._hooked = set()  # unique_id of shapes layers whose events we follow
        self.notify = _notify
        self.confirm = self._confirm  # (title, text) -> bool; tests answer it
        self._added = {}  # (drawing digest, CSV, patient, observer, session) -> row_id added
        # set by a reading session: path_guard(path, "load" | "save" | "append") raises PvmError to refuse
        self.path_guard = None
        # set by a reading session: view_guard() raises PvmError when this dock's image is not shown
        self.view_guard = None
        self._image = None  # the image layer chosen in the image list
        self._named = set()  # unique_id of image layers whose renaming we follow
        self._build()
        self.viewer.layers.events.inserted.connect(self._refresh_images)
        self.viewer.layers.events.removed.connect(self._refresh_images)
        self.viewer.bind_key("Shift-K", _key(self, self.mark_slice), overwrite=True)
        self._refresh_images()

    # ------------------------------------------------------------ layout
    def _build(self):
        layout = QVBoxLayout(self)
        case = QFormLayout()
        self.image_combo = QComboBox()
        self.image_combo.currentIndexChanged.connect(self._on_image_changed)
        case.addRow("image", self.image_combo)
        self.mark_button = QPushButton("Mark mid-sagittal slice (Shift-K)")
        self.mark_button.clicked.connect(lambda: self._run(self.mark_slice))
        self.slice_label = QLabel("slice: not marked")
        case.addRow(self.mark_button)
        case.addRow("", self.slice_label)
        self.anterior_label = QLabel()
        self.anterior_label.setWordWrap(True)
        self.anterior_left = QPushButton("anterior is on the left")
        self.anterior_right = QPushButton("anterior is on the right")
        self.anterior_left.clicked.connect(lambda: self._run(self.confirm_anterior, "left"))
        self.anterior_right.clicked.connect(lambda: self._run(self.confirm_anterior, "right"))
        anterior = QHBoxLayout()
        anterior.addWidget(self.anterior_left)
        anterior.addWidget(self.anterior_right)
        self.anterior_box = QWidget()
        box = QVBoxLayout(self.anterior_box)
        box.setContentsMargins(0, 0, 0, 0)
        box.addWidget(self.anterior_label)
        box.addLayout(anterior)
        self.anterior_box.setVisible(False)
        case.addRow(self.anterior_box)
        layout.addLayout(case)

        draw = QGroupBox("Draw (n: next part)")
        form = QFormLayout(draw)
        self.part_combo = QComboBox()
        for part in PARTS:
            self.part_combo.addItem(PART_LABELS[part], part)
        self.part_combo.currentIndexChanged.connect(lambda *_: self._arm())
        form.addRow("next", self.part_combo)
        self.csf_level_combo = QComboBox()
        self.csf_level_combo.addItems(CSF_LEVELS)
        self.csf_level_combo.setToolTip("L3 by definition; L2 or L1 when the CSF at L3 is obscured")
        self.csf_level_combo.currentIndexChanged.connect(lambda *_: self._changed())
        form.addRow("CSF at", self.csf_level_combo)
        self.missing_label = QLabel()
        self.missing_label.setWordWrap(True)
        form.addRow("", self.missing_label)
        layout.addWidget(draw)

        excl = QGroupBox("Exclude levels (x)")
        grid = QGridLayout(excl)
        self.exclude_checks, self.reason_combos = {}, {}
        for i, level in enumerate(VBQ_LEVELS):
            check = QCheckBox(level)
            reason = QComboBox()
            reason.setEditable(True)
            reason.addItems(EXCLUSION_REASONS)
            check.toggled.connect(lambda on, lv=level: self._on_exclude_toggled(lv, on))
            reason.currentTextChanged.connect(lambda *_: self._changed())
            grid.addWidget(check, i, 0)
            grid.addWidget(reason, i, 1)
            self.exclude_checks[level], self.reason_combos[level] = check, reason
        layout.addWidget(excl)

        results = QGroupBox("Results")
        res = QVBoxLayout(results)
        self.vbq_label = QLabel("VBQ: –")
        self.angle_label = QLabel("local kyphotic angle: –")
        self.levels_label = QLabel()
        self.levels_label.setWordWrap(True)
        self.warnings_label = QLabel()
        self.warnings_label.setWordWrap(True)
        self.warnings_label.setStyleSheet("color: #ffb74d")
        for w in (self.vbq_label, self.levels_label, self.angle_label, self.warnings_label):
            res.addWidget(w)
        layout.addWidget(results)

        ids = QGroupBox("Case")
        form = QFormLayout(ids)
        self.patient_edit = QLineEdit()
        self.observer_edit = QLineEdit()
        self.session_edit = QLineEdit("read1")
        form.addRow("patient ID", self.patient_edit)
        form.addRow("observer ID", self.observer_edit)
        form.addRow("session", self.session_edit)
        layout.addWidget(ids)

        csv_row = QHBoxLayout()
        self.csv_edit = QLineEdit()
        self.csv_edit.setPlaceholderText("shared spine CSV")
        browse = QPushButton("…")
        browse.clicked.connect(self._browse_csv)
        csv_row.addWidget(self.csv_edit)
        csv_row.addWidget(browse)
        layout.addLayout(csv_row)
        self.add_button = QPushButton("Add to the shared spine CSV (Ctrl-Enter)")
        self.add_button.clicked.connect(lambda: self._run(self.add_to_csv))
        layout.addWidget(self.add_button)
        files = QHBoxLayout()
        self.undo_button = QPushButton("Undo (Ctrl-Z)")
        self.undo_button.clicked.connect(lambda: self._run(self.undo))
        save = QPushButton("Save annotation…")
        load = QPushButton("Load annotation…")
        save.clicked.connect(lambda: self._run(self.save_annotation))
        load.clicked.connect(lambda: self._run(self.load_annotation))
        files.addWidget(self.undo_button)
        files.addWidget(save)
        files.addWidget(load)
        layout.addLayout(files)
        layout.addStretch(1)
        self._update_missing()

    # ------------------------------------------------------------ image
    def _image_layers(self):
        out = []
        for layer in self.viewer.layers:
            meta = layer.metadata.get("napari_pvm")
            role = meta.get("role") if isinstance(meta, dict) else meta
            if layer._type_string == "image" and role is None and layer.ndim in (2, 3):
                out.append(layer)
        return out

    def _refresh_images(self, event=None):
        layers = self._image_layers()
        for layer in layers:  # a renamed image stays the dock's image (its name is only a label)
            if layer.unique_id not in self._named:
                layer.events.name.connect(self._refresh_images)
                self._named.add(layer.unique_id)
        kept = self.image
        current = kept.name if kept is not None else self.image_combo.currentText()
        names = [layer.name for layer in layers]
        self.image_combo.blockSignals(True)
        self.image_combo.clear()
        self.image_combo.addItems(names)
        if current in names:
            self.image_combo.setCurrentText(current)
        elif names:
            # prefer a sagittal image
            sag = [n for n in names if self._meta(self.viewer.layers[n]).get("plane") == "sagittal"]
            self.image_combo.setCurrentText((sag or names)[-1])
        self.image_combo.blockSignals(False)
        if self._chosen_layer() is not kept or kept is None and self.image_combo.currentText() != current:
            self._on_image_changed()

    @staticmethod
    def _meta(layer):
        meta = layer.metadata.get("napari_pvm")
        return meta if isinstance(meta, dict) else {}

    @property
    def image(self):
        """The image layer measured (by identity: renaming it changes nothing)."""
        image = self._image
        return image if image is not None and any(layer is image for layer in self.viewer.layers) else None

    def _chosen_layer(self):
        name = self.image_combo.currentText()
        return self.viewer.layers[name] if name in self.viewer.layers else None

    def _on_image_changed(self, *_):
        self._image = image = self._chosen_layer()
        self.layer = None
        self.slice_index = None
        self.undo_stack = []
        self._state = None
        for check in self.exclude_checks.values():  # another image is another case
            check.blockSignals(True)
            check.setChecked(False)
            check.blockSignals(False)
        if image is not None and self._find_layer(image) is not None:
            self._ensure_layer(image)  # back to an image drawn on before: its shapes count again
        self.slice_label.setText("slice: not marked")
        meta = self._meta(image) if image is not None else {}
        unconfirmed = meta.get("anterior_source") == "unconfirmed"
        self.anterior_box.setVisible(unconfirmed)
        if unconfirmed:
            self.anterior_label.setText(
                "This radiograph does not say where anterior is. Look at it and confirm the side "
                "before drawing (the angle's sign depends on it)."
            )
        self._changed()

    def _find_layer(self, image):
        return _layers.owned_layer(self.viewer, LAYER_ROLE, image)

    def _require_image(self):
        image = self.image
        if image is None:
            self._refuse("open a sagittal MRI or a lateral radiograph first")
        if self._meta(image).get("plane") == "axial":
            self._refuse(
                f"{image.name} is an axial image; spine measures need the sagittal series (or a lateral radiograph)"
            )
        return image

    def _current_slice(self, image):
        if image.ndim == 2:
            return 0
        world = list(self.viewer.dims.point)[-image.ndim :]
        k = int(round(float(image.world_to_data(world)[0])))
        return int(np.clip(k, 0, image.data.shape[0] - 1))

    def mark_slice(self):
        """Mark the slice shown as the mid-sagittal slice and start drawing."""
        image = self._require_image()
        if self.view_guard is not None:
            try:
                self.view_guard()
            except PvmError as exc:
                self._refuse(str(exc))
        self.slice_index = self._current_slice(image)
        self.slice_label.setText(f"mid-sagittal slice {self.slice_index}")
        self._ensure_layer(image)
        self._arm()
        self._changed()
        return self.slice_index

    def _ensure_layer(self, image):
        if self.layer is not None:
            return self.layer
        self.layer = self._find_layer(image)
        if self.layer is None:
            kwargs = dict(
                ndim=image.ndim,
                name=f"{image.name} spine",
                scale=image.scale,
                translate=image.translate,
                features={"part": pd.Categorical([], categories=PARTS)},
                face_color="transparent",
                edge_width=1.5,
                text={"string": "{part}", "color": "white", "size": 10, "anchor": "upper_left"},
                metadata=_layers._metadata(LAYER_ROLE, image),  # owned by identity, not by name
            )
            try:
                kwargs["units"] = image.units
            except AttributeError:
                pass
            self.layer = self.viewer.add_shapes(None, **kwargs)
        if self.layer.unique_id not in self._hooked:
            self.layer.events.data.connect(self._on_event)
            self.layer.events.features.connect(self._on_event)
            self._hooked.add(self.layer.unique_id)
        for key, action in {
            "n": lambda: self.step(+1),
            "Shift-N": lambda: self.step(-1),
            "x": self.toggle_exclusion,
            "Control-Z": self.undo,
            "Control-Enter": self.add_to_csv,
        }.items():
            self.layer.bind_key(key, _key(self, action), overwrite=True)
        self._state = self._snapshot()
        return self.layer

    # ------------------------------------------------------------ drawing
    @property
    def part(self):
        return self.part_combo.currentData()

    def choose(self, part):
        """Make the next shape drawn on the canvas ``part`` (L1–L4, CSF, upper, lower)."""
        if part not in PARTS:
            self._refuse(f"unknown part {part!r}; choose one of {', '.join(PARTS)}")
        self.part_combo.setCurrentIndex(PARTS.index(part))
        self._arm()

    def step(self, step):
        """Choose the next (+1) or previous (-1) part."""
        self.part_combo.setCurrentIndex((self.part_combo.currentIndex() + step) % len(PARTS))

    def _arm(self):
        layer = self.layer
        if layer is None or self.slice_index is None:
            return
        part = self.part
        layer.feature_defaults = {"part": part}
        layer.current_edge_color = PART_COLORS[part]
        self.viewer.layers.selection.active = layer
        mode = "add_line" if part in LINE_PARTS else "add_polygon"
        if layer.mode != mode:
            layer.mode = mode

    def _snapshot(self):
        layer = self.layer
        shapes = []
        if layer is not None and len(layer.data):
            parts = list(layer.features["part"]) if "part" in layer.features else [None] * len(layer.data)
            shapes = [(np.array(v, dtype=float), t, p) for v, t, p in zip(layer.data, layer.shape_type, parts)]
        return shapes, self.excluded()

    def _on_event(self, event=None):
        if self._applying or _in_progress(event):
            return
        if not self._scheduled:
            self._scheduled = True
            QTimer.singleShot(0, self._settle)

    def _settle(self):
        self._scheduled = False
        if self.layer is not None and _drawing(self.layer):
            self._scheduled = True
            QTimer.singleShot(30, self._settle)
            return
        self.sync_now()

    def sync_now(self):
        """Give new shapes their part, drop the older shape of that part, record for undo."""
        if self.layer is None or self._applying or _drawing(self.layer):
            return
        shapes, excluded = self._snapshot()
        old_shapes = self._state[0] if self._state else []
        n_old = len(old_shapes)
        resolved = []
        target = self.part
        for i, (v, kind, part) in enumerate(shapes):
            if i >= n_old and len(shapes) > n_old:
                want_line = kind in ("line", "path") and len(v) == 2
                present = {e[2] for e in resolved}
                if want_line:
                    part = (
                        target if target in LINE_PARTS else next((p for p in LINE_PARTS if p not in present), "upper")
                    )
                    kind = "line"
                else:
                    part = target if target in ROI_PARTS else next((p for p in ROI_PARTS if p not in present), "CSF")
                    kind = "polygon"
                resolved.append((v, kind, part, True))
            else:
                resolved.append((v, kind, part, False))
        new_parts = {p for _, _, p, new in resolved if new}
        final = [(v, k, p) for v, k, p, new in resolved if new or p not in new_parts]
        order = {p: i for i, p in enumerate(PARTS)}
        final.sort(key=lambda s: order.get(s[2], len(PARTS)))
        snap = (final, excluded)
        if self._same(snap, self._state):
            return
        if self._state is not None:
            self.undo_stack.append(self._state)
            del self.undo_stack[:-UNDO_DEPTH]
        self._apply(snap)
        if new_parts:
            self._advance(after=max(new_parts, key=PARTS.index))
        self._changed()

    @staticmethod
    def _same(a, b):
        if a is None or b is None:
            return a is b
        (sa, ea), (sb, eb) = a, b
        return (
            ea == eb
            and len(sa) == len(sb)
            and all(x[1:] == y[1:] and x[0].shape == y[0].shape and np.allclose(x[0], y[0]) for x, y in zip(sa, sb))
        )

    def _apply(self, snap):
        shapes, excluded = snap
        self._applying = True
        try:
            layer = self.layer
            layer.selected_data = set()
            if shapes:
                layer.data = [(v, k) for v, k, _ in shapes]
                layer.features = pd.DataFrame({"part": pd.Categorical([p for _, _, p in shapes], categories=PARTS)})
                layer.edge_color = [PART_COLORS.get(p, "white") for _, _, p in shapes]
            elif len(layer.data):
                layer.data = []
                layer.features = pd.DataFrame({"part": pd.Categorical([], categories=PARTS)})
            layer.refresh_text()
            for level in VBQ_LEVELS:
                check = self.exclude_checks[level]
                check.blockSignals(True)
                check.setChecked(level in excluded)
                check.blockSignals(False)
                if level in excluded:
                    self.reason_combos[level].setCurrentText(excluded[level])
        finally:
            self._applying = False
        self._state = (list(shapes), dict(excluded))

    def _advance(self, after=None):
        """Choose the next part still missing, looking first past ``after``
        (the part just drawn): an observer who reads only the angle goes from
        the upper line to the lower one, not back to L1."""
        drawn = {p for _, _, p in (self._state[0] if self._state else [])}
        start = PARTS.index(after) + 1 if after in PARTS else 0
        missing = [p for p in PARTS[start:] + PARTS[:start] if p not in drawn and p not in self.excluded()]
        if missing:
            self.part_combo.blockSignals(True)
            self.part_combo.setCurrentIndex(PARTS.index(missing[0]))
            self.part_combo.blockSignals(False)
            self._arm()

    def cancel_drawing(self):
        """Drop the shape being drawn, if any (a reading session calls it before
        it hides the image: napari would otherwise finish the half-drawn shape,
        with the cursor's position as its last vertex). Returns whether one was dropped."""
        layer = self.layer
        if layer is None or not _drawing(layer):
            return False
        self._applying = True
        try:
            layer._finish_drawing()
        finally:
            self._applying = False
        if self._state is not None:
            self._apply(self._state)
        return True

    def undo(self):
        """Revert the last drawing, deletion or exclusion; False when there is none."""
        if self.layer is not None and _drawing(self.layer):
            return False
        self.sync_now()
        if not self.undo_stack:
            self.notify("nothing to undo", "info")
            return False
        self._apply(self.undo_stack.pop())
        self._changed()
        return True

    # ------------------------------------------------------------ exclusions
    def excluded(self):
        """``{level: reason}`` of the levels marked excluded."""
        return {
            lv: (self.reason_combos[lv].currentText().strip() or "other")
            for lv in VBQ_LEVELS
            if self.exclude_checks[lv].isChecked()
        }

    def exclude(self, level, reason="fracture"):
        """Leave ``level`` out of VBQ for ``reason`` (fracture, cement, haemangioma, …)."""
        if level not in VBQ_LEVELS:
            self._refuse(f"only {', '.join(VBQ_LEVELS)} can be excluded, not {level!r}")
        if not str(reason).strip():
            self._refuse(f"give a reason for excluding {level}")
        self.reason_combos[level].setCurrentText(str(reason))
        self.exclude_checks[level].setChecked(True)

    def include(self, level):
        """Take ``level`` back into VBQ."""
        self.exclude_checks[level].setChecked(False)

    def toggle_exclusion(self):
        """Key ``x``: exclude (or include again) the level chosen in the draw list."""
        part = self.part
        if part not in VBQ_LEVELS:
            self._refuse("choose a level (L1–L4) in the draw list to exclude it")
        check = self.exclude_checks[part]
        check.setChecked(not check.isChecked())

    def _on_exclude_toggled(self, level, on):
        if self._applying:
            return
        if self.layer is not None and self._state is not None:
            snap = (list(self._state[0]), self.excluded())
            if not self._same(snap, self._state):
                self.undo_stack.append(self._state)
                self._state = snap
        if on and level == self.part:
            # the level chosen to draw next is left out: the next shape drawn is the
            # next missing part, not an ROI of the excluded level (x before drawing it)
            self._advance(after=level)
        self._changed()

    # ------------------------------------------------------------ anterior
    def confirm_anterior(self, side):
        """Radiograph without PatientOrientation: the patient's anterior is on
        the image's ``side`` ("left" or "right") as shown now. "right" mirrors
        the image so that column 0 is anterior (contract 8). Recorded in the
        annotation."""
        image = self._require_image()
        if side not in ("left", "right"):
            self._refuse("anterior side must be 'left' or 'right'")
        meta = self._meta(image)
        if meta.get("anterior_source") != "unconfirmed":
            self._refuse("this image's orientation comes from its header; nothing to confirm")
        if self.layer is not None and len(self.layer.data):
            self._refuse("confirm the anterior side before drawing (clear the shapes or undo them first)")
        self._set_anterior(image, side)
        self.notify(f"anterior confirmed on the image's {side}; the image now shows anterior on the left", "info")
        self._changed()

    def _set_anterior(self, image, side):
        """Show ``image`` with anterior on the left, the patient's anterior
        being on the file's ``side`` (mirrored when "right"), and record it."""
        if side == "right":
            image.data = np.ascontiguousarray(np.asarray(image.data)[..., ::-1])
        meta = dict(self._meta(image), anterior_source="observer", anterior_side_in_file=side)
        meta.pop("anterior_note", None)
        image.metadata = {**image.metadata, "napari_pvm": meta}
        self.anterior = {"side_in_file": side, "source": "observer"}
        self.anterior_box.setVisible(False)

    # ------------------------------------------------------------ annotation
    def _to_image_rc(self, vertices):
        image = self.image
        world = [self.layer.data_to_world(p) for p in np.asarray(vertices, dtype=float)]
        return np.array([image.world_to_data(w) for w in world])

    def annotation(self):
        """What is on screen as a JSON-able ``napari-pvm.spine/1`` dict."""
        image = self._require_image()
        if self.slice_index is None:
            self._refuse("mark the mid-sagittal slice first (go to it and press Shift-K)")
        out = {"format": "napari-pvm.spine/1", "slice_index": int(self.slice_index)}
        sha = self._meta(image).get("sha256")
        if sha:
            out["image"] = {"sha256": sha}
        for key, edit in (
            ("patient_id", self.patient_edit),
            ("observer_id", self.observer_edit),
            ("session", self.session_edit),
        ):
            if edit.text().strip():
                out[key] = edit.text().strip()
        vertebrae, csf, lines = [], None, {}
        self.sync_now()
        for v, _kind, part in self._state[0] if self._state else []:
            data = self._to_image_rc(v)
            rc = data[:, -2:].tolist()
            k = int(round(float(data[:, 0].mean()))) if image.ndim == 3 else 0
            if part in VBQ_LEVELS:
                item = {"level": part, "vertices": rc}
                if k != self.slice_index:
                    item["slice_index"] = k
                vertebrae.append(item)
            elif part == "CSF":
                csf = {"level": self.csf_level_combo.currentText(), "vertices": rc}
                if k != self.slice_index:
                    csf["slice_index"] = k
            elif part in LINE_PARTS:
                lines[part] = rc
        out["vertebrae"] = vertebrae
        if csf is not None:
            out["csf"] = csf
        out["excluded"] = [{"level": lv, "reason": r} for lv, r in self.excluded().items()]
        if len(lines) == 2:
            out["angles"] = [{"name": "local_kyphosis", "upper": lines["upper"], "lower": lines["lower"]}]
        else:
            out["angles"] = []
            # one endplate line is no angle yet, but it is work: kept so that a reopened drawing shows it
            for part, points in lines.items():
                out[UNPAIRED_KEY] = {"part": part, "points": points}
        if self.anterior:
            out["anterior"] = dict(self.anterior)
        return out

    def _volume(self):
        from ..core.io import Volume

        image = self.image
        data = np.asarray(image.data, dtype=np.float32)
        scale = tuple(float(s) for s in image.scale)
        if data.ndim == 2:
            data, scale = data[None], (1.0, *scale)
        meta = self._meta(image)
        return Volume(
            data=data,
            spacing=scale,
            affine=np.diag([*scale, 1.0]),
            source_axcodes=("L", "I", "P"),
            obliquity_deg=0.0,
            sha256=meta.get("sha256") or "",
            name=image.name,
            path=str(meta.get("source") or image.name),
            metadata=dict(meta),
            plane="sagittal",
        )

    def measure(self):
        """Measure what is drawn now; returns the SpineResult (refusals raise
        PvmError and show a notification)."""
        try:
            return self._measure()
        except PvmError as exc:
            self._refuse(str(exc))

    def _measure(self):
        from ..core.spine import parse_spine_annotation, spine_row

        if self.slice_index is None:
            raise PvmError("mark the mid-sagittal slice first (go to it and press Shift-K)")
        obj = self.annotation()
        ann = parse_spine_annotation(obj, source="spine dock")
        row, result = spine_row(
            self._volume(),
            ann,
            patient_id=obj.get("patient_id"),
            observer_id=obj.get("observer_id"),
            session=obj.get("session"),
            check_image=False,
        )
        self.row, self.result = row, result
        return result

    def results(self):
        """The row of the last measurement, as ``add_to_csv`` writes it (None before one)."""
        return None if self.row is None else dict(self.row)

    def _changed(self):
        """Refresh the list of missing parts and the results (measuring is
        fast), then tell :attr:`changed`."""
        self._update_missing()
        self.row = self.result = None
        drawn = {p for _, _, p in (self._state[0] if self._state else [])}
        if self.layer is None or self.slice_index is None or not drawn:
            self._show(None, "")
        else:
            try:
                self._measure()  # quietly: an unfinished drawing is not an error yet
            except PvmError as exc:
                self._show(None, str(exc))
            else:
                self._show(self.result, "")
        self.changed.emit()

    def _show(self, result, problem):
        if result is None:
            self.vbq_label.setText("VBQ: –")
            self.levels_label.setText("")
            self.angle_label.setText("local kyphotic angle: –")
            self.warnings_label.setText(problem)
            return
        if result.vbq is not None:
            self.vbq_label.setText(f"VBQ: {result.vbq:.3f}   (CSF median {result.si_csf:.4g})")
        else:
            self.vbq_label.setText("VBQ: – (no ROIs)")
        parts = []
        for level in VBQ_LEVELS:
            if level in result.si:
                note = f" (excluded: {result.excluded[level]})" if level in result.excluded else ""
                parts.append(f"{level} {result.si[level]:.4g}{note}")
        self.levels_label.setText("medians: " + "; ".join(parts) if parts else "")
        angle = result.angles.get("local_kyphosis")
        self.angle_label.setText(
            "local kyphotic angle: –"
            if angle is None
            else f"local kyphotic angle: {angle:.2f}° ({'kyphosis' if angle >= 0 else 'lordosis'})"
        )
        self.warnings_label.setText("\n".join(f"⚠ {w}" for w in result.warnings))

    def _update_missing(self):
        drawn = {p for _, _, p in (self._state[0] if self._state else [])}
        excluded = self.excluded()
        missing = [PART_LABELS[p] for p in PARTS if p not in drawn and p not in excluded]
        self.missing_label.setText("to draw: " + ", ".join(missing) if missing else "everything drawn")

    # ------------------------------------------------------------ files
    def save_annotation(self, path=None):
        """Write the annotation (atomically); returns the path or None."""
        from ..core.spine import write_spine_annotation

        obj = self.annotation()
        if path is None:
            path, _ = QFileDialog.getSaveFileName(
                self, "Save spine annotation", "", "napari-pvm annotation (*.pvm.json)"
            )
            if not path:
                return None
        try:
            if self.path_guard is not None:
                self.path_guard(path, "save")
            write_spine_annotation(path, obj)
        except (PvmError, OSError) as exc:
            self._refuse(str(exc), "error")
        self.notify(f"spine annotation saved to {Path(path).name}", "info")
        return Path(path)

    def load_annotation(self, path=None, *, start=False):
        """Show a saved annotation's ROIs, lines, exclusions, slice and IDs.

        Loading can be undone (Ctrl-Z goes back to what was on screen), unless
        ``start`` is true: then the loaded drawing starts the undo history (a
        reading session reopening a case's own drawing).
        """
        from ..core.spine import read_spine_annotation

        image = self._require_image()
        if path is None:
            path, _ = QFileDialog.getOpenFileName(
                self, "Load spine annotation", "", "napari-pvm annotation (*.pvm.json)"
            )
            if not path:
                return False
        try:
            if self.path_guard is not None:
                self.path_guard(path, "load")
            ann = read_spine_annotation(path)
        except (PvmError, OSError) as exc:
            self._refuse(str(exc), "error")
        n = image.data.shape[0] if image.ndim == 3 else 1
        k = ann.slice_index if ann.slice_index is not None else 0
        if k >= n:
            self._refuse(f"the annotation's slice {k} is outside this image (it has {n} slices)", "error")
        sha = self._meta(image).get("sha256")
        if ann.image_sha256 and sha and ann.image_sha256 != sha:
            self.notify("this annotation was drawn on another image (its sha256 differs)", "warning")
        side = (ann.anterior or {}).get("side_in_file")
        if side in ("left", "right") and self._meta(image).get("anterior_source") == "unconfirmed":
            # the drawing was made on the radiograph as the observer oriented it: orient it so again
            self._set_anterior(image, side)
        if image.ndim == 3:
            show_data_slice(self.viewer, image, k)
        self.slice_index = k
        self.slice_label.setText(f"mid-sagittal slice {k}")
        layer = self._ensure_layer(image)

        def lift(rc, slice_k):
            rc = np.asarray(rc, dtype=float)
            data = np.column_stack([np.full(len(rc), float(slice_k)), rc]) if image.ndim == 3 else rc
            world = [image.data_to_world(p) for p in data]
            return np.array([layer.world_to_data(w) for w in world])

        shapes = [(lift(v, ann.roi_slices.get(lv, k)), "polygon", lv) for lv, v in ann.vertebrae.items()]
        if ann.csf is not None:
            shapes.append((lift(ann.csf["vertices"], ann.roi_slices.get("csf", k)), "polygon", "CSF"))
            self.csf_level_combo.setCurrentText(ann.csf["level"])
        if "local_kyphosis" in ann.angles:
            upper, lower = ann.angles["local_kyphosis"]
            shapes += [(lift(upper, k), "line", "upper"), (lift(lower, k), "line", "lower")]
        else:
            unpaired = _unpaired_line(ann.extra.get(UNPAIRED_KEY))
            if unpaired is not None:
                shapes.append((lift(unpaired[1], k), "line", unpaired[0]))
        order = {p: i for i, p in enumerate(PARTS)}
        shapes.sort(key=lambda s: order[s[2]])
        if start:
            self.undo_stack = []  # a reopened case: Ctrl-Z must not wipe the saved drawing (and its file)
        elif self._state is not None:
            self.undo_stack.append(self._state)
        for level, reason in ann.excluded.items():
            self.reason_combos[level].setCurrentText(reason)
        self._apply((shapes, dict(ann.excluded)))
        for edit, value in (
            (self.patient_edit, ann.patient_id),
            (self.observer_edit, ann.observer_id),
            (self.session_edit, ann.session),
        ):
            if value:
                edit.setText(value)
        if ann.anterior:
            self.anterior = dict(ann.anterior)
        # the draw list at the first part still missing: the next shape drawn on a
        # resumed drawing completes it instead of replacing the L1 ROI
        self.part_combo.blockSignals(True)
        self.part_combo.setCurrentIndex(0)
        self.part_combo.blockSignals(False)
        self._advance()
        self._arm()
        self._changed()
        return True

    def _browse_csv(self):
        path, _ = QFileDialog.getSaveFileName(self, "Shared spine CSV", self.csv_edit.text(), "CSV (*.csv)")
        if path:
            self.csv_edit.setText(path)

    def add_to_csv(self, path=None):
        """Measure and append the row to the shared spine CSV; returns its row_id."""
        from ..core.annotation import check_identifier

        path = path or self.csv_edit.text().strip()
        if not path:
            self._refuse("choose the shared spine CSV first")
        try:
            check_identifier(self.patient_edit.text(), "patient ID")
            check_identifier(self.observer_edit.text(), "observer ID")
        except PvmError as exc:
            self._refuse(str(exc))
        self.measure()
        row = dict(self.row)
        row.pop("row_id", None)
        key = self._row_key(path)
        earlier = self._added.get(key)
        if earlier and not self.confirm(
            "Row already added",
            f"This exact drawing is already row {earlier} of {Path(path).name}. Add another row anyway?",
        ):
            self.notify(f"not added: this drawing is already row {earlier} of {Path(path).name}", "info")
            return None
        row_id = self._append_row(path, row, table="spine")
        self._added[key] = row_id
        self.row = {**row, "row_id": row_id}
        self.notify(f"spine row for patient {row['patient_id']} added to {Path(path).name}", "info")
        self.row_added.emit(dict(self.row))
        return row_id

    def _row_key(self, path):
        from ..core.session import spine_annotation_sha256

        ids = tuple(edit.text().strip() for edit in (self.patient_edit, self.observer_edit, self.session_edit))
        return (spine_annotation_sha256(self.annotation()), str(Path(path).resolve()), *ids)

    def remember_row(self, row_id, path=None):
        """Record that the drawing on screen already is row ``row_id`` of the
        shared spine CSV ``path`` (default: the dock's), so that adding it
        again asks first (a reading session tells it when a case reopens)."""
        path = path or self.csv_edit.text().strip()
        if row_id and path and self.slice_index is not None:
            self._added[self._row_key(path)] = str(row_id)

    def _confirm(self, title, text):
        from qtpy.QtWidgets import QMessageBox

        buttons = QMessageBox.StandardButton
        return QMessageBox.question(self, title, text, buttons.Yes | buttons.No, buttons.No) == buttons.Yes

    def reset_case(self):
        """Forget the current case before another opens (a reading session
        calls it): a shape being drawn is cancelled, the shapes are emptied
        (the layer itself stays: whoever owns it removes it after a draw),
        exclusions, slice mark, results, undo history and patient ID are
        cleared, and the draw list goes back to L1."""
        layer = self.layer
        self._applying = True
        try:
            if layer is not None:
                if _drawing(layer):
                    layer._finish_drawing()
                if len(layer.data):
                    layer.selected_data = set()
                    layer.data = []
                    layer.features = pd.DataFrame({"part": pd.Categorical([], categories=PARTS)})
            for level in VBQ_LEVELS:
                check = self.exclude_checks[level]
                check.blockSignals(True)
                check.setChecked(False)
                check.blockSignals(False)
                self.reason_combos[level].setCurrentIndex(0)
            self.csf_level_combo.blockSignals(True)
            self.csf_level_combo.setCurrentIndex(0)
            self.csf_level_combo.blockSignals(False)
            self.part_combo.blockSignals(True)
            self.part_combo.setCurrentIndex(0)
            self.part_combo.blockSignals(False)
        finally:
            self._applying = False
        self._scheduled = False
        self.layer = None
        self.slice_index = None
        self._state = None
        self.undo_stack = []
        self.row = self.result = None
        self.anterior = None
        self.slice_label.setText("slice: not marked")
        self.patient_edit.setText("")
        self._update_missing()
        self._show(None, "")


def show_data_slice(viewer, layer, index):
    """Show slice ``index`` (first data axis) of a 3D ``layer`` by its world
    position, so the right slice shows when layers of other spacings (an
    axial and a sagittal series of one case) share the viewer."""
    data = np.zeros(layer.ndim)
    data[0] = float(index)
    world = float(np.asarray(layer.data_to_world(data))[0])
    viewer.dims.set_point(viewer.dims.ndim - layer.ndim, world)


def _unpaired_line(obj):
    """``(part, (2, 2) array)`` of a saved single endplate line, None when absent or malformed."""
    if not isinstance(obj, dict) or obj.get("part") not in LINE_PARTS:
        return None
    try:
        points = np.asarray(obj.get("points"), dtype=float)
    except (TypeError, ValueError):
        return None
    return (obj["part"], points) if points.shape == (2, 2) and np.isfinite(points).all() else None


def _drawing(layer):
    """Whether napari is in the middle of drawing a shape on ``layer`` (no
    public API says so; the private flag is read with its warning silenced)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return bool(getattr(layer, "_is_creating", False))


def _key(dock, action):
    def handler(_target):
        try:
            action()
        except PvmError:
            pass  # shown as a notification

    return handler


def _notify(message, level="info"):
    from napari.utils import notifications

    {"info": notifications.show_info, "warning": notifications.show_warning, "error": notifications.show_error}[level](
        message
    )

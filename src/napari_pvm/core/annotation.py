"""Annotation files (``*.pvm.json``, contract 2): read, validate, write atomically.

One file per patient and observer holds the L4 slice index, the six muscle
outlines (each with how it was made: drawn, proposed or edited, contract 7),
optional reference outlines that are not muscles (the L4 vertebral body,
``VB``), the fat and muscle samples (polygons, and optionally painted
labels) and the classifier settings, so that a measurement can be recomputed
exactly. Unknown keys, at the top level and inside each outline, are kept
and written back.
"""

import dataclasses
import hashlib
import json
import os
import re
import tempfile
from pathlib import Path

import numpy as np

from . import schema
from .errors import AnnotationError

__all__ = [
    "FORMAT",
    "Annotation",
    "annotation_sha256",
    "check_identifier",
    "probe_writable",
    "read_annotation",
    "write_annotation",
    "write_json_atomic",
]

FORMAT = "napari-pvm.annotation/1"
#: Extra key holding painted sample labels (run-length encoded).
LABELS_KEY = "sample_labels"
_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_KNOWN = {
    "format",
    "image",
    "slice_index",
    "level",
    "rois",
    "samples",
    "patient_id",
    "observer_id",
    "session",
    "classifier",
    "reference",
    LABELS_KEY,
}
_ROI_KNOWN = {"muscle", "side", "vertices", "origin"}
_STRUCTURE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,15}")


@dataclasses.dataclass
class Annotation:
    """The content of one annotation file.

    Attributes
    ----------
    slice_index : int
        Axial slice (contract 1, inferior → superior) the outlines are on.
    level : str
        Vertebral level, ``"L4"`` by default.
    rois : dict
        ``{"PS_L": (N, 2) float array of [row, col], ...}``; absent muscles
        are simply missing.
    samples : list of dict
        ``{"class": "fat" | "muscle", "vertices": (N, 2) array}``.
    sample_labels : ndarray or None
        Painted samples on the slice (0 unlabelled, 1 muscle, 2 fat).
    image_sha256 : str or None
    patient_id, observer_id, session : str or None
    classifier : dict
        ``{"preset", "n_trees", "seed", "class_balance"}`` (any subset).
    extra : dict
        Unknown keys, preserved on writing.
    origins : dict
        ``{"PS_L": "proposed", ...}``: how an outline was made, one of
        ``schema.OUTLINE_ORIGINS``, for the outlines whose file says so; an
        outline not in it was drawn (:meth:`origin`).
    reference : dict
        Reference outlines that are not muscles, ``{"VB": (N, 2) array}``
        (the L4 vertebral body); they never count as outlines.
    roi_extra : dict
        ``{"PS_L": {key: value}}``: unknown keys of an outline, preserved.
    """

    slice_index: int
    level: str = "L4"
    rois: dict = dataclasses.field(default_factory=dict)
    samples: list = dataclasses.field(default_factory=list)
    sample_labels: np.ndarray = None
    image_sha256: str = None
    patient_id: str = None
    observer_id: str = None
    session: str = None
    classifier: dict = dataclasses.field(default_factory=dict)
    extra: dict = dataclasses.field(default_factory=dict)
    origins: dict = dataclasses.field(default_factory=dict)
    reference: dict = dataclasses.field(default_factory=dict)
    roi_extra: dict = dataclasses.field(default_factory=dict)

    def origin(self, key):
        """How outline ``key`` was made: ``"drawn"`` unless the file says
        ``"proposed"`` or ``"edited"`` (contract 7)."""
        return self.origins.get(key, "drawn")

    def to_dict(self):
        out = dict(self.extra)
        out.update(
            {
                "format": FORMAT,
                "image": {"sha256": self.image_sha256} if self.image_sha256 else {},
                "slice_index": int(self.slice_index),
                "level": self.level,
                "rois": [
                    {
                        **self.roi_extra.get(k, {}),
                        "muscle": k.split("_")[0],
                        "side": k.split("_")[1],
                        "vertices": _plain(v),
                        **({"origin": self.origins[k]} if k in self.origins else {}),
                    }
                    for k, v in sorted(self.rois.items(), key=lambda kv: schema.ROI_KEYS.index(kv[0]))
                ],
                "samples": [{"class": s["class"], "vertices": _plain(s["vertices"])} for s in self.samples],
            }
        )
        for key in ("patient_id", "observer_id", "session"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        if self.classifier:
            out["classifier"] = dict(self.classifier)
        if self.reference:
            out["reference"] = [{"structure": k, "vertices": _plain(v)} for k, v in self.reference.items()]
        if self.sample_labels is not None and np.any(self.sample_labels):
            out[LABELS_KEY] = _encode_labels(self.sample_labels)
        return out


def _plain(vertices):
    return [[float(r), float(c)] for r, c in np.asarray(vertices, dtype=float)]


def check_identifier(value, what="patient ID"):
    """Return ``value`` stripped, or raise if it could break a CSV or a path.

    Allowed: 1 to 64 ASCII letters, digits, ``.``, ``_`` and ``-``, starting with a
    letter or digit (so "007" and "P-12.a" pass, "../x", "a,b" and "=1+1" do not).
    """
    text = "" if value is None else str(value).strip()
    if not text:
        raise AnnotationError(f"a {what} is required")
    if not _ID_PATTERN.match(text):
        raise AnnotationError(
            f"{what} {text!r} has characters that could break a CSV or a file path; "
            "use 1–64 ASCII letters, digits, '.', '_' or '-' (starting with a letter or digit)"
        )
    return text


def parse_annotation(obj, *, source="annotation"):
    """Build an :class:`Annotation` from a decoded JSON object, checking its shape."""
    if not isinstance(obj, dict):
        raise AnnotationError(f"{source}: the file must hold a JSON object")
    fmt = obj.get("format")
    if fmt != FORMAT:
        raise AnnotationError(f"{source}: format tag is {fmt!r}, expected {FORMAT!r}")
    for key in ("slice_index", "rois"):
        if key not in obj:
            raise AnnotationError(f"{source}: missing key {key!r}")
    slice_index = obj["slice_index"]
    if isinstance(slice_index, bool) or not isinstance(slice_index, int) or slice_index < 0:
        raise AnnotationError(f"{source}: slice_index must be a non-negative integer, got {slice_index!r}")
    if not isinstance(obj["rois"], list):
        raise AnnotationError(f"{source}: 'rois' must be a list")
    rois, origins, roi_extra = {}, {}, {}
    for i, roi in enumerate(obj["rois"]):
        if not isinstance(roi, dict) or not {"muscle", "side", "vertices"} <= roi.keys():
            raise AnnotationError(f"{source}: rois[{i}] needs 'muscle', 'side' and 'vertices'")
        muscle, side = roi["muscle"], roi["side"]
        if muscle not in schema.MUSCLES:
            raise AnnotationError(f"{source}: rois[{i}] has unknown muscle {muscle!r}; use one of PS, ES, MF")
        if side not in ("L", "R"):
            raise AnnotationError(f"{source}: rois[{i}] has unknown side {side!r}; use L or R (the patient's)")
        key = f"{muscle}_{side}"
        if key in rois:
            raise AnnotationError(f"{source}: {key} is outlined twice")
        rois[key] = _vertices(roi["vertices"], f"{source}: {key}")
        if "origin" in roi:
            if roi["origin"] not in schema.OUTLINE_ORIGINS:
                raise AnnotationError(
                    f"{source}: {key} has origin {roi['origin']!r}; use one of "
                    f"{', '.join(schema.OUTLINE_ORIGINS)} (or leave it out for drawn)"
                )
            origins[key] = roi["origin"]
        if extra := {k: v for k, v in roi.items() if k not in _ROI_KNOWN}:
            roi_extra[key] = extra
    samples = []
    for i, sample in enumerate(obj.get("samples") or []):
        if not isinstance(sample, dict) or "class" not in sample or "vertices" not in sample:
            raise AnnotationError(f"{source}: samples[{i}] needs 'class' and 'vertices'")
        if sample["class"] not in schema.SAMPLE_CLASSES:
            raise AnnotationError(f"{source}: samples[{i}] has unknown class {sample['class']!r}; use fat or muscle")
        samples.append({"class": sample["class"], "vertices": _vertices(sample["vertices"], f"{source}: samples[{i}]")})
    image = obj.get("image") or {}
    if not isinstance(image, dict):
        raise AnnotationError(f"{source}: 'image' must be an object")
    classifier = obj.get("classifier") or {}
    if not isinstance(classifier, dict):
        raise AnnotationError(f"{source}: 'classifier' must be an object")
    ids = {}
    for key in ("patient_id", "observer_id", "session"):
        if obj.get(key) not in (None, ""):
            ids[key] = check_identifier(obj[key], key.replace("_", " "))
    labels = _decode_labels(obj[LABELS_KEY], source) if obj.get(LABELS_KEY) else None
    reference = _reference(obj.get("reference"), source)
    level = obj.get("level") or "L4"
    if not isinstance(level, str) or not re.fullmatch(r"[A-Za-z][A-Za-z0-9/-]{0,15}", level):
        raise AnnotationError(f"{source}: level {level!r} is not a vertebral level such as 'L4'")
    return Annotation(
        slice_index=slice_index,
        level=level,
        rois=rois,
        samples=samples,
        sample_labels=labels,
        image_sha256=image.get("sha256") or None,
        classifier=dict(classifier),
        extra={k: v for k, v in obj.items() if k not in _KNOWN},
        origins=origins,
        reference=reference,
        roi_extra=roi_extra,
        **ids,
    )


def _reference(value, source):
    """``{"VB": vertices}`` from the optional ``reference`` list (contract 2)."""
    if value in (None, []):
        return {}
    if not isinstance(value, list):
        raise AnnotationError(f'{source}: \'reference\' must be a list of {{"structure", "vertices"}} objects')
    out = {}
    for i, item in enumerate(value):
        if not isinstance(item, dict) or not {"structure", "vertices"} <= item.keys():
            raise AnnotationError(f"{source}: reference[{i}] needs 'structure' and 'vertices'")
        name = item["structure"]
        if not isinstance(name, str) or not _STRUCTURE.fullmatch(name):
            raise AnnotationError(
                f"{source}: reference[{i}] has structure {name!r}; use a short name such as "
                f"{', '.join(schema.REFERENCE_STRUCTURES)}"
            )
        if name in out:
            raise AnnotationError(f"{source}: the reference outline {name} is given twice")
        out[name] = _vertices(item["vertices"], f"{source}: reference {name}")
    return out


def _vertices(value, what):
    try:
        v = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise AnnotationError(f"{what}: vertices must be [row, col] numbers") from None
    if v.ndim != 2 or v.shape[1] != 2 or not np.all(np.isfinite(v)):
        raise AnnotationError(f"{what}: vertices must be a list of finite [row, col] pairs")
    return v


def read_annotation(path):
    """Read and check an annotation file (contract 2).

    Raises
    ------
    AnnotationError
        Not JSON, wrong format tag, missing keys, unknown muscle/side/class.
    """
    path = Path(path)
    return parse_annotation(_read_json(path, what="annotation"), source=path.name)


def _read_json(path, *, what):
    """The parsed JSON of a UTF-8 file; an AnnotationError naming ``what``
    (e.g. ``"annotation"``) when it is missing, not UTF-8 or not JSON."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise AnnotationError(f"{what} file not found: {path}") from None
    except UnicodeDecodeError:
        raise AnnotationError(f"{path.name} is not UTF-8 text") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise AnnotationError(f"{path.name} is not valid JSON (line {exc.lineno}: {exc.msg})") from None
    except RecursionError:
        raise AnnotationError(f"{path.name} is nested too deeply to be read as the {what}") from None


def write_annotation(path, annotation):
    """Write an annotation atomically (temporary file, fsync, rename)."""
    write_json_atomic(path, annotation.to_dict())


def annotation_sha256(annotation):
    """Digest of the annotation's measured content (outlines with their
    origins, samples, slice, level, classifier settings, and reference
    outlines when there are any); ignores IDs and key order. An annotation
    without origins or reference outlines keeps the digest it had before
    they existed."""
    d = annotation.to_dict() if isinstance(annotation, Annotation) else dict(annotation)
    content = {k: d.get(k) for k in ("slice_index", "level", "rois", "samples", "classifier", LABELS_KEY)}
    if isinstance(content["rois"], list):  # unknown keys of an outline are not measured
        content["rois"] = [
            {k: v for k, v in r.items() if k in _ROI_KNOWN} if isinstance(r, dict) else r for r in content["rois"]
        ]
    if d.get("reference"):
        content["reference"] = d["reference"]
    blob = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def probe_writable(folder):
    """Raise OSError unless a file can be created in ``folder``.

    Permission bits do not tell (root, network shares, /proc), so a file is
    created and removed at once.
    """
    fd, probe = tempfile.mkstemp(dir=folder, prefix=".pvm-probe-")
    os.close(fd)
    os.unlink(probe)


def write_json_atomic(path, obj):
    """Write JSON so that the file is either the old or the whole new content."""
    path = Path(path)
    blob = (json.dumps(obj, indent=1, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            readable_by_others(fh.fileno())
            fh.write(blob)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def readable_by_others(fd):
    """Give a file from ``mkstemp`` (mode 0600) the mode a plain ``open``
    would: observers on a shared folder must be able to read each other's
    study files (the umask still applies)."""
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.fchmod(fd, 0o666 & ~umask)
    except (AttributeError, OSError):  # Windows has no fchmod; modes do not apply
        pass


def _encode_labels(labels):
    """Run-length encode painted labels: [[flat_start, length, value], ...]."""
    labels = np.asarray(labels)
    flat = labels.ravel()
    change = np.flatnonzero(np.diff(flat)) + 1
    starts = np.concatenate([[0], change])
    lengths = np.diff(np.concatenate([starts, [flat.size]]))
    values = flat[starts]
    runs = [[int(s), int(n), int(v)] for s, n, v in zip(starts, lengths, values) if v]
    return {"shape": list(labels.shape), "runs": runs, "values": {"1": "muscle", "2": "fat"}}


def _decode_labels(obj, source):
    try:
        shape = tuple(int(s) for s in obj["shape"])
        out = np.zeros(int(np.prod(shape)), np.uint8)
        for start, length, value in obj["runs"]:
            if value not in (1, 2):
                raise ValueError(f"label value {value}")
            out[int(start) : int(start) + int(length)] = value
        if len(shape) != 2:
            raise ValueError("shape")
        return out.reshape(shape)
    except (KeyError, TypeError, ValueError) as exc:
        raise AnnotationError(f"{source}: painted sample labels are malformed ({exc})") from None

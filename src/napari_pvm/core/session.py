"""Blinded reading studies: the study folder and one observer's reading session.

A study is a folder (``docs/study.md``)::

    study/
      study.json                                  study_id, study codes, proposals, measure_sets
      worklist.csv                                patient_id, image [, slice_index, level, observer_id, sagittal_image]
      measurements.csv                            the shared measurement CSV (core.store)
      spine.csv                                   the shared spine CSV (contract 8), when measure_sets has "spine"
      annotations/<observer>/<patient>.<session>.pvm.json
      annotations/<observer>/spine/<patient>.<session>.pvm.json   spine annotation (napari-pvm.spine/1)
      sessions/<observer>.<session>.json          order, seed, position, done / skipped, log

A :class:`ReadingSession` is one observer's pass through the worklist under a
session label (``read1`` by default; ``read2`` for a repeat reading). Its
case order is a permutation seeded from the study, the observer and the
label; the seed and the order are recorded in the session file, which is
rewritten atomically after every action, so a session resumes exactly where
it stopped.

What a session reads, and nothing else: the worklist columns in
:data:`SESSION_COLUMNS` (any other column, e.g. an outcome, is skipped by the
CSV parser and never reaches memory as data), ``study.json``, its own session
file and its own observer's annotation files of its own label. It never reads
``measurements.csv``, ``spine.csv``, another observer's folder or session
file, or its own annotations of another session label.

A study's ``measure_sets`` (``study.json``) say which rows a case needs
before it is *done*: the muscle row (``measurements.csv``) for ``"muscle"``,
the spine row (``spine.csv``) for ``"spine"``; the session file records the
``row_id`` of each (:meth:`ReadingSession.record_row`).
"""

import dataclasses
import hashlib
import json
import re
import time
from datetime import datetime, timezone
from pathlib import Path

from .annotation import annotation_sha256 as _outline_digest
from .annotation import check_identifier, read_annotation, write_annotation, write_json_atomic
from .batch import read_worklist
from .errors import PvmError
from .rois import swapped_sides
from .schema import DEFAULT_SESSION

__all__ = [
    "DEFAULT_SESSION",
    "MEASURE_SETS",
    "SPINE_NAME",
    "SESSION_COLUMNS",
    "ReadingSession",
    "SessionError",
    "Study",
    "StudySettings",
    "check_session_label",
    "create_study",
    "seeded_order",
    "session_seed",
    "spine_annotation_sha256",
]

STUDY_FORMAT = "napari-pvm.study/1"
SESSION_FORMAT = "napari-pvm.session/1"
WORKLIST_NAME = "worklist.csv"
MEASUREMENTS_NAME = "measurements.csv"
#: The study's shared spine CSV (contract 8), beside ``measurements.csv``.
SPINE_NAME = "spine.csv"
#: Folder of an observer's spine annotations, inside ``annotations/<observer>/``:
#: a folder rather than a file-name suffix, so a spine file can never share a
#: name with a muscle file whatever the patient ID and session label.
SPINE_DIR = "spine"
STUDY_FILE = "study.json"
ANNOTATIONS_DIR = "annotations"
SESSIONS_DIR = "sessions"
#: The only worklist columns a reading session reads (contract 4 minus
#: ``annotation`` and ``session``: a worklist's annotation path may point at
#: another observer's outlines, and the session label is chosen by the observer;
#: ``sagittal_image`` is the case's sagittal series for the spine measures).
SESSION_COLUMNS = ("patient_id", "image", "slice_index", "level", "observer_id", "sagittal_image")
#: Measure sets a study may ask for per case (``study.json`` ``measure_sets``):
#: the muscle outlines (contract 3) and the spine measures (contract 8).
MEASURE_SETS = ("muscle", "spine")
#: Case states in a session file.
STATES = ("open", "started", "done", "skipped")
#: Keys of a case entry in the session file that record the rows of a measure
#: set: (latest row_id, every row_id, digest of the annotation it was measured
#: from, when). The muscle keys are the ones sessions have always written.
_ROW_KEYS = {
    "muscle": ("row_id", "row_ids", "row_annotation_sha256", "row_at"),
    "spine": ("spine_row_id", "spine_row_ids", "spine_annotation_sha256", "spine_row_at"),
}
#: The table each measure set's rows go to.
_TABLES = {"muscle": MEASUREMENTS_NAME, "spine": SPINE_NAME}
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")
_LEVEL = re.compile(r"^[A-Za-z][A-Za-z0-9/-]{0,15}$")


class SessionError(PvmError):
    """A study folder, worklist or reading session cannot be used as asked."""


@dataclasses.dataclass(frozen=True)
class StudySettings:
    """What ``study.json`` allows in the study's reading sessions (contract 7).

    Attributes
    ----------
    proposals : bool
        Outline proposals allowed (``"proposals": true``); False by default.
    measure_sets : tuple of str
        Measures read per case, from :data:`MEASURE_SETS`; ``("muscle",)`` by default.
    """

    proposals: bool = False
    measure_sets: tuple = ("muscle",)


def _study_settings(info, where):
    proposals = info.get("proposals", False)
    if not isinstance(proposals, bool):
        raise SessionError(f'{where}: "proposals" must be true or false (JSON), not {proposals!r}')
    sets = info.get("measure_sets", ["muscle"])
    if not isinstance(sets, list) or not sets or not all(isinstance(x, str) for x in sets):
        raise SessionError(
            f'{where}: "measure_sets" must be a non-empty list such as ["muscle"] or ["muscle", "spine"]'
        )
    unknown = [x for x in sets if x not in MEASURE_SETS]
    if unknown:
        raise SessionError(
            f'{where}: unknown measure set {unknown[0]!r} in "measure_sets"; use {" and ".join(MEASURE_SETS)}'
        )
    if len(set(sets)) != len(sets):
        raise SessionError(f'{where}: "measure_sets" lists {sets}; name each set once')
    return StudySettings(proposals=proposals, measure_sets=tuple(sets))


def _now():
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _identifier(value, what):
    try:
        return check_identifier(value, what)
    except PvmError as exc:
        raise SessionError(str(exc)) from None


def check_session_label(label):
    """Return a session label (``read1``, ``read2``, ...) or raise.

    1 to 32 letters, digits, ``_`` or ``-``, starting with a letter or digit;
    no ``.``, so the label is always the last dotted part of a file name.
    """
    text = "" if label is None else str(label).strip()
    if not _LABEL.match(text):
        raise SessionError(
            f"session label {text!r} is not usable; use 1–32 letters, digits, '_' or '-' "
            "without spaces or dots, e.g. read1 or read2"
        )
    return text


def session_seed(study_id, observer_id, session):
    """The order seed of one observer's session: a 32-bit integer derived from
    the study, the observer and the session label (sha256), so the same
    three always give the same order and different observers or labels give
    different ones."""
    blob = f"napari-pvm/session-order\0{study_id}\0{observer_id}\0{session}".encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:4], "big")


def seeded_order(patient_ids, seed):
    """Patient IDs in the random order given by ``seed``.

    The order is ``sorted(ids, key=sha256(f"{seed}:{id}"))``: a seeded
    permutation that needs no random number generator, so it is the same on
    every machine and library version and can be recomputed from the seed
    recorded in a session file.

    Examples
    --------
    >>> seeded_order(["P1", "P2", "P3"], 7) == seeded_order(["P3", "P1", "P2"], 7)
    True
    """
    return sorted(set(patient_ids), key=lambda pid: hashlib.sha256(f"{int(seed)}:{pid}".encode()).hexdigest())


def _read_json(path, what):
    try:
        obj = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SessionError(f"{what} {path} cannot be read ({exc}); restore it from a backup or move it away") from None
    if not isinstance(obj, dict):
        raise SessionError(f"{what} {path} does not hold a JSON object")
    return obj


def _read_worklist(path):
    """Read only :data:`SESSION_COLUMNS` of a worklist (through
    :func:`napari_pvm.core.batch.read_worklist`) and check them.

    Other columns are dropped by the parser (``usecols``), so an outcome or
    clinical column is never returned, stored or shown.
    """
    path = Path(path)
    try:
        rows = read_worklist(path, columns=SESSION_COLUMNS)
    except FileNotFoundError:
        raise SessionError(f"worklist not found: {path}; a study folder needs {WORKLIST_NAME}") from None
    except PvmError as exc:
        raise SessionError(str(exc)) from None
    cases = []
    for row in rows:
        where = f"{path.name} line {row.line}"
        try:
            pid = check_identifier(row.patient_id, "patient ID")
        except PvmError as exc:
            raise SessionError(f"{where}: {exc}") from None
        if not row.image:
            raise SessionError(f"{where}: patient {pid} has no image path")
        if row.slice_index and not row.slice_index.isdigit():
            raise SessionError(f"{where}: slice_index {row.slice_index!r} is not a non-negative whole number")
        if row.level and not _LEVEL.match(row.level):
            raise SessionError(f"{where}: level {row.level!r} is not a vertebral level such as L4")
        observer = _identifier(row.observer_id, f"observer ID on {where}") if row.observer_id else ""
        cases.append(
            dataclasses.replace(
                row,
                patient_id=pid,
                observer_id=observer,
                slice_index=str(int(row.slice_index)) if row.slice_index else "",
            )
        )
    return tuple(cases)


class Study:
    """A study folder: worklist, shared CSV, per-observer annotations, sessions.

    Parameters
    ----------
    folder : str or Path
        The study folder.
    worklist : str or Path, optional
        The worklist, relative to ``folder`` (default ``worklist.csv``). It
        must lie inside the study folder; image paths in it are relative to
        it and may point anywhere (e.g. a read-only image share).

    Notes
    -----
    Creating a :class:`Study` reads nothing; the worklist is read on first
    use and only its :data:`SESSION_COLUMNS`.
    """

    def __init__(self, folder, *, worklist=WORKLIST_NAME):
        folder = Path(folder).expanduser()
        if not folder.is_dir():
            raise SessionError(f"study folder not found: {folder}")
        self.folder = folder.resolve()
        worklist = Path(worklist)
        worklist = (worklist if worklist.is_absolute() else self.folder / worklist).resolve()
        if not worklist.is_relative_to(self.folder):
            raise SessionError(f"the worklist {worklist} is outside the study folder {self.folder}; keep it inside")
        self.worklist_path = worklist
        self._cases = None

    def __repr__(self):
        return f"Study({str(self.folder)!r})"

    # -------------------------------------------------------------- layout
    @property
    def measurements_csv(self):
        """The shared measurement CSV (``measurements.csv``)."""
        return self.folder / MEASUREMENTS_NAME

    @property
    def spine_csv(self):
        """The shared spine CSV (``spine.csv``, contract 8)."""
        return self.folder / SPINE_NAME

    @property
    def annotations_dir(self):
        return self.folder / ANNOTATIONS_DIR

    @property
    def sessions_dir(self):
        return self.folder / SESSIONS_DIR

    @property
    def study_file(self):
        return self.folder / STUDY_FILE

    def observer_dir(self, observer_id):
        """``annotations/<observer>``: the only folder this observer writes outlines into."""
        return self.annotations_dir / _identifier(observer_id, "observer ID")

    def annotation_path(self, observer_id, patient_id, session=DEFAULT_SESSION):
        """``annotations/<observer>/<patient>.<session>.pvm.json``."""
        pid = _identifier(patient_id, "patient ID")
        return self.observer_dir(observer_id) / f"{pid}.{check_session_label(session)}.pvm.json"

    def spine_annotation_path(self, observer_id, patient_id, session=DEFAULT_SESSION):
        """``annotations/<observer>/spine/<patient>.<session>.pvm.json`` (a
        ``napari-pvm.spine/1`` file; the same naming rule as the outlines)."""
        pid = _identifier(patient_id, "patient ID")
        return self.observer_dir(observer_id) / SPINE_DIR / f"{pid}.{check_session_label(session)}.pvm.json"

    def session_path(self, observer_id, session=DEFAULT_SESSION):
        """``sessions/<observer>.<session>.json``."""
        return self.sessions_dir / f"{_identifier(observer_id, 'observer ID')}.{check_session_label(session)}.json"

    # ------------------------------------------------------------ worklist
    def _all_cases(self):
        if self._cases is None:
            self._cases = _read_worklist(self.worklist_path)
        return self._cases

    def cases(self, observer_id=None):
        """The worklist cases an observer reads, in worklist order.

        With ``observer_id``, rows assigned to another observer (a non-empty
        ``observer_id`` cell) are left out; a patient listed twice for the
        same observer is an error. Without it, every row is returned.
        """
        rows = self._all_cases()
        if observer_id is None:
            return rows
        observer = _identifier(observer_id, "observer ID")
        mine = [c for c in rows if not c.observer_id or c.observer_id == observer]
        seen = {}
        for case in mine:
            if case.patient_id in seen:
                raise SessionError(
                    f"{self.worklist_path.name}: patient {case.patient_id} is listed twice for observer {observer} "
                    f"(lines {seen[case.patient_id]} and {case.line})"
                )
            seen[case.patient_id] = case.line
        if not mine:
            raise SessionError(f"{self.worklist_path.name} assigns no case to observer {observer}")
        return tuple(mine)

    @property
    def patient_ids(self):
        """Every patient ID of the worklist, sorted."""
        return sorted({c.patient_id for c in self._all_cases()})

    # ------------------------------------------------------- study.json
    def info(self):
        """The content of ``study.json`` (empty when it does not exist yet)."""
        obj = _read_json(self.study_file, "study file") or {}
        if obj.get("format") not in (None, STUDY_FORMAT):
            raise SessionError(f"{self.study_file} has format {obj.get('format')!r}, expected {STUDY_FORMAT!r}")
        return obj

    def settings(self):
        """The study's :class:`StudySettings` from ``study.json`` (defaults when absent).

        Raises
        ------
        SessionError
            ``proposals`` not a JSON boolean, ``measure_sets`` not a non-empty
            list of names from :data:`MEASURE_SETS`.
        """
        return _study_settings(self.info(), self.study_file.name)

    @property
    def study_id(self):
        """The study's identifier: ``study.json``'s ``study_id``, else the folder name."""
        return str(self.info().get("study_id") or self.folder.name)

    def prepare(self):
        """Create ``annotations/``, ``sessions/`` and ``study.json`` (with the
        study ID and the study codes) where missing; return the codes."""
        try:
            self.annotations_dir.mkdir(exist_ok=True)
            self.sessions_dir.mkdir(exist_ok=True)
        except OSError as exc:
            raise SessionError(f"cannot create the study's folders in {self.folder}: {exc}") from None
        return self.codes()

    def codes(self):
        """Study codes ``{patient_id: "C017", ...}``: the same for every
        observer and stable for the study's life.

        Codes are numbered in the order of a sha256 keyed by the study ID (so
        they do not follow the worklist order) and kept in ``study.json``;
        patients added to the worklist later get the next free numbers.
        Writes ``study.json`` when a patient has no code yet.
        """
        info = self.info()
        study_id = str(info.get("study_id") or self.folder.name)
        codes = {str(k): str(v) for k, v in (info.get("codes") or {}).items()}
        new = [p for p in self.patient_ids if p not in codes]
        if new:
            new.sort(key=lambda p: hashlib.sha256(f"{study_id}\0code\0{p}".encode()).hexdigest())
            width = max(3, len(str(len(codes) + len(new))))
            used = set(codes.values())
            number = len(codes)
            for pid in new:
                number += 1
                while f"C{number:0{width}d}" in used:
                    number += 1
                codes[pid] = f"C{number:0{width}d}"
                used.add(codes[pid])
            info.update(format=STUDY_FORMAT, study_id=study_id, codes=codes)
            info.setdefault("created_at", _now())
            try:
                write_json_atomic(self.study_file, info)
            except OSError as exc:
                raise SessionError(f"cannot write {self.study_file}: {exc}") from None
        return {p: codes[p] for p in self.patient_ids}

    # --------------------------------------------------------------- guard
    def check_annotation_target(self, path, observer_id, patient_id=None):
        """Refuse to write ``path`` unless it is this observer's own file.

        Raises :class:`SessionError` when ``path`` is outside
        ``annotations/<observer_id>/`` (symbolic links resolved), when that
        folder is itself a link elsewhere, or when the file exists and its
        ``observer_id`` (or ``patient_id``) differs. Outline files and spine
        files (``napari-pvm.spine/1``) are both checked.
        """
        observer = _identifier(observer_id, "observer ID")
        own = self.observer_dir(observer)
        if own.is_symlink() or (own.exists() and own.resolve() != self.annotations_dir.resolve() / observer):
            raise SessionError(f"{own} is a link to another folder; observer folders must be real folders")
        target = Path(path).resolve()
        if not target.is_relative_to(own.resolve()):
            raise SessionError(f"observer {observer} may only write annotations into {own}; refusing to write {target}")
        if target.exists():
            try:
                existing = _read_any_annotation(target)
            except PvmError as exc:
                raise SessionError(f"{target.name} exists and cannot be read ({exc}); not overwriting it") from None
            if existing.observer_id and existing.observer_id != observer:
                raise SessionError(
                    f"{target.name} belongs to observer {existing.observer_id}; observer {observer} cannot overwrite it"
                )
            if patient_id and existing.patient_id and existing.patient_id != patient_id:
                raise SessionError(
                    f"{target.name} holds patient {existing.patient_id}, not {patient_id}; not overwriting it"
                )
        return target


def _read_any_annotation(path):
    """An outline annotation (contract 2) or a spine annotation (contract 8),
    by the file's ``format``; both carry ``observer_id`` and ``patient_id``."""
    from .spine import FORMAT as SPINE_FORMAT, read_spine_annotation

    try:
        fmt = json.loads(Path(path).read_text(encoding="utf-8")).get("format")
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        fmt = None  # read_annotation says what is wrong with it
    return read_spine_annotation(path) if fmt == SPINE_FORMAT else read_annotation(path)


def spine_annotation_sha256(annotation):
    """Digest of a spine annotation's measured content (slice, ROIs, CSF,
    exclusions, lines, anterior side); ignores IDs and key order.

    Parameters
    ----------
    annotation : dict or SpineAnnotation
        A ``napari-pvm.spine/1`` annotation.

    Examples
    --------
    >>> a = {"format": "napari-pvm.spine/1", "slice_index": 2, "excluded": [{"level": "L2", "reason": "fracture"}]}
    >>> spine_annotation_sha256(a) == spine_annotation_sha256({**a, "patient_id": "P1"})
    True
    """
    from .spine import parse_spine_annotation

    if not isinstance(annotation, dict):
        annotation = annotation.to_dict()
    content = parse_spine_annotation(annotation).to_dict()
    for key in ("patient_id", "observer_id", "session"):
        content.pop(key, None)
    blob = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def create_study(folder, cases, *, study_id=None, proposals=None, measure_sets=None):
    """Create a study folder with a worklist (a convenience for scripts).

    Parameters
    ----------
    folder : str or Path
        Created if missing.
    cases : iterable of dict
        ``{"patient_id": ..., "image": ..., "slice_index": ..., "level": ...,
        "sagittal_image": ...}`` (paths relative to ``folder`` or absolute).
        Other keys are refused: keep clinical data out of the study.
    study_id : str, optional
        Fixes the study identifier (default: the folder name).
    proposals : bool, optional
        Allow outline proposals in the study's sessions (``study.json``
        ``"proposals"``; default false).
    measure_sets : list of str, optional
        ``["muscle"]`` (default), ``["muscle", "spine"]`` or ``["spine"]``.

    Returns
    -------
    Study
    """
    import csv

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rows = [dict(c) for c in cases]
    columns = [c for c in SESSION_COLUMNS if any(c in r for r in rows)]
    extra = sorted({k for r in rows for k in r} - set(SESSION_COLUMNS))
    if extra:
        raise SessionError(f"a worklist takes only {', '.join(SESSION_COLUMNS)}; got {', '.join(extra)}")
    target = folder / WORKLIST_NAME
    if target.exists():
        raise SessionError(f"{target} exists already")
    with open(target, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    info = {}
    if study_id is not None:
        info["study_id"] = _identifier(study_id, "study ID")
    if proposals is not None:
        info["proposals"] = proposals
    if measure_sets is not None:
        info["measure_sets"] = list(measure_sets)
    if info:
        _study_settings(info, STUDY_FILE)
        write_json_atomic(folder / STUDY_FILE, {"format": STUDY_FORMAT, **info, "created_at": _now()})
    study = Study(folder)
    study.prepare()
    return study


@dataclasses.dataclass
class _Clock:
    patient_id: str = None
    since: float = 0.0


class ReadingSession:
    """One observer's blinded pass through a study's worklist.

    Create or resume one with :meth:`open`. Every method that changes the
    session writes the session file atomically before returning.

    Attributes
    ----------
    study : Study
    observer_id : str
    session : str
        Session label (``read1``; ``read2`` for a repeat reading).
    seed : int
        Seed of the case order (:func:`session_seed`), recorded in the file.
    order : tuple of str
        Patient IDs in this observer's reading order (:func:`seeded_order`;
        patients added to the worklist later are appended in seeded order).
    position : int
        Index of the current case in :attr:`order`.
    """

    def __init__(self, study, state, *, cases, measure_sets=("muscle",)):
        self.study = study
        self._measure_sets = tuple(measure_sets)
        self._state = state
        self._cases = {c.patient_id: c for c in cases}
        self._clock = _Clock()
        self._examples = {}  # (patient, annotation mtime, size) -> example (or None)

    # ------------------------------------------------------------ opening
    @classmethod
    def open(cls, study, observer_id, session=DEFAULT_SESSION):
        """Resume the session file of ``observer_id`` / ``session``, or start it.

        Raises
        ------
        SessionError
            Bad observer ID or label, unreadable worklist, ``study.json`` or
            session file, an observer folder that differs only in letter case
            from this one.
        """
        observer = _identifier(observer_id, "observer ID")
        label = check_session_label(session)
        study = study if isinstance(study, Study) else Study(study)
        cases = study.cases(observer)
        sets = study.settings().measure_sets  # a bad study.json is refused before anything is written
        study.prepare()
        _check_case_clash(study, observer)
        path = study.session_path(observer, label)
        ids = [c.patient_id for c in cases]
        state = _read_json(path, "session file")
        if state is None:
            seed = session_seed(study.study_id, observer, label)
            now = _now()
            state = {
                "format": SESSION_FORMAT,
                "study_id": study.study_id,
                "observer_id": observer,
                "session": label,
                "seed": seed,
                "order_rule": "patient IDs sorted by sha256(f'{seed}:{patient_id}')",
                "order": seeded_order(ids, seed),
                "position": 0,
                "current": None,
                "cases": {},
                "created_at": now,
                "updated_at": now,
                "revision": 0,
                "software_version": _version(),
                "log": [{"at": now, "event": "start", "cases": len(ids)}],
            }
            reading = cls(study, state, cases=cases, measure_sets=sets)
        else:
            reading = cls(study, _checked_state(state, path, observer, label), cases=cases, measure_sets=sets)
            reading._reconcile(ids)
            reading._reopen_incomplete()
            reading._log("resume", patient_id=reading.current_id, position=reading.position)
        reading._state["current"] = reading.current_id
        reading._save()
        return reading

    def _reconcile(self, ids):
        """Keep the recorded order; drop patients gone from the worklist and
        append new ones in seeded order."""
        recorded = list(self._state["order"])
        current = self._state.get("current")
        kept = [p for p in recorded if p in set(ids)]
        added = seeded_order([p for p in ids if p not in set(recorded)], self.seed)
        removed = [p for p in recorded if p not in set(ids)]
        if added or removed:
            self._state["order"] = kept + added
            self._log("worklist changed", added=added, removed=removed)
        order = self._state["order"]
        if current in order:
            self._state["position"] = order.index(current)
        else:
            self._state["position"] = min(int(self._state.get("position", 0)), len(order) - 1)

    def _reopen_incomplete(self):
        """Cases marked done that lack the row of a measure set the study asks
        for now (``measure_sets`` grew after they were read, e.g. ``"spine"``
        added) become *started* again: "done" keeps meaning every row exists."""
        reopened = [
            pid
            for pid in self._state["order"]
            if self._state["cases"].get(pid, {}).get("state") == "done" and self.missing_rows(pid)
        ]
        for pid in reopened:
            self._set_entry(pid, state="started")
        if reopened:
            self._log("reopened", patient_ids=reopened, missing=list(self.missing_rows(reopened[0])))

    # --------------------------------------------------------- properties
    @property
    def observer_id(self):
        return self._state["observer_id"]

    @property
    def session(self):
        return self._state["session"]

    @property
    def seed(self):
        return int(self._state["seed"])

    @property
    def order(self):
        return tuple(self._state["order"])

    @property
    def position(self):
        return int(self._state["position"])

    @property
    def total(self):
        return len(self._state["order"])

    @property
    def path(self):
        """The session file, ``sessions/<observer>.<session>.json``."""
        return self.study.session_path(self.observer_id, self.session)

    @property
    def current_id(self):
        return self._state["order"][self.position]

    @property
    def current(self):
        """The current :class:`~napari_pvm.core.batch.Case`."""
        return self._cases[self.current_id]

    @property
    def log(self):
        """The session's append-only event log (a copy)."""
        return [dict(e) for e in self._state["log"]]

    def case_state(self, patient_id=None):
        """``"open"``, ``"started"`` (outlines saved), ``"done"`` or ``"skipped"``."""
        return self._entry(patient_id).get("state", "open")

    def skip_reason(self, patient_id=None):
        return self._entry(patient_id).get("reason")

    def counts(self):
        """``{"done": n, "skipped": n, "started": n, "open": n, "total": n}``."""
        out = dict.fromkeys(STATES, 0)
        for pid in self._state["order"]:
            out[self.case_state(pid)] += 1
        out["total"] = self.total
        return out

    def display_name(self, patient_id=None, *, codes=False):
        """What the screen shows for a patient: its study code or its ID."""
        pid = patient_id or self.current_id
        return self.study.codes()[pid] if codes else pid

    def _entry(self, patient_id):
        pid = patient_id or self.current_id
        if pid not in self._cases:
            raise SessionError(f"patient {pid} is not in observer {self.observer_id}'s worklist")
        return self._state["cases"].get(pid, {})

    def _set_entry(self, patient_id, **values):
        entry = self._state["cases"].setdefault(patient_id, {})
        entry.update(values)
        return entry

    # --------------------------------------------------------- navigation
    def go_to(self, position):
        """Make case ``position`` (0-based index into :attr:`order`) current."""
        position = int(position)
        if not 0 <= position < self.total:
            raise SessionError(f"case {position + 1} does not exist; this session has {self.total} cases")
        self._stop_clock()
        self._state["position"] = position
        self._state["current"] = self.current_id
        self._log("open", patient_id=self.current_id, position=position)
        self._save()
        return self.current

    def next(self):
        """Go to the next case; returns False (and stays) at the last one."""
        if self.position + 1 >= self.total:
            return False
        self.go_to(self.position + 1)
        return True

    def previous(self):
        """Go to the previous case; returns False (and stays) at the first one."""
        if self.position == 0:
            return False
        self.go_to(self.position - 1)
        return True

    def start_clock(self):
        """Start timing the current case (time on task, summed per case)."""
        self._clock = _Clock(self.current_id, time.monotonic())

    def _stop_clock(self):
        clock, self._clock = self._clock, _Clock()
        if clock.patient_id is not None:
            entry = self._set_entry(clock.patient_id)
            entry["seconds"] = round(float(entry.get("seconds", 0.0)) + time.monotonic() - clock.since, 1)

    def first_unfinished(self):
        """Position of the first case neither done nor skipped, or None."""
        for i, pid in enumerate(self._state["order"]):
            if self.case_state(pid) not in ("done", "skipped"):
                return i
        return None

    # ------------------------------------------------------------- status
    def skip(self, reason):
        """Mark the current case skipped with ``reason`` and go to the next one.

        Returns True when it moved on (False at the last case).
        """
        reason = " ".join(str(reason or "").split())
        if not reason:
            raise SessionError("give a reason for skipping the case (e.g. 'L4 not covered', 'motion artefact')")
        pid = self.current_id
        self._set_entry(pid, state="skipped", reason=reason, at=_now())
        self._log("skip", patient_id=pid, reason=reason)
        self._save()
        return self.next()

    def record_row(self, row, patient_id=None, *, annotation_sha256=None, measure_set="muscle"):
        """Record the shared-CSV row a case appended (its ``row_id``).

        Parameters
        ----------
        row : dict
            The stored row (as the Measure dock's or the Spine dock's
            ``row_added`` gives it): it must carry a ``row_id`` and this
            case's ``patient_id``, this session's ``observer_id`` and ``session``.
        patient_id : str, optional
            The case (default: the current one).
        annotation_sha256 : str, optional
            Digest of the annotation the row was measured from, so that a
            later change of the drawing can be noticed (:meth:`row_is_current`).
        measure_set : {"muscle", "spine"}
            Which table the row went to (``measurements.csv`` or ``spine.csv``).

        Raises
        ------
        SessionError
            The row has no ``row_id`` or belongs to another patient, observer
            or session, or the measure set is unknown; nothing is recorded.
        """
        pid = patient_id or self.current_id
        self._entry(pid)
        latest, every, digest, at = _row_keys(measure_set)
        row_id = str(row.get("row_id") or "").strip()
        if not row_id:
            raise SessionError("the row has no row_id; it was not stored in the shared CSV")
        for key, want in (("patient_id", pid), ("observer_id", self.observer_id), ("session", self.session)):
            got = str(row.get(key) or "")
            if got != want:
                raise SessionError(f"the row is for {key} {got!r}, not {want!r}; it is not this case's row")
        entry = self._set_entry(pid, **{latest: row_id, at: _now()})
        entry[every] = [*entry.get(every, []), row_id]
        if annotation_sha256:
            entry[digest] = str(annotation_sha256)
        else:
            entry.pop(digest, None)
        self._log("row", patient_id=pid, row_id=row_id, **({} if measure_set == "muscle" else {"table": measure_set}))
        self._save()
        return row_id

    def row_id(self, patient_id=None, measure_set="muscle"):
        """``row_id`` of the latest row this case appended to the table of
        ``measure_set`` (None before one)."""
        return self._entry(patient_id).get(_row_keys(measure_set)[0])

    def row_is_current(self, annotation_sha256, patient_id=None, measure_set="muscle"):
        """True when the case has a row of ``measure_set`` measured from this
        annotation digest (or from an annotation not recorded with a digest).

        ``annotation_sha256`` None means the drawing is unknown (for example
        its saved file cannot be read): no row is current then.
        """
        latest, _, digest, _ = _row_keys(measure_set)
        entry = self._entry(patient_id)
        if not entry.get(latest) or annotation_sha256 is None:
            return False
        recorded = entry.get(digest)
        return recorded is None or recorded == annotation_sha256

    @property
    def measure_sets(self):
        """The measure sets every case of this study needs a row of
        (``study.json`` ``measure_sets``, read when the session opened)."""
        return self._measure_sets

    def missing_rows(self, patient_id=None):
        """The measure sets of the study whose row this case has not recorded yet."""
        entry = self._entry(patient_id)
        return tuple(m for m in self.measure_sets if not entry.get(_row_keys(m)[0]))

    def mark_done(self, patient_id=None):
        """Mark a case (default: the current one) done.

        Raises
        ------
        SessionError
            The session file lacks the row of one of the study's measure sets
            for this case (:meth:`record_row`): a case is done only when every
            row the study asks for exists.
        """
        pid = patient_id or self.current_id
        missing = self.missing_rows(pid)
        if missing:
            detail = "" if self.measure_sets == ("muscle",) else " for " + " and ".join(_describe(m) for m in missing)
            raise SessionError(
                f"case {pid} has no row in the shared CSV yet{detail}; measure and add the row (Ctrl-Enter) "
                "or skip the case with a reason"
            )
        entry = self._set_entry(pid, state="done", at=_now())
        entry.pop("reason", None)
        rows = {_row_keys(m)[0]: entry[_row_keys(m)[0]] for m in self.measure_sets}
        self._log("done", patient_id=pid, **rows)
        self._save()

    # ------------------------------------------------------------ examples
    @property
    def settings(self):
        """The study's :class:`StudySettings` (``study.json``)."""
        return self.study.settings()

    def example_annotations(self, limit=10):
        """Earlier outlined slices of this observer for outline proposals.

        Only this observer's own annotation files of this session label
        (``annotations/<observer>/<patient>.<session>.pvm.json``) of cases
        that are done (their row is in the shared CSV), never the patient
        being read, never another observer's files, never another session
        label's; the most recently finished first. Files whose observer,
        session or patient fields disagree with their place, whose image
        digest does not match the image, or whose left and right outlines lie
        the wrong way round (a proposal would refuse them), are left out.

        Parameters
        ----------
        limit : int
            At most this many examples.

        Returns
        -------
        list of tuple
            ``(image2d, spacing, {roi_key: (N, 2) vertices})`` as
            :func:`napari_pvm.core.propose.propose_outlines` takes them.
        """
        from .io import read_volume

        current = self.current_id
        done = [
            (entry.get("at", ""), pid)
            for pid, entry in self._state["cases"].items()
            if pid != current and pid in self._cases and entry.get("state") == "done" and entry.get("row_id")
        ]
        out = []
        for _, pid in sorted(done, reverse=True):
            if len(out) >= int(limit):
                break
            path = self.annotation_path(pid)
            try:
                stat = path.stat()
            except OSError:
                continue
            key = (pid, stat.st_mtime_ns, stat.st_size)
            if key not in self._examples:
                self._examples[key] = self._example(pid, path, read_volume)
            if self._examples[key] is not None:
                out.append(self._examples[key])
        return out

    def _example(self, pid, path, read_volume):
        try:
            annotation = read_annotation(path)
        except PvmError:
            return None
        own = (
            annotation.observer_id in (None, self.observer_id)
            and annotation.session in (None, self.session)
            and annotation.patient_id in (None, pid)
        )
        if not own or not annotation.rois or swapped_sides(annotation.rois) is not None:
            return None
        try:
            volume = read_volume(self._cases[pid].image)
        except (PvmError, OSError):
            return None
        if annotation.image_sha256 and annotation.image_sha256 != volume.sha256:
            return None
        if not 0 <= annotation.slice_index < volume.data.shape[0]:
            return None
        plane = volume.data[annotation.slice_index].astype("float32")
        spacing = tuple(float(x) for x in volume.spacing[1:])
        return plane, spacing, {k: v.copy() for k, v in annotation.rois.items()}

    # -------------------------------------------------------- annotations
    def annotation_path(self, patient_id=None):
        """This observer's annotation file for a patient in this session."""
        pid = patient_id or self.current_id
        self._entry(pid)
        return self.study.annotation_path(self.observer_id, pid, self.session)

    def saved_outlines(self, patient_id=None):
        """How many outlines the observer's saved annotation of a patient holds
        (as recorded at its last save; 0 before any)."""
        return int(self._entry(patient_id or self.current_id).get("outlines", 0) or 0)

    def own_annotation(self, patient_id=None):
        """The observer's own annotation file of this session, if it exists."""
        path = self.annotation_path(patient_id)
        return path if path.is_file() else None

    def check_writable(self, path, measure_set="muscle"):
        """Refuse (``SessionError``) to save a drawing anywhere but the current
        case's own file of its kind: the outlines into
        ``annotations/<observer>/<patient>.<session>.pvm.json``, a spine
        drawing (``measure_set="spine"``) into
        ``annotations/<observer>/spine/<patient>.<session>.pvm.json``. A
        dock's *Save…* can then never overwrite the outlines with a spine
        drawing (or the reverse), another case's file or another session
        label's. Returns the path.

        Examples
        --------
        >>> import tempfile
        >>> study = create_study(tempfile.mkdtemp(), [{"patient_id": "P1", "image": "p1.nii.gz"}])
        >>> s = ReadingSession.open(study, "A")
        >>> s.check_writable(s.annotation_path()) == s.annotation_path()
        True
        >>> s.check_writable(s.annotation_path(), "spine")
        Traceback (most recent call last):
        ...
        napari_pvm.core.session.SessionError: during session read1 the spine drawing of this case is saved only as spine/P1.read1.pvm.json in observer A's folder (saved as you draw)
        """
        own = self.spine_annotation_path() if measure_set == "spine" else self.annotation_path()
        _row_keys(measure_set)
        self.study.check_annotation_target(path, self.observer_id, self.current_id)
        if Path(path).resolve() != own.resolve():
            what = "spine drawing" if measure_set == "spine" else "outlines"
            name = f"{SPINE_DIR}/{own.name}" if measure_set == "spine" else own.name
            verb = "is" if measure_set == "spine" else "are"
            raise SessionError(
                f"during session {self.session} the {what} of this case {verb} saved only as {name} "
                f"in observer {self.observer_id}'s folder (saved as you draw)"
            )
        return own

    def check_readable(self, path, measure_set="muscle"):
        """Refuse (``SessionError``) to load any annotation file but this
        observer's own files of this session (outlines, or with
        ``measure_set="spine"`` spine annotations): while a session runs,
        neither the other observer's drawings nor the observer's earlier
        reading may be opened. Returns the file's patient ID."""
        where = self.spine_annotation_path if measure_set == "spine" else self.annotation_path
        _row_keys(measure_set)
        target = Path(path).resolve()
        own = {where(pid).resolve(): pid for pid in self._state["order"]}
        if target not in own:
            folder = self.study.observer_dir(self.observer_id) / (SPINE_DIR if measure_set == "spine" else "")
            raise SessionError(
                f"during session {self.session} observer {self.observer_id} can only open their own "
                f"{'spine annotations' if measure_set == 'spine' else 'outlines'} of this session "
                f"({folder}/<patient>.{self.session}.pvm.json)"
            )
        return own[target]

    def spine_annotation_path(self, patient_id=None):
        """This observer's spine annotation file for a patient in this session
        (``annotations/<observer>/spine/<patient>.<session>.pvm.json``)."""
        pid = patient_id or self.current_id
        self._entry(pid)
        return self.study.spine_annotation_path(self.observer_id, pid, self.session)

    def own_spine_annotation(self, patient_id=None):
        """The observer's own spine annotation of this session, if it exists."""
        path = self.spine_annotation_path(patient_id)
        return path if path.is_file() else None

    def spine_image(self, patient_id=None):
        """The case's sagittal image for the spine measures, or ``""``.

        The worklist's ``sagittal_image``; in a spine-only study
        (``measure_sets: ["spine"]``) a case without one uses its ``image``
        (then that image must be sagittal).
        """
        case = self._cases[patient_id or self.current_id]
        if case.sagittal_image:
            return case.sagittal_image
        return case.image if "muscle" not in self.measure_sets else ""

    def save_spine_annotation(self, annotation, patient_id=None):
        """Write ``annotation`` (a ``napari-pvm.spine/1`` dict) as this
        observer's spine file for a patient; the rules of
        :meth:`save_annotation` apply (IDs set to the session's, only into the
        observer's own folder, never over another observer's file; a case with
        something drawn becomes ``started``).

        Returns
        -------
        Path
        """
        from .spine import parse_spine_annotation, write_spine_annotation

        pid = patient_id or self.current_id
        path = self.spine_annotation_path(pid)
        self.study.check_annotation_target(path, self.observer_id, pid)
        obj = dict(annotation.to_dict() if hasattr(annotation, "to_dict") else annotation)
        obj.update(patient_id=pid, observer_id=self.observer_id, session=self.session)
        try:
            parsed = parse_spine_annotation(obj, source=path.name)
        except PvmError as exc:
            raise SessionError(str(exc)) from None
        parts = len(parsed.vertebrae) + (parsed.csf is not None) + 2 * len(parsed.angles) + len(parsed.excluded)
        parts += bool(parsed.extra.get("unpaired_line"))  # one endplate line drawn so far (the Spine dock's key)
        self.check_current()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_spine_annotation(path, obj)
        except OSError as exc:
            raise SessionError(f"cannot save {path.name}: {exc}") from None
        entry = self._set_entry(pid, spine_parts=parts, spine_saved_at=_now())
        entry["spine_saves"] = int(entry.get("spine_saves", 0)) + 1
        if parts and entry.get("state", "open") in ("open", "skipped"):
            entry["state"] = "started"
        self._reopen_if_changed(pid, "spine", spine_annotation_sha256(obj))
        self._save()
        return path

    def save_annotation(self, annotation, patient_id=None):
        """Write ``annotation`` as this observer's file for a patient.

        The patient, observer and session IDs of the annotation are set to the
        session's. Refuses (``SessionError``) to write outside the observer's
        folder or over a file of another observer. A case with outlines
        becomes ``started`` unless it is already done.

        Returns
        -------
        Path
        """
        pid = patient_id or self.current_id
        path = self.annotation_path(pid)
        self.study.check_annotation_target(path, self.observer_id, pid)
        annotation = dataclasses.replace(annotation, patient_id=pid, observer_id=self.observer_id, session=self.session)
        self.check_current()  # a window another one took the session from writes nothing
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_annotation(path, annotation)
        except OSError as exc:
            raise SessionError(f"cannot save {path.name}: {exc}") from None
        entry = self._set_entry(pid, outlines=len(annotation.rois), saved_at=_now())
        entry["saves"] = int(entry.get("saves", 0)) + 1
        if annotation.rois and entry.get("state", "open") in ("open", "skipped"):
            entry["state"] = "started"
        self._reopen_if_changed(pid, "muscle", _outline_digest(annotation))
        self._save()
        return path

    def _reopen_if_changed(self, pid, measure_set, digest):
        """A done case whose drawing no longer is the one its recorded row was
        measured from becomes *started* again (whichever way the observer
        leaves it, not only through Next)."""
        entry = self._entry(pid)
        recorded = entry.get(_row_keys(measure_set)[2])
        if entry.get("state") == "done" and recorded and recorded != digest:
            entry["state"] = "started"
            self._log("changed after done", patient_id=pid, table=measure_set)

    # -------------------------------------------------------- persistence
    def _log(self, event, **info):
        self._state["log"].append({"at": _now(), "event": event, **info})

    def close(self):
        """Record the time spent on the current case and save."""
        self._stop_clock()
        self._log("close", patient_id=self.current_id)
        self._save()

    def to_dict(self):
        return json.loads(json.dumps(self._state))

    def check_current(self):
        """Raise :class:`SessionError` when another napari window has changed
        this session's file since this window read it: then this window may
        write nothing (no annotation, no row), only the other one may."""
        on_disk = _read_json(self.path, "session file")
        if on_disk is not None and int(on_disk.get("revision", 0)) != int(self._state["revision"]):
            raise SessionError(
                f"session {self.observer_id}/{self.session} was changed by another napari window "
                f"(revision {on_disk.get('revision')} on disk, {self._state['revision']} here); "
                "close the other window and start the session again"
            )

    def _save(self):
        """Write the session file atomically; refuse if another window changed it."""
        self.check_current()
        self._state["revision"] = int(self._state["revision"]) + 1
        self._state["updated_at"] = _now()
        try:
            write_json_atomic(self.path, self._state)
        except OSError as exc:
            self._state["revision"] -= 1
            raise SessionError(f"cannot save the session file {self.path}: {exc}") from None


def _describe(measure_set):
    """``"spine (spine.csv)"``: a measure set and its table, for messages."""
    return f"{measure_set} ({_TABLES[measure_set]})"


def _row_keys(measure_set):
    try:
        return _ROW_KEYS[measure_set]
    except KeyError:
        raise SessionError(f"unknown measure set {measure_set!r}; use {' or '.join(MEASURE_SETS)}") from None


def _checked_state(state, path, observer, label):
    if state.get("format") != SESSION_FORMAT:
        raise SessionError(f"{path.name} has format {state.get('format')!r}, expected {SESSION_FORMAT!r}")
    if state.get("observer_id") != observer or state.get("session") != label:
        raise SessionError(
            f"{path.name} belongs to observer {state.get('observer_id')!r}, session {state.get('session')!r}"
        )
    needed = ("seed", "order", "position", "cases", "log", "revision")
    missing = [k for k in needed if k not in state]
    if missing or not isinstance(state["order"], list) or not state["order"]:
        raise SessionError(f"{path.name} is incomplete (missing {', '.join(missing) or 'order'})")
    return state


def _check_case_clash(study, observer):
    """Refuse an observer ID that differs from an existing one only in case
    (``a`` vs ``A``), which would share a folder on macOS and Windows."""
    names = [p.name for p in study.annotations_dir.iterdir() if p.is_dir()]
    names += [p.name[: -len(".json")].rsplit(".", 1)[0] for p in study.sessions_dir.glob("*.json")]
    for name in names:
        if not name.startswith(".") and name != observer and name.lower() == observer.lower():
            raise SessionError(
                f"observer ID {observer!r} differs from the existing observer {name!r} only in letter case; "
                f"use {name!r} or another ID"
            )


def _version():
    from .._version import __version__

    return __version__

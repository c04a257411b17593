"""`napari-pvm phantom` and `napari-pvm measure` end to end, and their bad input."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from napari_pvm.cli import main

EXE = str(Path(sys.executable).with_name("napari-pvm"))


def run(*args):
    return subprocess.run([EXE, *map(str, args)], capture_output=True, text=True)


def test_measure_phantom_json_and_csv(phantom_files, tmp_path, capsys):
    from napari_pvm.core.store import read_rows

    csv = tmp_path / "shared.csv"
    code = main(
        [
            "measure",
            str(phantom_files["image"]),
            str(phantom_files["annotation"]),
            "--patient",
            "007",
            "--observer",
            "obsA",
            "--csv",
            str(csv),
            "--json",
        ]
    )
    assert code == 0
    row = json.loads(capsys.readouterr().out)
    truth = json.loads(phantom_files["truth"].read_text())
    for group in ("PS", "ES", "MF", "ESMF"):
        assert row[f"{group}_B_total_area_cm2"] == pytest.approx(truth[f"{group}_B_total_area_cm2"], rel=1e-9)
        assert row[f"{group}_B_fi_pct"] == pytest.approx(truth[f"{group}_B_fi_pct"], abs=2.0)
        for side in "LR":
            assert row[f"{group}_{side}_fi_pct"] == pytest.approx(truth[f"{group}_{side}_fi_pct"], abs=3.0)
    stored = read_rows(csv)
    assert len(stored) == 1 and stored.loc[0, "patient_id"] == "007"
    assert stored.loc[0, "row_id"] == row["row_id"]
    assert stored.loc[0, "ESMF_B_fi_pct"] == row["ESMF_B_fi_pct"]  # full precision
    assert row["rois_present"] == "PS_L;PS_R;ES_L;ES_R;MF_L;MF_R"
    assert row["image_sha256"] == json.loads(phantom_files["annotation"].read_text())["image"]["sha256"]


def test_measure_is_reproducible(phantom_files, capsys):
    rows = []
    for _ in range(2):
        assert main(["measure", str(phantom_files["image"]), str(phantom_files["annotation"]), "--json"]) == 0
        rows.append(json.loads(capsys.readouterr().out))
    for key in rows[0]:
        if key not in ("measured_at", "row_id"):
            assert rows[0][key] == rows[1][key], key


def test_readable_table_without_json(phantom_files):
    result = run("measure", phantom_files["image"], phantom_files["annotation"])
    assert result.returncode == 0, result.stderr
    assert "ESMF   B" in result.stdout and "FI %" in result.stdout


def _annotation(phantom_files, tmp_path, edit):
    data = json.loads(phantom_files["annotation"].read_text())
    edit(data)
    path = tmp_path / "edited.pvm.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d.update(format="something/2"), "format tag"),
        (lambda d: d.pop("rois"), "missing key 'rois'"),
        (lambda d: d["rois"][0].update(muscle="QL"), "unknown muscle"),
        (lambda d: d["rois"][0].update(side="X"), "unknown side"),
        (lambda d: d["rois"][0]["vertices"].append([5000.0, 10.0]), "outside"),
        (lambda d: d.update(slice_index=99), "out of range"),
        (lambda d: d["image"].update(sha256="ab" * 32), "another image"),
        (lambda d: d.update(samples=[s for s in d["samples"] if s["class"] == "fat"]), "muscle"),
    ],
)
def test_bad_annotation_exit_2_one_line_nothing_written(phantom_files, tmp_path, edit, message):
    path = _annotation(phantom_files, tmp_path, edit)
    csv = tmp_path / "shared.csv"
    result = run("measure", phantom_files["image"], path, "--patient", "P1", "--observer", "A", "--csv", csv)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert result.stdout == ""
    assert not csv.exists()


@pytest.mark.parametrize("patient", ["../etc", "a,b", "=1+1", "x\ny", " "])
def test_bad_patient_id(phantom_files, tmp_path, patient):
    csv = tmp_path / "shared.csv"
    result = run(
        "measure",
        phantom_files["image"],
        phantom_files["annotation"],
        "--patient",
        patient,
        "--observer",
        "A",
        "--csv",
        csv,
    )
    assert result.returncode == 2
    assert "patient ID" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not csv.exists()


def test_csv_without_patient_exits_2(phantom_files, tmp_path):
    data = json.loads(phantom_files["annotation"].read_text())
    data.pop("patient_id", None)
    path = tmp_path / "nopatient.pvm.json"
    path.write_text(json.dumps(data))
    result = run("measure", phantom_files["image"], path, "--observer", "A", "--csv", tmp_path / "s.csv")
    assert result.returncode == 2 and "patient ID" in result.stderr
    assert not (tmp_path / "s.csv").exists()


def test_corrupt_annotation_and_image(phantom_files, tmp_path):
    bad = tmp_path / "bad.pvm.json"
    bad.write_text("{not json")
    result = run("measure", phantom_files["image"], bad)
    assert result.returncode == 2 and "not valid JSON" in result.stderr
    missing = run("measure", tmp_path / "nope.nii.gz", phantom_files["annotation"])
    assert missing.returncode == 2 and "no such file" in missing.stderr


def test_phantom_command_json(tmp_path):
    result = run("phantom", tmp_path / "out", "--seed", "2", "--spacing", "1.2", "--json")
    assert result.returncode == 0
    paths = json.loads(result.stdout)
    assert Path(paths["truth"]).exists() and Path(paths["annotation"]).exists()


@pytest.mark.parametrize("sagittal", [False, True])
def test_phantom_refuses_to_overwrite_without_force(tmp_path, capsys, sagittal):
    extra = ["--sagittal"] if sagittal else []
    name = "sagittal.pvm.json" if sagittal else "phantom.pvm.json"
    (tmp_path / name).write_text("the observer's own annotation")
    capsys.readouterr()
    assert main(["phantom", str(tmp_path), *extra]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert str(tmp_path / name) in err and "--force" in err
    assert [p.name for p in tmp_path.iterdir()] == [name]  # nothing written
    assert (tmp_path / name).read_text() == "the observer's own annotation"
    assert main(["phantom", str(tmp_path), *extra, "--force", "--spacing", "1.2"]) == 0
    assert json.loads((tmp_path / name).read_text())["image"]["sha256"]


@pytest.mark.parametrize("below", ["", "sub"])
def test_phantom_outdir_that_is_a_file_is_named(tmp_path, capsys, below):
    file = tmp_path / "m1.json"
    file.write_text("{}")
    capsys.readouterr()
    assert main(["phantom", str(file / below) if below else str(file)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{file} is a file, not a folder; give a folder" in err
    assert [p.name for p in tmp_path.iterdir()] == ["m1.json"] and file.read_text() == "{}"


# --- schema version 2, --method, --water/--fat (issue 13) ---------------------


def test_measure_row_is_schema_2(phantom_files, capsys):
    from napari_pvm.core import schema
    from napari_pvm.core.store import validate_row

    assert (
        main(
            [
                "measure",
                str(phantom_files["image"]),
                str(phantom_files["annotation"]),
                "--json",
                "--patient",
                "P1",
                "--observer",
                "A",
            ]
        )
        == 0
    )
    row = json.loads(capsys.readouterr().out)
    assert list(row) == [c for c in schema.COLUMNS if c != "row_id"]
    assert row["schema_version"] == "2"
    assert row["outline_origin"] == ";".join(f"{k}:drawn" for k in schema.ROI_KEYS)
    assert row["n_trees"] and row["features_preset"]  # the forest records its settings
    assert row["VB_total_area_cm2"] is None  # the phantom has no vertebral-body outline
    assert all(row[c] is None for c in schema.MEAN_FF_COLUMNS)
    validate_row(row)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--water", "W.nii.gz"], "give both --water and --fat"),
        (["--fat", "F.nii.gz"], "give both --water and --fat"),
        (["--method", "dixon"], "--method dixon needs --water W --fat F"),
        (["--water", "W.nii.gz", "--fat", "F.nii.gz"], "used only by --method dixon"),
    ],
)
def test_dixon_flags_are_checked_before_any_work(phantom_files, tmp_path, extra, message, monkeypatch, capsys):
    import types

    fake = types.ModuleType("napari_pvm.core.fat_methods")
    fake.METHODS = ("forest", "threshold", "gmm", "dixon")
    fake.classify_fat = lambda *a, **k: pytest.fail("classified")
    monkeypatch.setitem(sys.modules, "napari_pvm.core.fat_methods", fake)
    csv = tmp_path / "shared.csv"
    monkeypatch.setattr("napari_pvm.core.io.read_volume", lambda *a, **k: pytest.fail("read an image"))
    code = main(
        [
            "measure",
            str(phantom_files["image"]),
            str(phantom_files["annotation"]),
            "--patient",
            "P1",
            "--observer",
            "A",
            "--csv",
            str(csv),
            *extra,
        ]
    )
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not csv.exists()


def test_an_unknown_method_is_a_usage_error(phantom_files):
    result = run("measure", phantom_files["image"], phantom_files["annotation"], "--method", "svm")
    assert result.returncode == 2 and "--method svm: unknown FI% method; use one of forest" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "method, extra, named",
    [
        ("threshold", ["--trees", "50"], "--trees is a setting"),
        ("gmm", ["--preset", "weka", "--seed", "3"], "--preset, --seed are settings"),
        ("threshold", ["--class-balance", "false"], "--class-balance is a setting"),
    ],
)
def test_forest_settings_with_another_method_are_refused(phantom_files, tmp_path, capsys, method, extra, named):
    csv = tmp_path / "m.csv"
    capsys.readouterr()
    args = [str(phantom_files["image"]), str(phantom_files["annotation"]), "--method", method, *extra]
    assert main(["measure", *args, "--patient", "P", "--observer", "A", "--csv", str(csv)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"error: {named} of the random-forest method, which --method {method}" in err
    assert "use --method forest" in err and not csv.exists()


def test_dixon_images_go_to_the_method_and_the_grid_is_checked(phantom_files, tmp_path, capsys, monkeypatch):
    """With a stand-in for the FI% methods module (fraction = F / (W + F))."""
    import dataclasses
    import types

    import nibabel as nib
    import numpy as np

    @dataclasses.dataclass(frozen=True)
    class Result:
        fat: object
        method: str
        settings: dict
        fat_muscle_contrast: float
        qc_flags: tuple
        fat_fraction: object

    def classify_fat(
        image, labels, *, within, spacing, method="forest", classifier=None, water=None, fat=None, progress=None
    ):
        fraction = fat / (water + fat)
        return Result(fraction > 0.5, "dixon/test", {}, None, ("no_fat_sample",), fraction)

    fake = types.ModuleType("napari_pvm.core.fat_methods")
    fake.METHODS, fake.classify_fat = ("forest", "threshold", "gmm", "dixon"), classify_fat
    monkeypatch.setitem(sys.modules, "napari_pvm.core.fat_methods", fake)
    img = nib.load(phantom_files["image"])
    data = np.asarray(img.dataobj, dtype=np.float32)
    water, fat = tmp_path / "w.nii.gz", tmp_path / "f.nii.gz"
    nib.save(nib.Nifti1Image(np.full_like(data, 30.0), img.affine, img.header), water)
    nib.save(nib.Nifti1Image(np.full_like(data, 10.0), img.affine, img.header), fat)
    args = [
        "measure",
        str(phantom_files["image"]),
        str(phantom_files["annotation"]),
        "--method",
        "dixon",
        "--water",
        str(water),
        "--fat",
        str(fat),
    ]
    assert main([*args, "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["method"] == "dixon/test" and row["qc_flags"] == "no_fat_sample"
    assert row["n_trees"] is None and row["features_preset"] == ""
    assert row["ESMF_B_mean_ff_pct"] == pytest.approx(25.0) and row["ESMF_B_fi_pct"] == 0.0
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "mean FF %" in text and "quality flags: no_fat_sample" in text and "method dixon/test" in text
    nib.save(nib.Nifti1Image(np.full_like(data[:-1], 10.0), img.affine, img.header), fat)
    assert main(args) == 2
    assert "the fat image f has 5 slices of 336×335" in capsys.readouterr().err


def test_a_sagittal_image_is_refused_by_measure(phantom_files, tmp_path):
    from napari_pvm.core.phantom_sagittal import write_sagittal_phantom

    paths = write_sagittal_phantom(tmp_path / "sag", seed=1)
    out = tmp_path / "m.csv"
    done = run(
        "measure", paths["image"], phantom_files["annotation"], "--patient", "P1", "--observer", "A", "--csv", out
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1
    assert "sagittal image" in done.stderr and "axial" in done.stderr
    assert not out.exists()


def test_implausible_spacing_is_refused_unless_allowed(phantom_files, tmp_path):
    import nibabel as nib

    img = nib.load(str(phantom_files["image"]))
    zooms = img.header.get_zooms()
    affine = img.affine.copy()
    affine[:, :2] *= 1e6 / np.asarray(zooms[:2])  # same orientation, 1 km pixels
    huge = nib.Nifti1Image(np.asarray(img.dataobj), affine)
    path = tmp_path / "huge.nii.gz"
    nib.save(huge, str(path))
    annotation = json.loads(Path(phantom_files["annotation"]).read_text())
    annotation.pop("image", None)
    ann_path = tmp_path / "case.pvm.json"
    ann_path.write_text(json.dumps(annotation))
    refused = run("measure", path, ann_path, "--json")
    assert refused.returncode == 2 and "pixdim" in refused.stderr and "--allow-unusual-spacing" in refused.stderr
    allowed = run("measure", path, ann_path, "--json", "--allow-unusual-spacing")
    assert allowed.returncode == 0, allowed.stderr
    assert json.loads(allowed.stdout)["row_spacing_mm"] == pytest.approx(1e6)


def test_zero_pixdim_gives_one_error_line_and_no_nibabel_log(phantom_files, tmp_path):
    import nibabel as nib

    path = tmp_path / "zero.nii"
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 3), np.float32), np.eye(4)), str(path))
    raw = bytearray(path.read_bytes())
    raw[80:84] = np.float32(0.0).tobytes()  # pixdim[1]: nibabel would log its own note on load
    path.write_bytes(bytes(raw))
    done = run("measure", path, phantom_files["annotation"])
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: ") and "pixdim" in done.stderr


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc, a folder nobody can create files in")
def test_an_unwritable_csv_folder_is_refused_before_the_work(phantom_files, capsys, monkeypatch):
    import napari_pvm.core.measure as core_measure

    def never(*args, **kwargs):
        raise AssertionError("measured although the CSV cannot be written")

    monkeypatch.setattr(core_measure, "measure_annotation", never)
    capsys.readouterr()
    args = [str(phantom_files["image"]), str(phantom_files["annotation"]), "--patient", "P", "--observer", "A"]
    assert main(["measure", *args, "--csv", "/proc/out.csv"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error: the folder /proc is not writable" in err and "held" not in err


@pytest.mark.parametrize(
    "extra, named",
    [
        (["--seed", "99999999999999999999"], "seed must be at most 4294967295"),
        (["--trees", "99999999999999999999"], "n_trees must be at most 10000"),
    ],
)
def test_out_of_range_forest_settings_are_refused_before_a_row(phantom_files, tmp_path, capsys, extra, named):
    """A seed beyond 64 bits was written and then made every reader of the
    shared CSV fail (OverflowError)."""
    csv = tmp_path / "m.csv"
    capsys.readouterr()
    args = [str(phantom_files["image"]), str(phantom_files["annotation"]), *extra]
    assert main(["measure", *args, "--patient", "P", "--observer", "A", "--csv", str(csv)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and named in err and not csv.exists()


def test_phantom_refusals_write_nothing_and_say_one_line(tmp_path, capsys):
    for args in (
        ["--spacing", "1e300"],  # float32 overflow warned before the refusal
        ["--sagittal", "--noise", "nan"],  # left a partial phantom behind
        ["--sagittal", "--shading", "inf"],
    ):
        out = tmp_path / "out"
        capsys.readouterr()
        assert main(["phantom", str(out), *args]) == 2, args
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: "), err
        assert not out.exists() or not any(out.iterdir())
    taken = tmp_path / "taken"
    (taken / "phantom.pvm.json").mkdir(parents=True)  # a folder where a file goes: refused even with --force
    assert main(["phantom", str(taken), "--force"]) == 2
    assert "a folder has the name of a phantom file" in capsys.readouterr().err
    assert [p.name for p in taken.iterdir()] == ["phantom.pvm.json"]


def test_json_nested_too_deeply_is_refused_by_name(phantom_files, tmp_path, capsys):
    deep = tmp_path / "deep.pvm.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    capsys.readouterr()
    assert main(["measure", str(phantom_files["image"]), str(deep)]) == 2
    err = capsys.readouterr().err
    assert err == "error: deep.pvm.json is nested too deeply to be read as the annotation\n"

"""`napari-pvm phantom --sagittal` and `napari-pvm spine` end to end (contract 8), and their bad input."""

import json

import pytest

from napari_pvm.cli import main


@pytest.fixture(
    scope="module", params=[("0.75", "0.75", "12"), ("0.5", "1.2", "-9.25")], ids=["iso-kyphosis", "aniso-lordosis"]
)
def sagittal_files(request, tmp_path_factory):
    row, col, angle = request.param
    out = tmp_path_factory.mktemp("sagittal")
    assert (
        main(
            [
                "phantom",
                str(out),
                "--sagittal",
                "--spacing",
                row,
                "--col-spacing",
                col,
                "--kyphosis",
                angle,
                "--seed",
                "4",
            ]
        )
        == 0
    )
    return {
        "image": out / "sagittal.nii.gz",
        "annotation": out / "sagittal.pvm.json",
        "truth": out / "sagittal_truth.json",
        "spacing": (float(row), float(col)),
    }


def test_spine_json_row_equals_phantom_truth(sagittal_files, tmp_path, capsys):
    from napari_pvm.core.store import read_rows

    capsys.readouterr()
    csv = tmp_path / "spine.csv"
    code = main(
        [
            "spine",
            str(sagittal_files["image"]),
            str(sagittal_files["annotation"]),
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
    truth = json.loads(sagittal_files["truth"].read_text())
    assert set(truth) >= {"vbq", "local_kyphosis_deg"}
    assert row["vbq"] == pytest.approx(truth["vbq"], rel=1e-9)
    assert row["local_kyphosis_deg"] == pytest.approx(truth["local_kyphosis_deg"], abs=1e-6)  # bound: 0.01°
    assert row["vbq_levels"] == "L1;L3;L4" and row["vbq_si_L2"] is None
    assert (row["row_spacing_mm"], row["col_spacing_mm"]) == pytest.approx(sagittal_files["spacing"], rel=1e-6)
    stored = read_rows(csv, table="spine")
    assert len(stored) == 1 and stored.loc[0, "patient_id"] == "007"
    assert stored.loc[0, "row_id"] == row["row_id"]
    assert stored.loc[0, "vbq"] == row["vbq"]  # full precision


def test_spine_text_output_names_the_excluded_level(sagittal_files, capsys):
    capsys.readouterr()
    assert main(["spine", str(sagittal_files["image"]), str(sagittal_files["annotation"])]) == 0
    out = capsys.readouterr().out
    assert "VBQ" in out and "L2 median" in out and "excluded: fracture" in out and "kyphotic angle" in out


def test_axial_image_is_refused_and_nothing_written(phantom_files, sagittal_files, tmp_path, capsys):
    capsys.readouterr()
    csv = tmp_path / "spine.csv"
    code = main(
        [
            "spine",
            str(phantom_files["image"]),
            str(sagittal_files["annotation"]),
            "--patient",
            "1",
            "--observer",
            "a",
            "--csv",
            str(csv),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1
    assert "spine needs a sagittal image" in err
    assert not csv.exists()


def test_missing_csf_is_refused_and_nothing_written(sagittal_files, tmp_path, capsys):
    obj = json.loads(sagittal_files["annotation"].read_text())
    obj.pop("csf")
    bad = tmp_path / "bad.pvm.json"
    bad.write_text(json.dumps(obj))
    csv = tmp_path / "spine.csv"
    capsys.readouterr()
    code = main(
        ["spine", str(sagittal_files["image"]), str(bad), "--patient", "1", "--observer", "a", "--csv", str(csv)]
    )
    err = capsys.readouterr().err
    assert code == 2 and "CSF ROI is missing" in err and err.count("\n") == 1
    assert not csv.exists()


def test_unusual_spacing_needs_the_flag(tmp_path, capsys):
    import nibabel as nib
    import numpy as np

    assert main(["phantom", str(tmp_path), "--sagittal", "--spacing", "1.0", "--noise", "0", "--shading", "0"]) == 0
    img = nib.load(str(tmp_path / "sagittal.nii.gz"))
    affine = img.affine.copy()
    affine[:3, :3] *= 1e5  # a header written in the wrong unit
    huge = tmp_path / "huge.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj), affine), str(huge))
    capsys.readouterr()
    code = main(["spine", str(huge), str(tmp_path / "sagittal.pvm.json")])
    err = capsys.readouterr().err
    assert code == 2 and "pixdim" in err and "--allow-unusual-spacing" in err
    # with the flag it reads (and then refuses only because the annotation was drawn on the original file)
    code = main(["spine", str(huge), str(tmp_path / "sagittal.pvm.json"), "--allow-unusual-spacing"])
    assert code == 2 and "another image" in capsys.readouterr().err


def test_phantom_flags_of_the_sagittal_phantom_need_sagittal(tmp_path, capsys):
    code = main(["phantom", str(tmp_path / "x"), "--col-spacing", "1.2"])
    assert code == 2 and "--sagittal" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_a_vbq_from_one_level_warns_in_text_and_json(sagittal_files, tmp_path, capsys):
    obj = json.loads(sagittal_files["annotation"].read_text())
    obj["excluded"] = [{"level": lv, "reason": "fracture"} for lv in ("L2", "L3", "L4")]
    one = tmp_path / "one.pvm.json"
    one.write_text(json.dumps(obj))
    capsys.readouterr()
    assert main(["spine", str(sagittal_files["image"]), str(one), "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["vbq_levels"] == "L1" and row["vbq"] is not None
    assert any("only 1 vertebra left in VBQ (L1)" in w for w in row["warnings"])
    assert main(["spine", str(sagittal_files["image"]), str(one)]) == 0
    assert "warning: only 1 vertebra left in VBQ (L1); the score rests on one level" in capsys.readouterr().out
    obj["excluded"] = [{"level": "L2", "reason": "fracture"}]  # three levels: no such warning
    one.write_text(json.dumps(obj))
    assert main(["spine", str(sagittal_files["image"]), str(one), "--json"]) == 0
    assert not any("vertebra left" in w for w in json.loads(capsys.readouterr().out)["warnings"])

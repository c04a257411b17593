"""`napari-pvm propose` end to end on phantom files, and its bad input."""

import json

import pytest
from scipy import ndimage as ndi

from napari_pvm.cli import main
from napari_pvm.core.annotation import read_annotation


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from napari_pvm.core.phantom import make_phantom, write_phantom

    root = tmp_path_factory.mktemp("propose")
    target = write_phantom(root / "target", seed=4, n_slices=3, spacing=1.0, supersample=1)
    write_phantom(root / "example", seed=5, n_slices=3, spacing=1.0, supersample=1)
    ph = make_phantom(seed=4, n_slices=3, spacing=1.0, supersample=1)
    clicks = {k: [float(x) for x in ndi.center_of_mass(m)] for k, m in ph.masks.items()}
    (root / "clicks.json").write_text(json.dumps(clicks))
    (root / "examples.csv").write_text(
        "patient_id,image,annotation\nP5,example/phantom.nii.gz,example/phantom.pvm.json\n"
    )
    return {"root": root, "image": target["image"], "truth_masks": ph.masks, "slice": ph.l4_index}


def test_propose_writes_a_proposed_annotation(files, tmp_path, capsys):
    out = tmp_path / "case.pvm.json"
    code = main(
        [
            "propose",
            str(files["image"]),
            "--slice",
            str(files["slice"]),
            "--clicks",
            str(files["root"] / "clicks.json"),
            "--examples",
            str(files["root"] / "examples.csv"),
            "--out",
            str(out),
            "--json",
        ]
    )
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["proposed"] == ["PS_L", "PS_R", "ES_L", "ES_R", "MF_L", "MF_R"]
    assert result["examples"] == ["P5"]
    obj = json.loads(out.read_text(encoding="utf-8"))
    assert obj["format"] == "napari-pvm.annotation/1" and obj["slice_index"] == files["slice"]
    assert all(roi["origin"] == "proposed" for roi in obj["rois"])
    annotation = read_annotation(out)
    from napari_pvm.core.measure import outline_masks

    masks = outline_masks(annotation.rois, files["truth_masks"]["ES_L"].shape)
    for key, m in masks.items():
        t = files["truth_masks"][key]
        assert 2 * (m & t).sum() / (m.sum() + t.sum()) > 0.5, key


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--clicks", "missing.json"], "clicks file not found"),
        (["--clicks", "bad.json"], "not valid JSON"),
        (["--clicks", "air.json"], "outside the body"),
        (["--clicks", "wrong.json"], "unknown outline"),
        (["--slice", "99"], "out of range"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(files, tmp_path, capsys, extra, message):
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "air.json").write_text(json.dumps({"ES_L": [2, 2]}))
    (tmp_path / "wrong.json").write_text(json.dumps({"QL_L": [100, 100]}))
    out = tmp_path / "case.pvm.json"
    args = ["propose", str(files["image"]), "--slice", str(files["slice"]), "--out", str(out)]
    extra = [str(tmp_path / e) if e.endswith(".json") else e for e in extra]
    if extra[0] == "--slice":
        args[3] = extra[1]
        extra = []
    assert main(args + extra) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err
    assert not out.exists()


def test_existing_output_is_not_replaced(files, tmp_path, capsys):
    out = tmp_path / "case.pvm.json"
    out.write_text("{}")
    code = main(
        [
            "propose",
            str(files["image"]),
            "--slice",
            str(files["slice"]),
            "--clicks",
            str(files["root"] / "clicks.json"),
            "--out",
            str(out),
        ]
    )
    assert code == 2 and "exists" in capsys.readouterr().err
    assert out.read_text() == "{}"


def test_examples_worklist_without_annotations_is_refused(files, tmp_path, capsys):
    wl = tmp_path / "wl.csv"
    wl.write_text(f"patient_id,image\nP1,{files['image']}\n")
    out = tmp_path / "case.pvm.json"
    code = main(
        ["propose", str(files["image"]), "--slice", str(files["slice"]), "--examples", str(wl), "--out", str(out)]
    )
    assert code == 2 and "annotation" in capsys.readouterr().err
    assert not out.exists()


def test_a_sagittal_image_is_refused(files, tmp_path, capsys):
    from napari_pvm.core.phantom_sagittal import write_sagittal_phantom

    sagittal = write_sagittal_phantom(tmp_path / "sag", seed=2)
    out = tmp_path / "case.pvm.json"
    code = main(["propose", str(sagittal["image"]), "--slice", "1", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "sagittal image" in err and err.count("\n") == 1
    assert not out.exists()


def test_an_unwritable_out_folder_is_refused_before_the_work(files, tmp_path, capsys, monkeypatch):
    import tempfile

    from napari_pvm.core import propose

    def no_probe(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    def must_not_run(*args, **kwargs):
        raise AssertionError("proposed although --out cannot be written")

    monkeypatch.setattr(tempfile, "mkstemp", no_probe)
    monkeypatch.setattr(propose, "propose_outlines", must_not_run)
    out = tmp_path / "case.pvm.json"
    code = main(["propose", str(files["image"]), "--slice", str(files["slice"]), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "not writable" in err and ".tmp" not in err
    assert not out.exists()

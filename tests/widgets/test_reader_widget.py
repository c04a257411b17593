"""The reader and the sample data through napari: scale and orientation."""

import numpy as np
import pytest


def _role(layer):
    """Contract 6 role of a layer napari-pvm made (older layers carried a plain string)."""
    meta = layer.metadata.get("napari_pvm")
    return meta.get("role") if isinstance(meta, dict) else meta


def test_open_nifti_through_napari_carries_spacing(make_napari_viewer, phantom_files):
    viewer = make_napari_viewer()
    layers = viewer.open(str(phantom_files["image"]), plugin="napari-pvm")
    (layer,) = layers
    assert tuple(layer.scale) == pytest.approx((4.0, 1.2, 1.2), rel=1e-6)
    meta = layer.metadata["napari_pvm"]
    assert len(meta["sha256"]) == 64
    assert layer.data.shape[0] == 5


def test_bad_file_gives_clear_error(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    bad = tmp_path / "notes.nii"
    bad.write_text("not an image")
    with pytest.raises(Exception, match="not a readable NIfTI"):
        viewer.open(str(bad), plugin="napari-pvm")
    assert len(viewer.layers) == 0


def test_dicom_folder_with_two_series_gives_two_layers(make_napari_viewer, tmp_path):
    from test_io import write_dicom_series

    vol = np.arange(3 * 16 * 20, dtype=np.float32).reshape(3, 16, 20) * 2
    write_dicom_series(tmp_path / "d" / "a", vol, uid="1.2.7.1", description="T2 AX", number=2)
    write_dicom_series(tmp_path / "d" / "b", vol, uid="1.2.7.2", description="T1 AX", number=3)
    viewer = make_napari_viewer()
    layers = viewer.open(str(tmp_path / "d"), plugin="napari-pvm", stack=False)
    assert sorted(layer.name for layer in layers) == ["2: T2 AX", "3: T1 AX"]


def test_sample_phantom_has_scale_and_true_outlines(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-pvm", "phantom")
    image, shapes = viewer.layers
    assert tuple(image.scale) == tuple(shapes.scale)
    assert [str(u) for u in image.units] == ["millimeter"] * 3
    assert list(shapes.features["roi"]) == ["PS_L", "PS_R", "ES_L", "ES_R", "MF_L", "MF_R"]
    # the patient's left psoas is drawn on the viewer's right half
    ps_l = shapes.data[0]
    assert ps_l[:, 2].mean() > image.data.shape[2] / 2


def test_gui_command_opens_image_dock_and_annotation(qtbot, phantom_files):
    from napari_pvm._commands.gui import open_viewer

    viewer = open_viewer(str(phantom_files["image"]), annotation=str(phantom_files["annotation"]), show=False)
    try:
        image = viewer.layers[0]
        assert tuple(image.scale) == pytest.approx((4.0, 1.2, 1.2), rel=1e-6)
        outlines = [layer for layer in viewer.layers if _role(layer) in ("outlines", "rois")]
        assert len(outlines) == 1 and len(outlines[0].data) == 6
        assert viewer.dims.current_step[0] == 2  # moved to the annotation's L4 slice
    finally:
        viewer.close()


def test_sagittal_nifti_opens_sagittal_in_mm(make_napari_viewer, tmp_path):
    from test_io import SAG_SPACING, sagittal_display, write_sagittal_asr

    d = sagittal_display()
    write_sagittal_asr(tmp_path / "sag.nii.gz", d)
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(tmp_path / "sag.nii.gz"), plugin="napari-pvm")
    np.testing.assert_array_equal(layer.data, d)  # row 0 superior, column 0 anterior
    assert tuple(layer.scale) == pytest.approx(SAG_SPACING, rel=1e-6)
    assert [str(u) for u in layer.units] == ["millimeter"] * 3
    assert layer.metadata["napari_pvm"]["plane"] == "sagittal"


def test_sagittal_sample_and_spine_dock_in_the_manifest(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-pvm", "sagittal_phantom")
    (image,) = viewer.layers
    assert image.metadata["napari_pvm"]["plane"] == "sagittal"
    dock, widget = viewer.window.add_plugin_dock_widget("napari-pvm", "Spine measures")
    assert type(widget).__name__ == "SpineWidget"
    assert widget.load_annotation is not None and widget.image_combo.currentText() == "sagittal phantom"

"""The phantom's ground truth is exact and its files are reproducible."""

import json

import numpy as np
import pytest

from napari_pvm.core import schema
from napari_pvm.core.annotation import read_annotation
from napari_pvm.core.errors import PvmError
from napari_pvm.core.io import read_volume
from napari_pvm.core.phantom import make_phantom
from napari_pvm.core.rois import roi_mask


def test_realistic_l4_sizes(small_phantom):
    t = small_phantom.truth
    for side in "LR":
        assert 6 <= t[f"PS_{side}_total_area_cm2"] <= 10
        assert 15 <= t[f"ES_{side}_total_area_cm2"] <= 22
        assert 5 <= t[f"MF_{side}_total_area_cm2"] <= 8


def test_truth_is_consistent_with_masks_and_fat_share(small_phantom):
    ph = small_phantom
    pixel_cm2 = ph.spacing[1] * ph.spacing[2] / 100
    fat = ph.fat_share > 0.5
    for key, verts in ph.rois.items():
        mask = roi_mask(verts, ph.l4.shape)
        np.testing.assert_array_equal(mask, ph.masks[key])
        group, side = key.split("_")
        assert ph.truth[f"{key}_total_area_cm2"] == pytest.approx(mask.sum() * pixel_cm2)
        assert ph.truth[f"{key}_fi_pct"] == pytest.approx(100 * (mask & fat).sum() / mask.sum())
    t = ph.truth
    for group in schema.GROUPS:
        assert t[f"{group}_B_total_area_cm2"] == pytest.approx(
            t[f"{group}_L_total_area_cm2"] + t[f"{group}_R_total_area_cm2"]
        )
        for side in schema.SIDES:
            total, fat_a, lean = (
                t[f"{group}_{side}_{m}"] for m in ("total_area_cm2", "fat_area_cm2", "muscle_area_cm2")
            )
            assert lean + fat_a == pytest.approx(total)
    assert t["ESMF_L_total_area_cm2"] == pytest.approx(t["ES_L_total_area_cm2"] + t["MF_L_total_area_cm2"])


def test_fat_fraction_follows_request_and_has_thin_streaks():
    ph = make_phantom(seed=2, spacing=1.2, fat_fractions={"ES": 0.45, "PS": 0.05, "MF": 0.3})
    # the requested area fraction is met on the fine grid; the >50% pixel rule is close to it
    assert ph.truth["subpixel_fat_pct"]["ES_B"] == pytest.approx(45, abs=4)
    assert ph.truth["ES_B_fi_pct"] == pytest.approx(45, abs=6)
    assert ph.truth["PS_B_fi_pct"] == pytest.approx(5, abs=2.5)
    # partial volume: many muscle pixels are neither pure fat nor pure muscle
    share = ph.fat_share[ph.masks["ES_L"]]
    assert np.mean((share > 0.05) & (share < 0.95)) > 0.05


def test_intensities_show_bias_and_noise(small_phantom):
    ph = small_phantom
    lean = ph.l4[ph.masks["ES_L"] & (ph.fat_share == 0)]
    assert lean.std() / lean.mean() > 0.05
    assert ph.data.dtype == np.float32


def test_same_seed_same_phantom_other_seed_differs():
    a = make_phantom(seed=4, spacing=1.2, n_slices=3)
    b = make_phantom(seed=4, spacing=1.2, n_slices=3)
    c = make_phantom(seed=5, spacing=1.2, n_slices=3)
    np.testing.assert_array_equal(a.data, b.data)
    assert not np.array_equal(a.data, c.data)


def test_outlines_do_not_overlap(small_phantom):
    stacked = np.sum([m.astype(int) for m in small_phantom.masks.values()], axis=0)
    assert stacked.max() == 1


def test_files_are_byte_identical_and_consistent(tmp_path, phantom_files):
    from napari_pvm.core.phantom import write_phantom

    again = write_phantom(tmp_path, seed=5, spacing=1.2)
    for key in ("image", "annotation", "truth"):
        assert again[key].read_bytes() == phantom_files[key].read_bytes()
    vol = read_volume(phantom_files["image"])
    ann = read_annotation(phantom_files["annotation"])
    truth = json.loads(phantom_files["truth"].read_text())
    assert ann.image_sha256 == vol.sha256
    assert ann.slice_index == vol.n_slices // 2 and ann.level == "L4"
    assert set(ann.rois) == set(schema.ROI_KEYS)
    assert {s["class"] for s in ann.samples} == {"fat", "muscle"}
    pixel_cm2 = vol.spacing[1] * vol.spacing[2] / 100
    for key, verts in ann.rois.items():
        area = roi_mask(verts, vol.data.shape[1:]).sum() * pixel_cm2
        assert area == truth[f"{key}_total_area_cm2"]  # exactly: same pixels, same spacing


def test_bad_parameters():
    with pytest.raises(PvmError, match="field of view"):
        make_phantom(shape=(128, 128))
    with pytest.raises(PvmError, match="unknown muscle"):
        make_phantom(spacing=1.2, fat_fractions={"QL": 0.2})


def test_written_files_are_readable_by_other_observers(phantom_files):
    for path in phantom_files.values():
        assert path.stat().st_mode & 0o044 == 0o044  # group and others may read (umask 022)


def test_bad_seed_refused_before_anything_is_written(tmp_path):
    from napari_pvm.core.phantom import write_phantom

    with pytest.raises(PvmError, match="seed"):
        write_phantom(tmp_path / "out", seed=-1)
    assert not (tmp_path / "out").exists()

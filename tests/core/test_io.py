"""Reading volumes: contract 1 holds for every input format and orientation."""

import gzip

import nibabel as nib
import numpy as np
import pytest

from napari_pvm.core.errors import ImageReadError
from napari_pvm.core.io import find_dicom_series, read_volume

SPACING = (3.5, 0.8, 0.9)  # slice, row, col in mm (anisotropic on purpose)


def display_volume(shape=(4, 40, 48), seed=0):
    """A (k, row, col) volume in contract-1 orientation with asymmetric content."""
    rng = np.random.default_rng(seed)
    d = rng.integers(0, 1000, size=shape).astype(np.float32)
    d[:, :5, :] += 2000  # anterior band
    d[:, :, :3] += 4000  # patient-right band
    d[0] += 8000  # most inferior slice
    return d


def write_nifti_lps(path, d, spacing=SPACING):
    """Store as (L, P, S): stored[i, j, k] = d[k, j, i]."""
    dz, dr, dc = spacing
    stored = np.ascontiguousarray(d.transpose(2, 1, 0))
    nib.save(nib.Nifti1Image(stored, np.diag([-dc, -dr, dz, 1.0])), str(path))


def write_nifti_ras(path, d, spacing=SPACING):
    """Store as (R, A, S): i towards the patient's right, j anterior."""
    dz, dr, dc = spacing
    stored = np.ascontiguousarray(d.transpose(2, 1, 0)[::-1, ::-1, :])
    nib.save(nib.Nifti1Image(stored, np.diag([dc, dr, dz, 1.0])), str(path))


def write_nifti_sal(path, d, spacing=SPACING):
    """A stranger layout: stored axes (S, A, L) with a flipped row axis."""
    dz, dr, dc = spacing
    stored = np.ascontiguousarray(d[:, ::-1, :])  # (k, row reversed → anterior, col → L)
    affine = np.zeros((4, 4))
    affine[2, 0] = dz  # i → superior
    affine[1, 1] = dr  # j → anterior (RAS +y)
    affine[0, 2] = -dc  # k → left
    affine[3, 3] = 1
    nib.save(nib.Nifti1Image(stored, affine), str(path))


def write_dicom_series(
    folder,
    d,
    spacing=SPACING,
    *,
    tilt_deg=0.0,
    slope=2.0,
    intercept=-100.0,
    uid="1.2.826.0.1.3680043.8.498.1",
    description="T2 TSE AX",
    start_z=0.0,
    number=3,
    names=None,
):
    """Write one file per slice with pydicom; file names and InstanceNumber run
    opposite to the slice position so that only the geometry can order them."""
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    dz, dr, dc = spacing
    a = np.deg2rad(tilt_deg)
    row_dir = np.array([1.0, 0.0, 0.0])  # along a row: towards patient left (+x LPS)
    col_dir = np.array([0.0, np.cos(a), np.sin(a)])  # down the rows: posterior, tilted
    normal = np.cross(row_dir, col_dir)
    k = d.shape[0]
    for i in range(k):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        name = (names or [f"IM{k - i:04d}" for _ in range(1)])[0] if names else f"IM{k - i:04d}"
        ds = FileDataset(str(folder / name), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID = MRImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.Modality = "MR"
        ds.PatientName = "DOE^JANE"
        ds.PatientID = "SECRET-12345"
        ds.PatientBirthDate = "19450101"
        ds.SeriesInstanceUID = uid
        ds.SeriesDescription = description
        ds.SeriesNumber = number
        ds.InstanceNumber = k - i
        ds.ImageOrientationPatient = [float(x) for x in (*row_dir, *col_dir)]
        ds.ImagePositionPatient = [float(x) for x in (np.array([-20.0, -15.0, start_z]) + i * dz * normal)]
        ds.PixelSpacing = [dr, dc]
        ds.SliceThickness = dz
        ds.Rows, ds.Columns = d.shape[1:]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 0
        ds.RescaleSlope = slope
        ds.RescaleIntercept = intercept
        stored = np.round((d[i] - intercept) / slope).astype(np.uint16)
        ds.PixelData = stored.tobytes()
        pydicom.dcmwrite(str(folder / name), ds, enforce_file_format=True)
    return folder


@pytest.fixture
def volume():
    # even values so that slope 2 / intercept -100 round-trip exactly
    return (np.round(display_volume() / 2) * 2).astype(np.float32)


@pytest.mark.parametrize("writer", [write_nifti_lps, write_nifti_ras, write_nifti_sal])
def test_nifti_orientations_give_the_same_display(tmp_path, volume, writer):
    path = tmp_path / "v.nii.gz"
    writer(path, volume)
    v = read_volume(path)
    np.testing.assert_array_equal(v.data, volume)
    np.testing.assert_allclose(v.spacing, SPACING)
    assert v.data.dtype == np.float32


def test_lps_nifti_slice_is_transposed_third_axis(tmp_path, volume):
    path = tmp_path / "v.nii"
    write_nifti_lps(path, volume)
    stored = np.asanyarray(nib.load(str(path)).dataobj)
    v = read_volume(path)
    for k in range(volume.shape[0]):
        np.testing.assert_array_equal(v.slice(k), stored[:, :, k].T)
    assert v.source_axcodes == ("L", "P", "S")
    assert len(v.sha256) == 64


def test_dicom_series_sorted_by_position_with_rescale(tmp_path, volume):
    folder = write_dicom_series(tmp_path / "dcm", volume)
    v = read_volume(folder)
    np.testing.assert_allclose(v.data, volume)
    np.testing.assert_allclose(v.spacing, SPACING)
    assert v.metadata["SeriesDescription"] == "T2 TSE AX"


def test_dicom_matches_nifti_of_same_volume(tmp_path, volume):
    write_nifti_ras(tmp_path / "v.nii.gz", volume)
    a = read_volume(tmp_path / "v.nii.gz")
    b = read_volume(write_dicom_series(tmp_path / "dcm", volume))
    np.testing.assert_allclose(a.data, b.data)
    np.testing.assert_allclose(a.spacing, b.spacing)


def test_oblique_dicom_is_not_resampled_and_obliquity_recorded(tmp_path, volume):
    v = read_volume(write_dicom_series(tmp_path / "dcm", volume, tilt_deg=9.5))
    np.testing.assert_allclose(v.data, volume)
    np.testing.assert_allclose(v.spacing, SPACING, rtol=1e-6)
    assert v.obliquity_deg == pytest.approx(9.5, abs=0.01)
    assert "tilted" in v.metadata["oblique"]


def test_single_dicom_file_is_one_slice_volume(tmp_path, volume):
    folder = write_dicom_series(tmp_path / "dcm", volume[:1])
    (file,) = folder.iterdir()
    v = read_volume(file)
    assert v.data.shape == (1, *volume.shape[1:])
    np.testing.assert_allclose(v.data[0], volume[0])


def test_no_patient_identifiers_reach_metadata(tmp_path, volume):
    v = read_volume(write_dicom_series(tmp_path / "dcm", volume))
    text = repr(v.layer_metadata()) + repr(v)
    for secret in ("DOE", "JANE", "SECRET", "19450101"):
        assert secret not in text


def test_folder_with_two_slabs_needs_a_choice(tmp_path, volume):
    folder = tmp_path / "dcm"
    write_dicom_series(folder / "a", volume, tilt_deg=0.0, uid="1.2.3.4", description="AX L3-4")
    write_dicom_series(folder / "b", volume + 2, tilt_deg=12.0, uid="1.2.3.4", description="AX L3-4", start_z=60.0)
    found = find_dicom_series(folder)
    assert len(found) == 2 and all("slab" in k for k in found)
    with pytest.raises(ImageReadError, match="2 series or slabs"):
        read_volume(folder)
    first, second = found
    np.testing.assert_allclose(read_volume(folder, series=first).data, volume)
    np.testing.assert_allclose(read_volume(folder, series=second).data, volume + 2)


def test_parallel_slabs_with_a_gap_are_separated(tmp_path, volume):
    folder = tmp_path / "dcm"
    write_dicom_series(folder / "a", volume, uid="1.2.9", description="AX")
    write_dicom_series(folder / "b", volume + 2, uid="1.2.9", description="AX", start_z=50.0)
    assert len(find_dicom_series(folder)) == 2


def test_two_series_named_by_description(tmp_path, volume):
    folder = tmp_path / "dcm"
    write_dicom_series(folder / "a", volume, uid="1.2.3.5", description="T2 AX", number=4)
    write_dicom_series(folder / "b", volume, uid="1.2.3.6", description="T1 AX", number=5)
    assert sorted(find_dicom_series(folder)) == ["4: T2 AX", "5: T1 AX"]
    assert read_volume(folder, series="T1 AX").name == "5: T1 AX"
    with pytest.raises(ImageReadError, match="not found"):
        read_volume(folder, series="STIR")


def test_irregular_stack_is_refused(tmp_path, volume):
    folder = write_dicom_series(tmp_path / "dcm", volume)
    import pydicom

    files = sorted(folder.iterdir())
    ds = pydicom.dcmread(files[1])
    ds.ImagePositionPatient = [
        ds.ImagePositionPatient[0],
        ds.ImagePositionPatient[1],
        float(ds.ImagePositionPatient[2]) + 1.3,
    ]
    ds.save_as(files[1])
    with pytest.raises(ImageReadError, match="neither one regular stack nor separable"):
        read_volume(folder)


# ------------------------------------------------------------- bad input


def test_truncated_nifti_gz(tmp_path, volume):
    good = tmp_path / "v.nii.gz"
    write_nifti_lps(good, volume)
    bad = tmp_path / "cut.nii.gz"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ImageReadError, match="truncated or corrupt|not a readable NIfTI"):
        read_volume(bad)


def test_text_file_named_nii(tmp_path):
    bad = tmp_path / "notes.nii"
    bad.write_text("patient notes, not an image\n")
    with pytest.raises(ImageReadError, match="not a readable NIfTI"):
        read_volume(bad)


@pytest.mark.parametrize("shape", [(20, 30), (10, 12, 4, 3)])
def test_2d_or_4d_refused(tmp_path, shape):
    path = tmp_path / "x.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros(shape, np.float32), np.eye(4)), str(path))
    with pytest.raises(ImageReadError, match="dimensions"):
        read_volume(path)


@pytest.mark.parametrize("zoom", [0.0, -1.0, np.nan])
def test_bad_spacing_refused(tmp_path, zoom):
    path = tmp_path / "x.nii"
    img = nib.Nifti1Image(np.zeros((8, 8, 3), np.float32), None)
    img.header.set_qform(None, code=0)
    img.header.set_sform(None, code=0)
    nib.save(img, str(path))
    # nibabel refuses to write such a header; patch pixdim[1] (byte 80) by hand
    raw = bytearray(path.read_bytes())
    raw[80:84] = np.float32(zoom).tobytes()
    path.write_bytes(bytes(raw))
    with pytest.raises(ImageReadError, match="spacing"):
        read_volume(path)


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageReadError, match="empty"):
        read_volume(tmp_path / "empty")


def test_folder_without_dicom(tmp_path):
    folder = tmp_path / "junk"
    folder.mkdir()
    (folder / "a.txt").write_text("hello")
    (folder / "b.bin").write_bytes(gzip.compress(b"x" * 200))
    with pytest.raises(ImageReadError, match="no DICOM images"):
        read_volume(folder)


def test_missing_path(tmp_path):
    with pytest.raises(ImageReadError, match="no such file"):
        read_volume(tmp_path / "nope.nii.gz")


def test_unknown_file_type(tmp_path):
    path = tmp_path / "image.png"
    path.write_bytes(b"\x89PNG....")
    with pytest.raises(ImageReadError, match="neither NIfTI"):
        read_volume(path)


# ------------------------------------------------------------- real data


@pytest.mark.real
def test_musclemap_real_scan_spacing_orientation_and_left_psoas_on_viewer_right(real_data):
    folder = real_data / "musclemap_lumbar_axial"
    image = read_volume(folder / "image.nii.gz")
    labels = read_volume(folder / "image_dseg_musclemap_pred.nii.gz")
    assert image.data.shape == (20, 208, 256)
    np.testing.assert_allclose(image.spacing, (4.4, 0.9375, 0.9375), rtol=1e-3)
    assert image.source_axcodes == ("L", "P", "S")
    assert 5 < image.obliquity_deg < 15  # documented tilt of ~9.5°
    k16 = labels.slice(16)
    half = k16.shape[1] // 2
    # Absolute anchor: label 6 = the patient's LEFT psoas → viewer's right half.
    left_psoas_cols = np.nonzero(k16 == 6)[1]
    right_psoas_cols = np.nonzero(k16 == 5)[1]
    assert left_psoas_cols.size > 500 and right_psoas_cols.size > 500
    assert np.all(left_psoas_cols >= half)
    assert np.all(right_psoas_cols < half)
    # documented areas at slice 16 (pixel count × 0.9375² / 100)
    pixel_cm2 = image.spacing[1] * image.spacing[2] / 100
    assert (k16 == 3).sum() * pixel_cm2 == pytest.approx(19.45, abs=0.01)  # ES R
    assert (k16 == 6).sum() * pixel_cm2 == pytest.approx(8.32, abs=0.01)  # PS L


@pytest.mark.real
def test_myosegmentum_dixon_spacing(real_data):
    folder = real_data / "myosegmentum_dixon_lpm"
    w = read_volume(folder / "TUM01_water_img_img_L2-L5.nii.gz")
    lab = read_volume(folder / "TUM01_fat_manual_label_segmentation_L2-L5.nii.gz")
    assert w.data.shape == (29, 400, 400)
    np.testing.assert_allclose(w.spacing, (4.0, 1.0185, 1.0185), rtol=1e-3)
    es_r = (lab.slice(15) == 1).sum() * lab.spacing[1] * lab.spacing[2] / 100
    assert es_r == pytest.approx(20.82, abs=0.01)
    # label 4 (ES, subject left) lies in the viewer's right half
    cols = np.nonzero(lab.slice(15) == 4)[1]
    assert np.median(cols) > lab.data.shape[2] / 2


@pytest.mark.real
def test_totalsegmentator_small_mr(real_data):
    folder = real_data / "totalsegmentator_example_mr"
    img = read_volume(folder / "example_mr_sm.nii.gz")
    seg = read_volume(folder / "example_seg_mr.nii.gz")
    np.testing.assert_allclose(img.spacing, (3.0, 3.0, 3.0), rtol=1e-3)
    cm2 = (seg.slice(10) == 47).sum() * 9 / 100
    assert cm2 == pytest.approx(12.87, abs=0.01)
    # autochthon_left (46) on the viewer's right
    assert np.median(np.nonzero(seg.slice(10) == 46)[1]) > seg.data.shape[2] / 2


def test_complex_nifti_refused(tmp_path):
    path = tmp_path / "cplx.nii"
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 3), np.complex64), np.eye(4)), str(path))
    with pytest.raises(ImageReadError, match="real-valued magnitude"):
        read_volume(path)


# ------------------------------------------------- sagittal images (contract 8)

SAG_SPACING = (4.0, 0.5, 1.2)  # slice (right → left), row (S → I), col (A → P)


def sagittal_display(shape=(3, 30, 20), seed=1):
    """A (k, row, col) sagittal volume in contract-8 orientation with asymmetric content."""
    rng = np.random.default_rng(seed)
    d = rng.integers(0, 1000, size=shape).astype(np.float32)
    d[:, :4, :] += 2000  # superior band
    d[:, :, :2] += 4000  # anterior band
    d[0] += 8000  # the patient's rightmost slice
    return d


def write_sagittal_lps(path, d, spacing=SAG_SPACING):
    """Store as (L, P, S): stored[i, j, k] = d[i, M-1-k, j]."""
    ds, dr, dc = spacing
    stored = np.ascontiguousarray(d.transpose(0, 2, 1)[:, :, ::-1])
    nib.save(nib.Nifti1Image(stored, np.diag([-ds, -dc, dr, 1.0])), str(path))


def write_sagittal_asr(path, d, spacing=SAG_SPACING):
    """Store as (A, S, R), the reverse of every display axis, permuted."""
    ds, dr, dc = spacing
    stored = np.ascontiguousarray(d[::-1, ::-1, ::-1].transpose(2, 1, 0))
    affine = np.zeros((4, 4))
    affine[1, 0] = dc  # i → anterior
    affine[2, 1] = dr  # j → superior
    affine[0, 2] = ds  # k → right
    affine[3, 3] = 1
    nib.save(nib.Nifti1Image(stored, affine), str(path))


def write_dicom_sagittal(folder, d, spacing=SAG_SPACING, *, slope=1.0, intercept=0.0):
    """One file per sagittal slice; rows run S → I, columns A → P (LPS row
    direction (0, 1, 0), column direction (0, 0, -1)); files named against
    the slice order so that only the geometry orders them."""
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    ds_mm, dr, dc = spacing
    k = d.shape[0]
    for i in range(k):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        name = f"IM{k - i:04d}"
        ds = FileDataset(str(folder / name), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID = MRImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.Modality = "MR"
        ds.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.77"
        ds.SeriesDescription = "T1 TSE SAG"
        ds.SeriesNumber = 2
        ds.ImageOrientationPatient = [0.0, 1.0, 0.0, 0.0, 0.0, -1.0]
        ds.ImagePositionPatient = [-10.0 + i * ds_mm, -40.0, 60.0]  # LPS: +x is the patient's left
        ds.PixelSpacing = [dr, dc]
        ds.Rows, ds.Columns = d.shape[1:]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 0
        ds.RescaleSlope = slope
        ds.RescaleIntercept = intercept
        ds.PixelData = np.round((d[i] - intercept) / slope).astype(np.uint16).tobytes()
        pydicom.dcmwrite(str(folder / name), ds, enforce_file_format=True)
    return folder


@pytest.mark.parametrize("writer", [write_sagittal_lps, write_sagittal_asr])
def test_sagittal_nifti_opens_in_the_sagittal_display(tmp_path, writer):
    d = sagittal_display()
    path = tmp_path / "sag.nii.gz"
    writer(path, d)
    v = read_volume(path)
    assert v.plane == "sagittal"
    np.testing.assert_array_equal(v.data, d)
    np.testing.assert_allclose(v.spacing, SAG_SPACING, rtol=1e-6)
    assert v.pixel_spacing == pytest.approx((0.5, 1.2), rel=1e-6)  # (row, col), not swapped
    assert v.layer_metadata()["plane"] == "sagittal"


def test_sagittal_lps_slice_is_data_k_flipped_transposed(tmp_path):
    d = sagittal_display()
    path = tmp_path / "sag.nii"
    write_sagittal_lps(path, d)
    stored = np.asanyarray(nib.load(str(path)).dataobj)
    v = read_volume(path)
    for k in range(d.shape[0]):
        np.testing.assert_array_equal(v.slice(k), stored[k, :, ::-1].T)


def test_sagittal_dicom_matches_nifti_even_with_thin_slices(tmp_path):
    d = sagittal_display()
    # slices thinner than the pixels: DICOM takes the slice axis from the normal
    spacing = (1.0, 1.2, 1.5)
    write_sagittal_lps(tmp_path / "sag.nii.gz", d, spacing=(1.6, 1.2, 1.5))
    a = read_volume(tmp_path / "sag.nii.gz")
    b = read_volume(write_dicom_sagittal(tmp_path / "dcm", d, spacing=spacing))
    assert a.plane == b.plane == "sagittal"
    np.testing.assert_array_equal(b.data, d)
    np.testing.assert_array_equal(a.data, b.data)
    np.testing.assert_allclose(b.spacing, spacing, rtol=1e-6)


def test_axial_images_keep_contract_1(tmp_path):
    # isotropic (L, P, S): no axis is clearly the largest → the stored third axis (S)
    d = display_volume()
    path = tmp_path / "iso.nii.gz"
    write_nifti_lps(path, d, spacing=(3.0, 3.0, 3.0))
    v = read_volume(path)
    assert v.plane == "axial"
    np.testing.assert_array_equal(v.data, d)
    # a coronal-thick stack keeps the axial display, as before contract 8
    path = tmp_path / "cor.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((10, 12, 8), np.float32), np.diag([-1.0, -5.0, 1.0, 1.0])), str(path))
    assert read_volume(path).plane == "axial"


def test_require_plane_refuses_the_other_plane(tmp_path):
    from napari_pvm.core.io import require_plane

    write_sagittal_lps(tmp_path / "sag.nii.gz", sagittal_display())
    v = read_volume(tmp_path / "sag.nii.gz")
    require_plane(v, "sagittal", what="spine")
    with pytest.raises(ImageReadError, match="sagittal image; measure needs an axial image"):
        require_plane(v, "axial", what="measure")


# ------------------------------------------------------------ radiographs


def write_radiograph(
    path,
    image,
    *,
    orientation=("P", "F"),
    spacing=(0.15, 0.15),
    field="PixelSpacing",
    photometric="MONOCHROME2",
    modality="CR",
):
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ComputedRadiographyImageStorage, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ComputedRadiographyImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = ComputedRadiographyImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    ds.PatientName = "DOE^JANE"
    ds.PatientID = "SECRET-12345"
    if orientation is not None:
        ds.PatientOrientation = list(orientation)
    setattr(ds, field, list(spacing))
    ds.Rows, ds.Columns = image.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.PixelData = image.astype(np.uint16).tobytes()
    pydicom.dcmwrite(str(path), ds, enforce_file_format=True)
    return path


@pytest.fixture
def radiograph_pixels():
    img = np.arange(12 * 16, dtype=np.uint16).reshape(12, 16)
    img[:, :3] += 1000  # a bright band on the stored image's left
    return img


@pytest.mark.parametrize(
    "orientation, flip_rows, flip_cols",
    [(("P", "F"), False, False), (("A", "F"), False, True), (("P", "H"), True, False), (("AF", "HP"), True, True)],
)
def test_radiograph_is_one_sagittal_slice_with_anterior_from_patient_orientation(
    tmp_path, radiograph_pixels, orientation, flip_rows, flip_cols
):
    path = write_radiograph(tmp_path / "lat.dcm", radiograph_pixels, orientation=orientation, spacing=(0.15, 0.2))
    v = read_volume(path)
    expected = radiograph_pixels.astype(np.float32)
    if flip_rows:
        expected = expected[::-1]
    if flip_cols:
        expected = expected[:, ::-1]
    assert v.plane == "sagittal" and v.data.shape == (1, 12, 16)
    np.testing.assert_array_equal(v.data[0], expected)
    assert v.pixel_spacing == (0.15, 0.2)
    assert v.metadata["anterior_source"] == "PatientOrientation"
    assert "spacing_note" not in v.metadata
    text = repr(v.layer_metadata())
    assert "DOE" not in text and "SECRET" not in text


def test_radiograph_without_orientation_needs_the_observer(tmp_path, radiograph_pixels):
    path = write_radiograph(
        tmp_path / "lat.dcm", radiograph_pixels, orientation=None, field="ImagerPixelSpacing", modality="DX"
    )
    v = read_volume(path)
    assert v.metadata["anterior_source"] == "unconfirmed"
    np.testing.assert_array_equal(v.data[0], radiograph_pixels)
    assert "ImagerPixelSpacing" in v.metadata["spacing_note"] and "angles are unaffected" in v.metadata["spacing_note"]
    confirmed = read_volume(path, anterior="right")
    assert confirmed.metadata["anterior_source"] == "observer"
    np.testing.assert_array_equal(confirmed.data[0], radiograph_pixels[:, ::-1])


def test_radiograph_conflicts_and_frontal_views_are_refused(tmp_path, radiograph_pixels):
    path = write_radiograph(tmp_path / "lat.dcm", radiograph_pixels, orientation=("A", "F"))
    with pytest.raises(ImageReadError, match="PatientOrientation puts the anterior side on the image's right"):
        read_volume(path, anterior="left")
    frontal = write_radiograph(tmp_path / "ap.dcm", radiograph_pixels, orientation=("L", "F"))
    with pytest.raises(ImageReadError, match="frontal"):
        read_volume(frontal)


def test_monochrome1_radiograph_is_inverted(tmp_path, radiograph_pixels):
    path = write_radiograph(tmp_path / "lat.dcm", radiograph_pixels, photometric="MONOCHROME1")
    v = read_volume(path)
    lo, hi = radiograph_pixels.min(), radiograph_pixels.max()
    np.testing.assert_array_equal(v.data[0], (hi + lo - radiograph_pixels.astype(np.float32)))


# ----------------------------------------- implausible spacing (issue 15, item 9)


def test_nifti_with_huge_pixels_is_refused_naming_pixdim(tmp_path):
    path = tmp_path / "huge.nii.gz"
    write_nifti_lps(path, display_volume(), spacing=(4.0, 1e6, 1e6))
    with pytest.raises(ImageReadError, match=r"pixel spacing 1e\+06 mm from pixdim.*allow-unusual-spacing"):
        read_volume(path)
    v = read_volume(path, allow_unusual_spacing=True)
    assert v.pixel_spacing == (1e6, 1e6)


@pytest.mark.parametrize(
    "spacing, match", [((0.01, 0.8), "pixel spacing 0.01 mm"), ((12.0, 0.8), "pixel spacing 12 mm")]
)
def test_dicom_with_implausible_pixel_spacing_is_refused(tmp_path, spacing, match):
    d = (np.round(display_volume() / 2) * 2).astype(np.float32)
    folder = write_dicom_series(tmp_path / "dcm", d, spacing=(3.5, *spacing))
    with pytest.raises(ImageReadError, match=match + r" from PixelSpacing \(0028,0030\)"):
        read_volume(folder)
    assert read_volume(folder, allow_unusual_spacing=True).pixel_spacing == pytest.approx(spacing)


def test_implausible_slice_distance_and_radiograph_spacing_are_refused(tmp_path, radiograph_pixels):
    path = tmp_path / "gap.nii.gz"
    write_nifti_lps(path, display_volume(), spacing=(80.0, 0.8, 0.8))
    with pytest.raises(ImageReadError, match="slice spacing 80 mm"):
        read_volume(path)
    rg = write_radiograph(tmp_path / "lat.dcm", radiograph_pixels, spacing=(0.01, 0.01), field="ImagerPixelSpacing")
    with pytest.raises(ImageReadError, match="ImagerPixelSpacing"):
        read_volume(rg)

"""DICOM series written with pydicom: order by position (not names), rescale, series, decoders."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, JPEGLSLossless, generate_uid

from ctstack import open_stack
from ctstack.errors import MissingDecoder

RNG = np.random.default_rng(11)
# an oblique slice plane: rows along x, columns tilted 20 degrees out of the y axis
ROW = np.array([1.0, 0.0, 0.0])
COL = np.array([0.0, np.cos(0.35), np.sin(0.35)])
NORMAL = np.cross(ROW, COL)


def write_dcm(
    path: Path,
    pixels: np.ndarray,
    position,
    *,
    series_uid: str,
    instance: int,
    slope=1.0,
    intercept=-1024.0,
    spacing=(0.5, 0.7),
    rescale=True,
    transfer=ExplicitVRLittleEndian,
    description="test series",
) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = transfer
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    ds.Manufacturer = "ACME"
    ds.SeriesInstanceUID = series_uid
    ds.SeriesDescription = description
    ds.InstanceNumber = instance
    ds.ImagePositionPatient = [float(v) for v in position]
    ds.ImageOrientationPatient = [*map(float, ROW), *map(float, COL)]
    ds.PixelSpacing = list(spacing)
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    if rescale:
        ds.RescaleSlope = slope
        ds.RescaleIntercept = intercept
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)


def make_series(
    folder: Path,
    n=6,
    shape=(6, 5),
    distances=None,
    slopes=None,
    uid=None,
    name="IM",
    description="test series",
) -> list[tuple[float, np.ndarray, Path]]:
    """Write n slices in shuffled file order; file and instance numbers disagree with z."""
    folder.mkdir(parents=True, exist_ok=True)
    uid = uid or generate_uid()
    distances = distances if distances is not None else [1.25 * k for k in range(n)]
    origin = np.array([-30.0, 12.0, 80.0])
    order = RNG.permutation(n)
    written = []
    for file_no, k in enumerate(order):
        pixels = RNG.integers(0, 4096, shape).astype(np.uint16)
        path = folder / f"{name}{file_no:04d}.dcm"
        write_dcm(
            path,
            pixels,
            origin + distances[k] * NORMAL,
            series_uid=uid,
            instance=n - file_no,
            slope=(slopes[k] if slopes else 1.0),
            description=description,
        )
        written.append((distances[k], pixels, path))
    return written


def expected_volume(folder: Path, pattern="*.dcm") -> np.ndarray:
    """Plain pydicom reading: sort by position along the normal, apply the rescale."""
    planes = []
    for path in folder.glob(pattern):
        ds = pydicom.dcmread(path)
        iop = np.array(ds.ImageOrientationPatient, float)
        normal = np.cross(iop[:3], iop[3:])
        d = float(np.dot(np.array(ds.ImagePositionPatient, float), normal))
        hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        planes.append((d, hu))
    planes.sort(key=lambda p: p[0])
    return np.stack([p[1] for p in planes])


def quiet_open(path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return open_stack(path, **kw)


def test_order_by_position_not_name_and_hounsfield_int16(tmp_path):
    written = make_series(tmp_path)
    stack = quiet_open(tmp_path)
    assert stack.shape == (6, 6, 5) and stack.dtype == np.int16
    assert stack.metadata["source_format"] == "dicom"
    expected = expected_volume(tmp_path)
    np.testing.assert_array_equal(stack.data.compute(), expected)
    by_distance = [p for _, _, p in sorted(written, key=lambda w: w[0])]
    assert stack.files == by_distance
    assert [f.name for f in stack.files] != sorted(f.name for f in stack.files)
    assert stack.voxel_size == pytest.approx((1.25, 0.5, 0.7)) and stack.unit == "millimeter"
    assert stack.metadata["scanner"] == "ACME"


def test_opening_one_dicom_file_opens_its_series(tmp_path):
    written = make_series(tmp_path, n=4)
    stack = quiet_open(written[2][2])
    assert stack.shape[0] == 4 and stack.root == tmp_path


def test_differing_slopes_give_float32(tmp_path):
    make_series(tmp_path, n=3, slopes=[1.0, 0.5, 2.0])
    stack = quiet_open(tmp_path)
    assert stack.dtype == np.float32
    np.testing.assert_allclose(stack.data.compute(), expected_volume(tmp_path))


def test_range_that_does_not_fit_int16_gives_float32(tmp_path):
    make_series(tmp_path, n=3, slopes=[10.0, 10.0, 10.0])  # 4095 * 10 - 1024 > 32767
    stack = quiet_open(tmp_path)
    assert stack.dtype == np.float32
    np.testing.assert_allclose(stack.data.compute(), expected_volume(tmp_path))


def test_uneven_spacing_warns_and_uses_the_median(tmp_path):
    # the last gap is 1.5 x the median: not a whole number of slices, so no slice is guessed
    make_series(tmp_path, n=5, distances=[0.0, 1.0, 2.0, 3.0, 4.5])
    with pytest.warns(UserWarning, match="uneven DICOM slice spacing"):
        stack = open_stack(tmp_path)
    assert stack.voxel_size[0] == pytest.approx(1.0)
    assert stack.shape[0] == 5 and stack.missing == []


def test_several_series_are_reported_and_selectable_by_uid(tmp_path):
    make_series(tmp_path, n=5, name="A", description="soft tissue")
    uid_b = generate_uid()
    make_series(tmp_path, n=3, name="B", uid=uid_b, description="bone")
    with pytest.warns(UserWarning, match="other series"):
        stack = open_stack(tmp_path)
    assert stack.shape[0] == 5
    assert len(stack.other_series) == 1
    other = stack.other_series[0]
    assert other.count == 3 and other.series_uid == uid_b and other.pattern == uid_b
    chosen = quiet_open(tmp_path, pattern=other.pattern)
    assert chosen.shape[0] == 3
    np.testing.assert_array_equal(chosen.data.compute(), expected_volume(tmp_path, "B*.dcm"))


def test_dicom_wins_a_tie_with_raster_slices(tmp_path):
    import tifffile

    make_series(tmp_path, n=3)
    for i in range(3):
        tifffile.imwrite(tmp_path / f"t_{i}.tif", np.zeros((6, 5), np.uint16))
    stack = quiet_open(tmp_path)
    assert stack.metadata["source_format"] == "dicom"
    assert [s.pattern for s in stack.other_series] == ["t_*.tif"]


def test_missing_decoder_names_the_package(tmp_path):
    # JPEG-LS pixel data: no decoder plugin is installed in this environment
    from pydicom.pixels import get_decoder

    if get_decoder(JPEGLSLossless).is_available:
        pytest.skip("a JPEG-LS decoder is installed here")
    folder = tmp_path / "jls"
    folder.mkdir()
    for i in range(2):
        path = folder / f"j{i}.dcm"
        write_dcm(path, np.zeros((4, 4)), (0, 0, i), series_uid="1.2.3", instance=i)
        ds = pydicom.dcmread(path)
        ds.file_meta.TransferSyntaxUID = JPEGLSLossless
        ds.PixelData = encapsulate([b"\xff\xd8\xff\xf7" + bytes(12)])  # a JPEG-LS frame
        ds["PixelData"].VR = "OB"
        ds.save_as(path, enforce_file_format=True)
    with pytest.raises(MissingDecoder, match="pylibjpeg"):
        open_stack(folder)


def test_files_without_extension_are_found_by_magic(tmp_path):
    written = make_series(tmp_path, n=3)
    for _, _, path in written:
        path.rename(path.with_suffix(""))
    stack = quiet_open(tmp_path)
    assert stack.shape[0] == 3 and stack.dtype == np.int16

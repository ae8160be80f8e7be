"""Voxel size and unit: override, SkyScan/NRecon log, ImageJ, TIFF resolution, normalisation."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from ctstack import open_stack
from ctstack.errors import InvalidArgument
from ctstack.metadata import normalise_unit

LOG = """[System]
Scanner=SkyScan1272
Instrument S/N=16A03244
[Acquisition]
Study Date and Time=12 Mar 2024  10:15:31
Image Pixel Size (um)={acq}
[Reconstruction]
Reconstruction Program=NRecon
Pixel Size (um)={rec}
Ring Artifact Correction=4
Smoothing=1
"""


def quiet_open(path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return open_stack(path, **kw)


def skyscan_folder(folder: Path, log_text: str | bytes, numbers=range(3)) -> Path:
    """A SkyScan-like folder: scan_rec%08d.bmp slices, a _spr.bmp preview and scan_rec.log."""
    folder.mkdir(parents=True, exist_ok=True)
    for n in numbers:
        Image.fromarray(np.full((5, 4), n % 256, np.uint8)).save(folder / f"scan_rec{n:08d}.bmp")
    Image.fromarray(np.zeros((50, 50), np.uint8)).save(folder / "scan_rec_spr.bmp")
    data = log_text if isinstance(log_text, bytes) else log_text.encode("utf-8")
    (folder / "scan_rec.log").write_bytes(data)
    return folder


@pytest.mark.parametrize(
    ("text", "unit"),
    [
        ("nm", "nanometer"),
        ("um", "micrometer"),
        ("µm", "micrometer"),
        ("μm", "micrometer"),
        ("micron", "micrometer"),
        ("MM", "millimeter"),
        ("cm", "centimeter"),
        ("millimeter", "millimeter"),
        ("furlong", None),
    ],
)
def test_units_normalise(text, unit):
    assert normalise_unit(text) == unit


def test_skyscan_log_reconstruction_pixel_size_and_metadata(tmp_path):
    folder = skyscan_folder(tmp_path, LOG.format(acq="9.0", rec="4.5"))
    stack = quiet_open(folder)
    assert stack.shape == (3, 5, 4)
    assert stack.voxel_size == (4.5, 4.5, 4.5) and stack.unit == "micrometer"
    assert stack.metadata["scanner"] == "SkyScan1272"
    assert stack.metadata["study_date"] == "12 Mar 2024  10:15:31"
    assert stack.metadata["reconstruction"]["Ring Artifact Correction"] == "4"
    assert stack.other_series == []  # the _spr.bmp preview is not a series


def test_skyscan_log_falls_back_to_acquisition_and_reads_latin1(tmp_path):
    text = LOG.format(acq="7.25", rec="").replace("Smoothing=1", "Operator=Jürgen µCT")
    folder = skyscan_folder(tmp_path, text.encode("latin-1"))
    stack = quiet_open(folder)
    assert stack.voxel_size == (7.25, 7.25, 7.25) and stack.unit == "micrometer"
    assert stack.metadata["log_sections"]["Reconstruction"]["Operator"] == "Jürgen µCT"


def test_skyscan_step_2_numbering_spaces_slices_two_pixels_apart(tmp_path):
    folder = skyscan_folder(tmp_path, LOG.format(acq="9", rec="3"), numbers=range(100, 110, 2))
    stack = quiet_open(folder)
    assert stack.shape[0] == 5 and stack.missing == []
    assert stack.voxel_size == (6.0, 3.0, 3.0)


def test_override_wins_over_log(tmp_path):
    folder = skyscan_folder(tmp_path, LOG.format(acq="9", rec="3"))
    stack = quiet_open(folder, voxel_size=(2, 0.5, 0.5), unit="mm")
    assert stack.voxel_size == (2.0, 0.5, 0.5) and stack.unit == "millimeter"
    iso = quiet_open(folder, voxel_size=0.25)
    assert iso.voxel_size == (0.25, 0.25, 0.25) and iso.unit == "micrometer"
    assert iso.metadata["voxel_size_source"] == "user"


@pytest.mark.parametrize("bad", [(1, 2), (0, 1, 1), ("a", 1, 1), -1.0])
def test_bad_voxel_size_override_is_refused(tmp_path, bad):
    tifffile.imwrite(tmp_path / "s_0.tif", np.zeros((3, 3), np.uint8))
    with pytest.raises(InvalidArgument):
        open_stack(tmp_path, voxel_size=bad)


def test_bad_unit_override_is_refused(tmp_path):
    tifffile.imwrite(tmp_path / "s_0.tif", np.zeros((3, 3), np.uint8))
    with pytest.raises(InvalidArgument, match="furlong"):
        open_stack(tmp_path, unit="furlong")


def test_imagej_slices_spacing_and_unit(tmp_path):
    for i in range(2):
        tifffile.imwrite(
            tmp_path / f"ij_{i}.tif",
            np.zeros((4, 4), np.uint16),
            imagej=True,
            resolution=(1 / 0.8, 1 / 0.8),
            metadata={"spacing": 1.6, "unit": "micron"},
        )
    stack = quiet_open(tmp_path)
    assert stack.voxel_size == pytest.approx((1.6, 0.8, 0.8)) and stack.unit == "micrometer"


def test_72_dpi_inch_resolution_is_not_a_voxel_size(tmp_path):
    tifffile.imwrite(
        tmp_path / "s_0.tif", np.zeros((4, 4), np.uint8), resolution=(72, 72), resolutionunit="INCH"
    )
    stack = quiet_open(tmp_path)
    assert stack.voxel_size == (1.0, 1.0, 1.0) and stack.unit == "pixel"


def test_centimetre_resolution_counts(tmp_path):
    tifffile.imwrite(
        tmp_path / "s_0.tif",
        np.zeros((4, 4), np.uint8),
        resolution=(2000, 2000),
        resolutionunit="CENTIMETER",
    )  # 5 um pixels
    stack = quiet_open(tmp_path)
    assert stack.voxel_size == pytest.approx((5.0, 5.0, 5.0)) and stack.unit == "micrometer"


def test_no_metadata_means_pixels(tmp_path):
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "s_0.png")
    stack = quiet_open(tmp_path)
    assert stack.voxel_size == (1.0, 1.0, 1.0) and stack.unit == "pixel"

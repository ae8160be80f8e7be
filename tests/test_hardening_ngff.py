"""Hardening (issue 13): malformed OME-Zarr input metadata never gives a traceback.

``variants`` makes single-edit variants of a valid ``ctstack.export(..., format="ome-zarr")``
output (NGFF 0.4 on zarr v2 and 0.5 on zarr v3): each changes one thing in the group's
multiscales metadata or level 0's array metadata. Every variant must open correctly or give an
``OpenError``-family error naming the image.
"""

from __future__ import annotations

import copy
import json
import math
import shutil
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile

import ctstack
from ctstack.cli import main
from ctstack.errors import OpenError

Edit = Callable[[dict[str, Any]], Any]


def _ms(meta: dict[str, Any]) -> dict[str, Any]:
    return meta["ms"][0]


def _set(where: Callable[[dict[str, Any]], dict[str, Any]], key: str, value: Any) -> Edit:
    def edit(meta: dict[str, Any]) -> None:
        where(meta)[key] = value

    return edit


def _ds0(meta: dict[str, Any]) -> dict[str, Any]:
    return _ms(meta)["datasets"][0]


def _scale0(meta: dict[str, Any]) -> dict[str, Any]:
    return next(t for t in _ds0(meta)["coordinateTransformations"] if t["type"] == "scale")


def _trans0(meta: dict[str, Any]) -> dict[str, Any]:
    return next(t for t in _ds0(meta)["coordinateTransformations"] if t["type"] == "translation")


# single edits of the multiscales metadata: (name, edit, opens) -- opens: True (must open),
# False (must be refused), None (either, cleanly)
MULTISCALES_EDITS: list[tuple[str, Edit, bool | None]] = [
    ("multiscales-dict", lambda m: m.__setitem__("ms", {"a": 1}), False),
    ("multiscales-string", lambda m: m.__setitem__("ms", "multiscales"), False),
    ("multiscales-empty", lambda m: m.__setitem__("ms", []), False),
    ("multiscales-entry-not-dict", lambda m: m.__setitem__("ms", ["x"]), False),
    ("axes-dict", _set(_ms, "axes", {"z": "space"}), False),
    ("axes-string", _set(_ms, "axes", "zyx"), False),
    ("axes-entries-numbers", _set(_ms, "axes", [1, 2, 3]), False),
    ("axes-name-number", lambda m: _ms(m)["axes"][0].__setitem__("name", 5), False),
    ("axes-unit-number", lambda m: _ms(m)["axes"][1].__setitem__("unit", 7), None),
    ("axes-too-few", lambda m: _ms(m)["axes"].pop(), False),
    ("datasets-dict", _set(_ms, "datasets", {"path": "0"}), False),
    ("datasets-string", _set(_ms, "datasets", "0"), False),
    ("datasets-entry-string", lambda m: _ms(m)["datasets"].__setitem__(0, "0"), False),
    ("path-dotdot", _set(_ds0, "path", "../0"), False),
    ("path-absolute", _set(_ds0, "path", "/etc"), False),
    ("path-number", _set(_ds0, "path", 0), False),
    ("path-missing-level", _set(_ds0, "path", "7"), False),
    ("transforms-string", _set(_ds0, "coordinateTransformations", "scale"), None),
    ("transforms-entry-number", _set(_ds0, "coordinateTransformations", [1]), None),
    ("scale-short", _set(_scale0, "scale", [1.0]), False),
    ("scale-non-numeric", _set(_scale0, "scale", ["a", 1.0, 1.0]), False),
    ("scale-string", _set(_scale0, "scale", "1 1 1"), False),
    ("scale-zero", _set(_scale0, "scale", [0.0, 1.0, 1.0]), True),
    ("scale-negative", _set(_scale0, "scale", [1.0, -1.0, 1.0]), True),
    ("scale-nan", _set(_scale0, "scale", [math.nan, 1.0, 1.0]), True),
    ("scale-inf", _set(_scale0, "scale", [1.0, 1.0, math.inf]), True),
    ("scale-bool", _set(_scale0, "scale", [True, 1.0, 1.0]), False),
    ("translation-short", _set(_trans0, "translation", [1.0]), False),
    ("translation-nan", _set(_trans0, "translation", [math.nan, 0.0, 0.0]), None),
    ("version-number", _set(_ms, "version", 4), None),
]

# single edits of level 0's array metadata (.zarray or zarr.json)
ARRAY_EDITS: list[tuple[str, Callable[[dict[str, Any]], Any], bool | None]] = [
    ("array-shape-string", lambda a: a.__setitem__("shape", "4"), False),
    ("array-shape-missing", lambda a: a.pop("shape"), False),
    ("array-shape-zero", lambda a: a.__setitem__("shape", [0, 6, 5]), False),
    ("array-shape-2d", lambda a: a.__setitem__("shape", [6, 5]), False),
    (
        "array-dtype-bogus",
        lambda a: a.__setitem__("dtype" if "dtype" in a else "data_type", "q9"),
        False,
    ),
    ("array-chunks-zero", lambda a: a.__setitem__("chunks", [0, 0, 0]), None),
]


def tiny_export(folder: Path, version: str) -> Path:
    src = folder / "src"
    src.mkdir(parents=True)
    for i in range(4):
        tifffile.imwrite(src / f"s_{i}.tif", np.full((6, 5), i + 1, np.uint16))
    out = folder / f"img{version}.ome.zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ctstack.export(src, out, format="ome-zarr", ngff_version=version)
    return out


def _group_file(image: Path) -> Path:
    return image / ("zarr.json" if (image / "zarr.json").is_file() else ".zattrs")


def _array_file(image: Path) -> Path:
    v3 = image / "0" / "zarr.json"
    return v3 if v3.is_file() else image / "0" / ".zarray"


def _edit_group(image: Path, edit: Edit) -> None:
    path = _group_file(image)
    doc = json.loads(path.read_text())
    holder = doc["attributes"]["ome"] if path.name == "zarr.json" else doc
    meta = {"ms": holder["multiscales"]}
    edit(meta)
    holder["multiscales"] = meta["ms"]
    path.write_text(json.dumps(doc))  # NaN / Infinity written as Python's json does


def _edit_array(image: Path, edit: Callable[[dict[str, Any]], Any]) -> None:
    path = _array_file(image)
    doc = json.loads(path.read_text())
    if path.name == "zarr.json" and "chunk_grid" in doc and edit.__name__ == "<lambda>":
        # zarr v3 keeps chunks under chunk_grid: give the edit a v2-like view of it
        view = {"shape": doc.get("shape"), "data_type": doc.get("data_type")}
        view["chunks"] = doc["chunk_grid"]["configuration"]["chunk_shape"]
        before = copy.deepcopy(view)
        edit(view)
        for key in ("shape", "data_type"):
            if key not in view:
                doc.pop(key, None)
            elif view[key] != before[key]:
                doc[key] = view[key]
        if view.get("chunks") != before["chunks"]:
            doc["chunk_grid"]["configuration"]["chunk_shape"] = view["chunks"]
    else:
        edit(doc)
    path.write_text(json.dumps(doc))


def variants(base: Path, into: Path) -> Iterator[tuple[str, Path, bool | None]]:
    """Every single-edit variant of the valid image ``base``, copied under ``into``."""
    for name, edit, opens in MULTISCALES_EDITS:
        target = into / f"{name}.ome.zarr"
        shutil.copytree(base, target)
        _edit_group(target, edit)
        yield name, target, opens
    for name, aedit, opens in ARRAY_EDITS:
        target = into / f"{name}.ome.zarr"
        shutil.copytree(base, target)
        _edit_array(target, aedit)
        yield name, target, opens
    for name, text in (("array-json-broken", "{not json"), ("array-json-empty", "")):
        target = into / f"{name}.ome.zarr"
        shutil.copytree(base, target)
        _array_file(target).write_text(text)
        yield name, target, False
    target = into / "group-json-broken.ome.zarr"
    shutil.copytree(base, target)
    _group_file(target).write_text("[1, 2")
    yield "group-json-broken", target, False


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_every_single_edit_variant_opens_or_is_a_clean_open_error(tmp_path, version, capsys):
    base = tiny_export(tmp_path / "base", version)
    expected = np.stack([np.full((6, 5), i + 1, np.uint16) for i in range(4)])
    failures = []
    count = 0
    for name, path, opens in variants(base, tmp_path / "v"):
        count += 1
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                stack = ctstack.open_stack(path)
                volume = stack.data.compute()
        except OpenError as exc:
            if opens is True:
                failures.append(f"{name}: refused ({exc})")
            elif str(path) not in str(exc):
                failures.append(f"{name}: error does not name the image: {exc}")
            continue
        except Exception as exc:  # a traceback in the CLI
            failures.append(f"{name}: {type(exc).__name__}: {exc}")
            continue
        if opens is False:
            failures.append(f"{name}: opened but should be refused")
            continue
        if not np.array_equal(volume, expected):
            failures.append(f"{name}: opened with wrong pixels")
        vox = stack.voxel_size
        if not all(math.isfinite(v) and v > 0 for v in vox):
            failures.append(f"{name}: voxel size {vox}")
        if name.startswith("scale-") and opens is True:
            if stack.unit != "pixel" or vox != (1.0, 1.0, 1.0):
                failures.append(f"{name}: {vox} {stack.unit}, not 1 pixel")
            said = " ".join(str(w.message) for w in caught)
            if "scale" not in said:
                failures.append(f"{name}: no warning about the scale")
        # info never prints a traceback, and its JSON is strict
        rc = main(["info", str(path), "--json"])
        out = capsys.readouterr()
        if rc != 0 or "Traceback" in out.err:
            failures.append(f"{name}: info exit {rc}: {out.err}")
        elif "NaN" in out.out or "Infinity" in out.out:
            failures.append(f"{name}: info --json is not strict JSON")
    assert count >= 35
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_the_valid_export_opens(tmp_path, version):
    base = tiny_export(tmp_path, version)
    stack = ctstack.open_stack(base)
    assert stack.shape == (4, 6, 5) and stack.voxel_size == (1.0, 1.0, 1.0)

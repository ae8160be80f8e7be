"""The dtype list is said once per side: Rust (``_core.DTYPES``), Python (``_dtypes.DTYPES``)
and the stub (``_core.pyi``'s ``DType``) agree, and every consumer takes exactly that list."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import numpy as np
import pytest

import ctstack
from ctstack import _dtypes
from ctstack._numpy_kernel import KERNEL_DTYPES, NumpyCascade
from ctstack.errors import CTStackError
from ctstack.io import map_dtype

STUB = Path(ctstack.__file__).with_name("_core.pyi")
OTHERS = ("int8", "uint64", "int64", "float16", "bool", "complex64")


def stub_dtypes() -> tuple[str, ...]:
    """The members of ``DType = Literal[...]`` in the stub."""
    tree = ast.parse(STUB.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", None) == "DType":
            literal = node.value
            assert isinstance(literal, ast.Subscript) and ast.unparse(literal.value) == "Literal"
            elements = literal.slice.elts if isinstance(literal.slice, ast.Tuple) else []
            return tuple(ast.literal_eval(e) for e in elements)
    raise AssertionError("the stub declares no DType")


def test_python_list_and_stub_agree():
    assert stub_dtypes() == _dtypes.DTYPES
    assert len(set(_dtypes.DTYPES)) == len(_dtypes.DTYPES) == 7
    assert tuple(d.name for d in KERNEL_DTYPES) == _dtypes.DTYPES


def test_rust_list_agrees():
    try:
        core = importlib.import_module("ctstack._core")
    except ImportError:
        pytest.skip("the Rust extension is not built")
    assert tuple(core.DTYPES) == _dtypes.DTYPES
    for name in _dtypes.DTYPES:
        assert core.Cascade(5, 3, 2, name).level_shapes == [(3, 2), (2, 1)]
        assert core.downsample(np.ones((2, 2, 2), name)).dtype == np.dtype(name)
    for name in OTHERS:
        with pytest.raises(TypeError):
            core.Cascade(5, 3, 2, name)
        with pytest.raises(TypeError):
            core.downsample(np.ones((2, 2, 2), name))


def test_numpy_kernel_and_readers_take_exactly_the_list():
    for name in _dtypes.DTYPES:
        assert NumpyCascade(5, 3, 2, name).level_shapes == [(3, 2), (2, 1)]
        assert ctstack.downsample(np.ones((2, 2, 2), name)).dtype == np.dtype(name)
        assert map_dtype(np.dtype(name)) == np.dtype(name)  # taken as it is
    for name in OTHERS:
        with pytest.raises(TypeError):
            NumpyCascade(5, 3, 2, name)
        with pytest.raises(TypeError):
            ctstack.downsample(np.ones((2, 2, 2), name))
        try:
            mapped = map_dtype(np.dtype(name))
        except CTStackError:
            continue  # refused with a clear error
        assert mapped in KERNEL_DTYPES and mapped != np.dtype(name)


def test_accumulators_hold_eight_voxels():
    for name in _dtypes.DTYPES:
        dtype = np.dtype(name)
        acc = _dtypes.accumulator(dtype)
        if dtype.kind == "f":
            assert acc == np.float64
        else:
            assert acc.kind == dtype.kind and acc.itemsize >= max(4, 2 * dtype.itemsize)
            info, wide = np.iinfo(dtype), np.iinfo(acc)
            assert wide.max >= 8 * info.max + 4 and wide.min <= 8 * info.min

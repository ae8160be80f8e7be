"""The pyramid kernel: Rust core, numpy fallback and a plain reference loop agree bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ctstack
from ctstack._backend import core
from ctstack._numpy_kernel import KERNEL_DTYPES, NumpyCascade, downsample_numpy

DTYPES = [d.name for d in KERNEL_DTYPES]


def reference_downsample(volume: np.ndarray) -> np.ndarray:
    """The definition in docs/architecture.md ("The pyramid, exactly") written as plainly as
    possible, one output voxel at a time."""
    nz, ny, nx = volume.shape
    values = volume.tolist()  # Python ints / floats: exact sums, IEEE float64 arithmetic
    is_float = volume.dtype.kind == "f"
    out = []
    for z in range(0, nz, 2):
        plane = []
        for y in range(0, ny, 2):
            row = []
            for x in range(0, nx, 2):
                block = [
                    values[z + dz][y + dy][x + dx]
                    for dz in (0, 1)
                    for dy in (0, 1)
                    for dx in (0, 1)
                    if z + dz < nz and y + dy < ny and x + dx < nx
                ]
                n = len(block)
                if is_float:
                    total = block[0]
                    for v in block[1:]:
                        total += v
                    row.append(total / n)
                else:
                    row.append((sum(block) + n // 2) // n)  # floor: half toward +infinity
            plane.append(row)
        out.append(plane)
    result = np.array(out, dtype=np.float64 if is_float else object).astype(volume.dtype)
    if is_float:  # any NaN result is stored as the canonical quiet NaN (docs/architecture.md)
        result[np.isnan(result)] = np.nan
    return result


def rust_core():
    mod = core()
    if mod is None:
        pytest.skip("the Rust extension is not active (CTSTACK_NO_RUST=1 or not built)")
    return mod


def random_volume(rng: np.random.Generator, shape, dtype: str, extremes: float) -> np.ndarray:
    """Random values over the dtype's whole range, with a share of extreme and special values."""
    dt = np.dtype(dtype)
    if dt.kind in "ui":
        info = np.iinfo(dt)
        a = rng.integers(info.min, info.max, size=shape, dtype=dt, endpoint=True)
        specials = np.array([info.min, info.max, 0, -1 if dt.kind == "i" else 1], dtype=dt)
    else:
        info = np.finfo(dt)
        a = (rng.standard_normal(shape) * rng.choice([1.0, 1e3, 1e30])).astype(dt)
        specials = np.array(
            [info.max, -info.max, np.inf, -np.inf, np.nan, -0.0, info.smallest_subnormal, 0.5],
            dtype=dt,
        )
    mask = rng.random(shape) < extremes
    a[mask] = rng.choice(specials, size=int(mask.sum()))
    return a


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    dtype=st.sampled_from(DTYPES),
    shape=st.tuples(st.integers(1, 67), st.integers(1, 67), st.integers(1, 67)),
    seed=st.integers(0, 2**32 - 1),
    extremes=st.sampled_from([0.0, 0.05, 0.5, 1.0]),
)
def test_rust_numpy_and_reference_agree(dtype, shape, seed, extremes):
    volume = random_volume(np.random.default_rng(seed), shape, dtype, extremes)
    expected = reference_downsample(volume)
    assert same_bits(downsample_numpy(volume), expected)
    assert same_bits(rust_core().downsample(volume), expected)


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_dtype_on_odd_small_shapes(dtype):
    rng = np.random.default_rng(7)
    for shape in [(1, 1, 1), (1, 1, 2), (2, 1, 1), (3, 3, 3), (5, 2, 9), (2, 7, 1)]:
        volume = random_volume(rng, shape, dtype, 0.3)
        expected = reference_downsample(volume)
        assert expected.shape == tuple((n + 1) // 2 for n in shape)
        assert same_bits(ctstack.downsample(volume), expected)
        assert same_bits(downsample_numpy(volume), expected)


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "uint32", "int16", "int32"])
def test_integer_extremes_do_not_overflow(dtype):
    info = np.iinfo(dtype)
    for value in (info.max, info.min):
        volume = np.full((3, 3, 3), value, dtype=dtype)
        assert (ctstack.downsample(volume) == value).all()
        assert (downsample_numpy(volume) == value).all()


def test_signed_rounding_is_half_toward_plus_infinity():
    # blocks of two voxels along x: means -0.5 -> 0, -1.5 -> -1, 0.5 -> 1, -2.5 -> -2
    volume = np.array([[[-1, 0, -2, -1, 0, 1, -3, -2]]], dtype=np.int16)
    expected = np.array([[[0, -1, 1, -2]]], dtype=np.int16)
    np.testing.assert_array_equal(ctstack.downsample(volume), expected)
    np.testing.assert_array_equal(downsample_numpy(volume), expected)


def test_nan_propagates_and_negative_zero_survives():
    volume = np.zeros((2, 2, 4), dtype=np.float32)
    volume[1, 1, 0] = np.nan
    volume[:, :, 2:] = -0.0
    for result in (ctstack.downsample(volume), downsample_numpy(volume)):
        assert np.isnan(result[0, 0, 0])
        assert result[0, 0, 1] == 0 and np.signbit(result[0, 0, 1])


def test_float_sum_order_is_fixed():
    # 1e16 + 1 + 1 ... loses the ones in float64 unless summed in another order: the defined
    # order (z, y, x) must be followed exactly, and the result must match the reference.
    volume = np.array([[[1e16, 1.0], [1.0, 1.0]], [[-1e16, 1.0], [1.0, 1.0]]], dtype=np.float64)
    expected = reference_downsample(volume)
    assert same_bits(ctstack.downsample(volume), expected)
    assert same_bits(downsample_numpy(volume), expected)


@pytest.mark.parametrize("dtype", DTYPES)
def test_non_contiguous_and_big_endian_inputs(dtype):
    rng = np.random.default_rng(3)
    base = random_volume(rng, (9, 10, 11), dtype, 0.1)
    for view in (base.transpose(2, 1, 0), base[::2, 1:, ::3], base[:, ::-1, :]):
        expected = reference_downsample(np.ascontiguousarray(view))
        assert same_bits(ctstack.downsample(view), expected)
    swapped = base.astype(base.dtype.newbyteorder(">"))
    assert same_bits(ctstack.downsample(swapped), reference_downsample(base))


@pytest.mark.parametrize(
    "bad, error, words",
    [
        (np.zeros((2, 2, 2), dtype=np.int8), TypeError, "int8"),
        (np.zeros((2, 2, 2), dtype=np.int64), TypeError, "int64"),
        (np.zeros((2, 2, 2), dtype=bool), TypeError, "bool"),
        (np.zeros((2, 2, 2), dtype=np.complex64), TypeError, "complex64"),
        (np.zeros((2, 2, 2), dtype=object), TypeError, "object"),
        (np.zeros((4,), dtype=np.uint16), ValueError, "3D"),
        (np.zeros((4, 4), dtype=np.uint16), ValueError, "3D"),
        (np.zeros((2, 2, 2, 2), dtype=np.uint16), ValueError, "3D"),
        (np.zeros((0, 4, 4), dtype=np.uint16), ValueError, "empty"),
        ([[[1, 2]]], TypeError, "numpy array"),
    ],
)
def test_bad_input_raises_a_clear_error(bad, error, words):
    with pytest.raises(error, match=words):
        ctstack.downsample(bad)


def test_rust_core_rejects_bad_input_itself():
    mod = rust_core()
    with pytest.raises(TypeError, match="uint8, uint16"):
        mod.downsample(np.zeros((2, 2, 2), dtype=np.int64))
    with pytest.raises(ValueError, match="empty"):
        mod.downsample(np.zeros((2, 0, 2), dtype=np.uint8))


def run_cascade(cascade, volume: np.ndarray) -> list[np.ndarray]:
    """Feeds a volume plane by plane; returns the levels assembled from the emitted planes."""
    shapes = cascade.level_shapes
    outs = [np.empty(s, dtype=volume.dtype) for s in shapes]
    levels: list[list[np.ndarray]] = [[] for _ in shapes]
    for plane in volume:
        done = cascade.push(plane, outs)
        for level, z in done:
            assert z == len(levels[level - 1])
            levels[level - 1].append(outs[level - 1].copy())
    for level, z in cascade.finish(outs):
        assert z == len(levels[level - 1])
        levels[level - 1].append(outs[level - 1].copy())
    return [np.stack(planes) for planes in levels]


def cascades():
    makers = [("numpy", NumpyCascade)]
    if core() is not None:
        makers.append(("rust", core().Cascade))
    return makers


@settings(max_examples=20, deadline=None)
@given(
    dtype=st.sampled_from(DTYPES),
    shape=st.tuples(st.integers(1, 40), st.integers(1, 40), st.integers(1, 40)),
    n_levels=st.integers(1, 4),
    seed=st.integers(0, 2**32 - 1),
)
def test_cascade_equals_repeated_downsample(dtype, shape, n_levels, seed):
    volume = random_volume(np.random.default_rng(seed), shape, dtype, 0.05)
    expected = []
    level = volume
    for _ in range(n_levels):
        level = reference_downsample(level)
        expected.append(level)
    for _name, make in cascades():
        got = run_cascade(make(shape[1], shape[2], n_levels, dtype), volume)
        assert len(got) == n_levels
        for g, e in zip(got, expected, strict=True):
            assert same_bits(g, e)


def test_cascade_slabs_join_exactly():
    """Slabs of 2^n slices starting at multiples of 2^n give exactly their share of each level."""
    volume = random_volume(np.random.default_rng(11), (37, 21, 18), "uint16", 0.1)
    whole = run_cascade(NumpyCascade(21, 18, 3, "uint16"), volume)
    for _name, make in cascades():
        parts = [run_cascade(make(21, 18, 3, "uint16"), volume[z : z + 8]) for z in range(0, 37, 8)]
        for k in range(3):
            joined = np.concatenate([p[k] for p in parts])
            assert same_bits(joined, whole[k])


def test_cascade_checks_its_buffers():
    for _name, make in cascades():
        cascade = make(8, 8, 2, "uint16")
        plane = np.zeros((8, 8), np.uint16)
        with pytest.raises(ValueError):
            cascade.push(np.zeros((8, 9), np.uint16), [np.empty((4, 4), np.uint16)] * 2)
        if _name == "rust":
            with pytest.raises(ValueError, match="2 output planes"):
                cascade.push(plane, [np.empty((4, 4), np.uint16)])
            with pytest.raises(TypeError, match="dtype"):
                cascade.push(plane, [np.empty((4, 4), np.uint8), np.empty((2, 2), np.uint16)])
        with pytest.raises((TypeError, ValueError)):
            make(8, 8, 2, "int64")

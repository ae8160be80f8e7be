"""The 3D pane's kernel side without a browser: level choice for a texture budget, bricks that
cover the level once in order, the transfer on its own thread, cancellation and byte counts."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from ctstack.errors import InvalidArgument
from ctstack.jupyter import _volume
from ctstack.jupyter._volume import MAX_SIDE, bricks, check_camera, choose_level, texture_bytes

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

SHAPES = [(256, 512, 512), (128, 256, 256), (64, 128, 128), (32, 64, 64)]
MB = 1 << 20


def volume_of(sent: list, ids: object = None) -> list[tuple[dict, list]]:
    return [
        (c, b) for c, b in sent if c.get("type") == "volume" and (ids is None or c["id"] == ids)
    ]


# --- level choice -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("budget_mb", "level"),
    [(128, 0), (127.9, 1), (16, 1), (15.9, 2), (2, 2), (0.25, 3)],
)
def test_the_finest_level_that_fits_the_budget(budget_mb, level):
    choice = choose_level(SHAPES, budget_mb)
    assert choice.level == level
    assert choice.bytes == np.prod(SHAPES[level]) * 2 <= budget_mb * MB
    assert choice.shape == SHAPES[level] and choice.note == ""


def test_nothing_fits_gives_the_coarsest_with_a_note():
    choice = choose_level(SHAPES, 0.1)
    assert choice.level == 3
    assert "coarsest" in choice.note and "0.1" in choice.note


def test_level_3d_is_honoured_when_it_fits_and_refused_when_not():
    assert choose_level(SHAPES, 128, level_3d=2).level == 2  # coarser than needed: fine
    clamped = choose_level(SHAPES, 128, level_3d=9)  # clamped to the levels there are
    assert clamped.level == 3 and "3D level 9 does not exist; level 3 shown" in clamped.note
    assert choose_level(SHAPES, 128, level_3d=2).note == ""
    assert choose_level(SHAPES, 128, level_3d=-1).level == 0
    refused = choose_level(SHAPES, 16, level_3d=0)
    assert refused.level == 1  # the budget's own choice
    assert "3D level 0 refused" in refused.note and "128 MB" in refused.note


def test_a_side_longer_than_a_3d_texture_allows_does_not_fit():
    shapes = [(4, 8, MAX_SIDE + 2), (2, 4, MAX_SIDE // 2 + 1)]
    assert texture_bytes(shapes[0]) < MB
    assert choose_level(shapes, 128).level == 1


def test_bad_budgets_are_refused():
    with pytest.raises(InvalidArgument, match="texture_mb"):
        choose_level(SHAPES, 0)
    with pytest.raises(InvalidArgument):
        choose_level([], 128)


# --- bricks -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("nz", "plane", "size"), [(40, 1000, 4096), (7, 10, 10**6), (5, 999, 10)])
def test_bricks_cover_every_plane_once_in_order(nz, plane, size):
    parts = bricks(nz, plane, size)
    covered = [z for z0, z1 in parts for z in range(z0, z1)]
    assert covered == list(range(nz))
    assert all(z1 > z0 for z0, z1 in parts)
    assert all((z1 - z0) * plane <= max(size, plane) for z0, z1 in parts)


def test_camera_values():
    assert check_camera("y") == "y"
    cam = check_camera({"azimuth": 10, "elevation": 120})
    assert cam == {"azimuth": 10.0, "elevation": 90.0, "zoom": 1.0}
    for bad in ("w", 3, {"zoom": 0}, {"tilt": 1}, {"azimuth": "a"}, {"zoom": float("nan")}):
        with pytest.raises(InvalidArgument):
            check_camera(bad)


# --- the viewer's transport ---------------------------------------------------------------------


def test_the_viewer_publishes_its_choice_and_rechooses(make_stack, open_viewer):
    stack = make_stack((12, 40, 52))
    v, _ = open_viewer(stack.path)
    assert v.volume["level"] == 0 and v.volume["shape"] == [12, 40, 52]
    assert v.volume["bytes"] == 12 * 40 * 52 * 2 and v.volume["dtype"] == "float16"
    assert v.volume["generation"] == v.generation
    assert v.volume["low"] < v.volume["high"]
    v.texture_mb = 0.01
    assert "coarsest" in v.warning  # level 0 is the only one: shown anyway, with a note
    v.texture_mb = 64
    assert "coarsest" not in v.warning
    with pytest.raises(Exception, match="texture_mb"):
        v.texture_mb = -1
    with pytest.raises(Exception, match="camera_3d"):
        v.camera_3d = "diagonal"
    v.camera_3d = "x"
    assert v.camera_3d == "x"


def test_the_volume_arrives_in_bricks_from_another_thread(make_stack, open_viewer):
    stack = make_stack((12, 40, 52))
    v, browser = open_viewer(stack.path)
    v._volume.sender.brick_bytes = 40 * 52 * 2 * 5  # 5 planes a brick: 3 bricks
    browser.message({"type": "volume", "id": 1})
    assert v._volume.sender.join(10)
    got = volume_of(browser.sent, 1)
    assert [(c["z0"], c["z1"], c["index"], c["count"]) for c, _ in got] == [
        (0, 5, 0, 3),
        (5, 10, 1, 3),
        (10, 12, 2, 3),
    ]
    assert threading.get_ident() not in browser.threads
    vol = stack.data.compute().astype(np.float32)
    low, high = got[0][0]["low"], got[0][0]["high"]
    data = np.concatenate(
        [np.frombuffer(bytes(b[0]), "<f2").reshape(c["z1"] - c["z0"], 40, 52) for c, b in got]
    )
    back = data.astype(np.float32) * (high - low) + low
    assert np.allclose(back, vol, rtol=2e-3, atol=(high - low) * 1e-3)
    stats = v.stats
    assert stats["volume_bytes"] == 12 * 40 * 52 * 2 == sum(len(bytes(b[0])) for _, b in got)
    assert stats["volume_bricks"] == 3 and stats["volume_requests"] == 1


def test_a_newer_request_or_closing_cancels_the_rest(make_stack, open_viewer, monkeypatch):
    stack = make_stack((12, 40, 52))
    v, browser = open_viewer(stack.path)
    v._volume.sender.brick_bytes = 1  # one plane a brick
    gate = threading.Event()
    real = _volume.read_slab

    def slow(reader, level, z0, z1):
        gate.wait(10)
        return real(reader, level, z0, z1)

    monkeypatch.setattr(_volume, "read_slab", slow)
    browser.message({"type": "volume", "id": 1})
    browser.message({"type": "volume", "id": 2})  # supersedes 1 before any brick was read
    gate.set()
    assert v._volume.sender.join(10)
    assert len(volume_of(browser.sent, 1)) <= 1  # at most the brick being read when cancelled
    assert [c["z0"] for c, _ in volume_of(browser.sent, 2)] == list(range(12))
    assert v.stats["volume_cancelled"] == 1
    gate.clear()
    browser.message({"type": "volume", "id": 3})
    time.sleep(0.05)
    v.close()
    gate.set()
    assert v._volume.sender.join(10)
    assert len(volume_of(browser.sent, 3)) <= 1
    browser.message({"type": "volume", "id": 4})  # closed: no transfer starts
    assert volume_of(browser.sent, 4) == []


def test_a_bad_slice_reads_as_zeros_and_warns(tmp_path, open_viewer):
    from ctstack.sample import write_phantom_stack

    write_phantom_stack(tmp_path / "scan", (6, 20, 24), "uint16", seed=1)
    files = sorted((tmp_path / "scan").glob("*.tif"))
    files[3].write_bytes(b"not a tiff")
    v, browser = open_viewer(tmp_path / "scan")
    browser.message({"type": "volume", "id": 1})
    assert v._volume.sender.join(10)
    got = volume_of(browser.sent, 1)
    assert sum(c["z1"] - c["z0"] for c, _ in got) == 6
    data = np.concatenate([np.frombuffer(bytes(b[0]), "<f2").reshape(-1, 20, 24) for _, b in got])
    low, high = got[0][0]["low"], got[0][0]["high"]
    assert np.allclose(data[3].astype(np.float32) * (high - low) + low, 0, atol=1e-3 * high)
    assert "bad slice" in v.warning and "z 3" in v.warning


def test_a_finished_background_build_chooses_again(tmp_path, open_viewer):
    """Before the pyramid exists only level 0 can be chosen (too big for the budget: shown
    anyway, with a note); once the build ends, the new generation gets the level that fits."""
    from ctstack.sample import write_phantom_stack

    write_phantom_stack(tmp_path / "big", (6, 24, 1030), "uint16", seed=2)
    v, browser = open_viewer(tmp_path / "big")
    v.texture_mb = 0.1  # level 0 is 0.28 MiB
    before = dict(v.volume)
    assert v.wait_for_pyramid(60)
    assert len(v.levels) > 1
    assert v.volume["generation"] == v.generation > before["generation"]
    assert v.volume["level"] == 1 and v.volume["shape"] == v.levels[1]["shape"]
    assert "coarsest" not in v.warning
    browser.message({"type": "volume", "id": 7})
    assert v._volume.sender.join(10)
    got = volume_of(browser.sent, 7)
    assert got and all(c["level"] == 1 for c, _ in got)
    assert v.stats["volume_bytes"] == v.volume["bytes"]

"""3D from depth images of known geometry; intrinsics that follow a resize."""
import numpy as np
import pytest

from streamdeq_ros.runtime.geometry import (depth_in_metres, Intrinsics, keypoints_3d,
                                            object_3d, resized_projection)

CAM = Intrinsics(fx=500.0, fy=480.0, cx=319.5, cy=239.5, width=640, height=480)


def _project(x, y, z):
    return CAM.fx * x / z + CAM.cx, CAM.fy * y / z + CAM.cy


def _scene(wall=6.0):
    """Return a wall at ``wall`` m with a 1.0 x 1.6 m box at 2.5 m (0.6 m right, 0.2 m down)."""
    depth = np.full((480, 640), wall, np.float32)
    u1, v1 = _project(0.1, -0.6, 2.5)
    u2, v2 = _project(1.1, 1.0, 2.5)
    box = (u1, v1, u2, v2)
    depth[int(round(v1)):int(round(v2)), int(round(u1)):int(round(u2))] = 2.5
    return depth, box


def test_a_box_in_front_of_a_wall_is_found_at_its_depth_with_holes_and_zeros():
    depth, (u1, v1, u2, v2) = _scene()
    rng = np.random.default_rng(0)
    holes = rng.random(depth.shape) < 0.3               # 30 % of the pixels missing
    depth[holes] = np.nan
    depth[rng.random(depth.shape) < 0.1] = 0.0          # and 10 % zeros (no return)
    depth = depth_in_metres(depth, '32FC1')
    # a detector's box is looser than the object: 15 % margin, the wall shows inside it
    mx, my = 0.15 * (u2 - u1), 0.15 * (v2 - v1)
    centre, size = object_3d(depth, (u1 - mx, v1 - my, u2 + mx, v2 + my), CAM)
    assert centre[2] == pytest.approx(2.5, abs=0.01)
    assert centre[0] == pytest.approx(0.6, abs=0.02) and centre[1] == pytest.approx(0.2, abs=0.02)
    assert size[0] == pytest.approx(1.3, abs=0.05)
    assert size[1] == pytest.approx(1.6 * 1.3, abs=0.05)
    assert size[2] == pytest.approx(0.0, abs=0.01)     # a flat face: no visible depth extent


def test_a_thin_object_is_found_from_its_mask_not_the_wall_behind():
    depth, (u1, v1, u2, v2) = _scene()
    depth[:] = 6.0
    cols = slice(int(u1), int(u1) + 6)                  # a 6-pixel pole inside a wide box
    depth[int(v1):int(v2), cols] = 3.0
    mask = np.zeros(depth.shape, bool)
    mask[int(v1):int(v2), cols] = True
    assert object_3d(depth, (u1, v1, u2, v2), CAM, mask)[0][2] == pytest.approx(3.0, abs=1e-3)
    # without its mask the box is mostly wall: the nearest group under 15 % loses to it
    assert object_3d(depth, (u1, v1, u2, v2), CAM)[0][2] == pytest.approx(6.0, abs=1e-3)


def test_a_slanted_surface_gives_its_depth_extent_and_middle():
    depth = np.tile(np.linspace(4.0, 5.0, 640, dtype=np.float32), (480, 1))   # a floor-like ramp
    centre, size = object_3d(depth, (0, 0, 640, 480), CAM)
    # the central half of the columns covers 4.25 .. 4.75 m
    assert centre[2] == pytest.approx(4.5, abs=0.01)
    assert size[2] == pytest.approx(0.45, abs=0.02)     # 5th to 95th percentile of 0.5 m


def test_no_depth_in_the_box_gives_nothing():
    depth = np.full((480, 640), np.nan, np.float32)
    depth[0, 0] = 2.0
    assert object_3d(depth, (100, 100, 200, 200), CAM) is None
    assert object_3d(depth, (-50, -50, -10, -10), CAM) is None          # outside the image


def test_keypoints_take_the_depth_around_them_or_nan():
    depth, _ = _scene(wall=5.0)
    depth[200:230, 100:130] = np.nan                    # a hole under one joint
    kp = np.array([[[*_project(0.6, 0.2, 2.5), 0.9], [115.0, 215.0, 0.8],
                    [-5.0, 10.0, 0.5], [*_project(-1.0, -0.5, 5.0), 0.7]]], np.float32)
    xyz = keypoints_3d(depth, kp, CAM)
    assert xyz.shape == (1, 4, 3)
    assert np.allclose(xyz[0, 0], (0.6, 0.2, 2.5), atol=1e-3)
    assert np.isnan(xyz[0, 1]).all() and np.isnan(xyz[0, 2]).all()     # a hole; off the image
    assert np.allclose(xyz[0, 3], (-1.0, -0.5, 5.0), atol=1e-3)


def test_depth_units_and_invalid_values():
    mm = np.array([[0, 1500, 65535, 30]], np.uint16)
    # 0: no return; 30 mm: nearer than any depth camera measures
    assert np.allclose(depth_in_metres(mm, '16UC1'), [[np.nan, 1.5, 65.535, np.nan]],
                       equal_nan=True)
    m = np.array([[np.inf, -1.0, 2.25, np.nan]], np.float32)
    assert np.allclose(depth_in_metres(m, '32FC1'), [[np.nan, np.nan, 2.25, np.nan]],
                       equal_nan=True)
    with pytest.raises(ValueError, match='depth images must be'):
        depth_in_metres(mm, 'rgb8')


def test_intrinsics_follow_a_resize_pixel_centres_included():
    small = CAM.resized(320, 240)
    assert (small.fx, small.fy) == (250.0, 240.0)
    assert (small.cx, small.cy) == (159.5, 119.5)       # the image centre stays the centre
    # a 3D point projects to the same place in the resized image (scaled pixel centres)
    u, v = _project(0.3, -0.2, 4.0)
    us, vs = small.fx * 0.3 / 4.0 + small.cx, small.fy * -0.2 / 4.0 + small.cy
    assert us == pytest.approx((u + 0.5) * 0.5 - 0.5)
    assert vs == pytest.approx((v + 0.5) * 0.5 - 0.5)
    p = resized_projection([500, 0, 319.5, -25.0, 0, 480, 239.5, 0, 0, 0, 1, 0], 0.5, 0.5)
    assert p[:4] == [250.0, 0.0, 159.5, -12.5] and p[4:8] == [0.0, 240.0, 119.5, 0.0]
    with pytest.raises(ValueError, match='positive focal'):
        Intrinsics.from_k([0] * 9, 640, 480)
    with pytest.raises(ValueError, match='no image size'):
        Intrinsics.from_k(CAM.k(), 0, 0)

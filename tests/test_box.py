import pickle

import numpy as np
import pytest

from skydiff.errors import InvalidParameterError
from skydiff.image import Box


def test_geometry():
    box = Box(10, -5, 30, 20)
    assert (box.x_end, box.y_end, box.shape, box.area) == (40, 15, (20, 30), 600)
    assert box.center == (24.5, 4.5)
    assert Box.from_corners(10, -5, 39, 14) == box
    assert Box.from_shape((20, 30), x0=10, y0=-5) == box


def test_intersection_union_contains():
    a, b = Box(0, 0, 10, 10), Box(5, 7, 10, 10)
    assert a.intersection(b) == Box(5, 7, 5, 3)
    assert a.union(b) == Box(0, 0, 15, 17)
    assert a.intersection(Box(20, 20, 3, 3)).is_empty
    assert not a.overlaps(Box(10, 0, 5, 5))  # touching edges share no pixel
    assert a.contains(Box(2, 2, 3, 3)) and not a.contains(b)
    assert a.contains((9.4, 0.0)) and not a.contains((9.5, 0.0))


def test_grow_shift_slices():
    box = Box(3, 4, 5, 6)
    assert box.grown(2) == Box(1, 2, 9, 10)
    assert box.grown((1, 0)) == Box(2, 4, 7, 6)
    assert box.grown(-3).is_empty
    assert box.shifted(-3, 1) == Box(0, 5, 5, 6)
    parent = Box(1, 2, 20, 20)
    array = np.arange(400).reshape(20, 20)
    assert array[box.slices(parent)].shape == box.shape
    assert array[box.slices(parent)][0, 0] == array[2, 2]
    with pytest.raises(InvalidParameterError, match="not contained"):
        Box(0, 0, 5, 5).slices(parent)


def test_validation_and_pickle():
    with pytest.raises(InvalidParameterError, match="width"):
        Box(0, 0, -1, 3)
    with pytest.raises(InvalidParameterError, match="x0"):
        Box(0.5, 0, 1, 1)
    box = Box(1, 2, 3, 4)
    assert pickle.loads(pickle.dumps(box)) == box

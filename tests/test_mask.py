import pickle

import numpy as np
import pytest

from skydiff.errors import InvalidParameterError, UnknownMaskPlaneError
from skydiff.image import STANDARD_MASK_PLANES, Box, Mask


def test_standard_planes_and_bitmask():
    mask = Mask.zeros(Box(0, 0, 4, 3))
    assert set(STANDARD_MASK_PLANES) <= set(mask.planes)
    assert mask.bitmask("BAD") == 1
    assert mask.bitmask(["BAD", "SAT"]) == 3
    with pytest.raises(UnknownMaskPlaneError, match="NOPE"):
        mask.bitmask("NOPE")
    assert mask.bitmask(["BAD", "NOPE"], ignore_missing=True) == 1


def test_set_get_clear_and_new_planes():
    mask = Mask.zeros(Box(5, 5, 4, 3))
    where = np.zeros((3, 4), bool)
    where[1, 2] = True
    mask.set("SAT", where)
    mask.set("MY_PLANE", where)
    assert mask.planes["MY_PLANE"] == len(STANDARD_MASK_PLANES)
    assert mask.get("SAT").sum() == 1 and mask.get(["SAT", "MY_PLANE"])[1, 2]
    mask.clear("SAT")
    assert not mask.get("SAT").any() and mask.get("MY_PLANE")[1, 2]
    assert mask.plane_counts()["MY_PLANE"] == 1


def test_high_bit_plane_roundtrip():
    mask = Mask.zeros(Box(0, 0, 2, 2), planes={"TOP": 31, "BAD": 0})
    mask.set("TOP")
    assert mask.get("TOP").all() and not mask.get("BAD").any()
    assert mask.array.dtype == np.int32


def test_merge_translates_bit_layouts():
    box = Box(0, 0, 3, 1)
    ours = Mask.zeros(box, planes={"BAD": 0, "SAT": 1})
    theirs = Mask(np.array([[1, 2, 4]]), bbox=box, planes={"SAT": 0, "CR": 1, "BAD": 2})
    ours.merge(theirs)
    assert ours.get("SAT").tolist() == [[True, False, False]]
    assert ours.get("CR").tolist() == [[False, True, False]]
    assert ours.get("BAD").tolist() == [[False, False, True]]
    with pytest.raises(InvalidParameterError, match="cannot merge"):
        ours.merge(Mask.zeros(Box(1, 0, 3, 1)))


def test_view_shares_pixels_and_planes():
    mask = Mask.zeros(Box(10, 10, 6, 6))
    view = mask[Box(12, 12, 2, 2)]
    view.set("NEW")
    assert "NEW" in mask.planes
    assert mask.get("NEW").sum() == 4 and mask.get("NEW")[2:4, 2:4].all()


def test_validation_and_pickle():
    with pytest.raises(InvalidParameterError, match="share one bit"):
        Mask.zeros(Box(0, 0, 1, 1), planes={"A": 1, "B": 1})
    with pytest.raises(InvalidParameterError, match="bit"):
        Mask.zeros(Box(0, 0, 1, 1), planes={"A": 32})
    with pytest.raises(InvalidParameterError, match="integer"):
        Mask(np.zeros((2, 2), float))
    mask = Mask.zeros(Box(1, 1, 2, 2))
    mask.set("X")
    assert pickle.loads(pickle.dumps(mask)) == mask

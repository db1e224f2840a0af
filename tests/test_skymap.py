import json
import pickle

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.wcs import WCS

from skydiff.errors import InvalidParameterError
from skydiff.image import Box
from skydiff.skymap import (
    DiscreteSkyMap,
    DiscreteSkyMapConfig,
    PatchIndex,
    RingsSkyMap,
    RingsSkyMapConfig,
    SkyMap,
    SkyMapConfig,
    load_skymap,
    named_skymaps,
)

COSMOS = (150.12, 2.21)


@pytest.fixture(scope="module")
def rings() -> RingsSkyMap:
    return SkyMap.from_name("rings_120")


def _sky_polygon(tract, box: Box) -> tuple[np.ndarray, np.ndarray]:
    """Outer corners of a box in tract pixels, through the tract's astropy WCS."""
    x, y = np.array(box.corners()).T
    return tract.wcs.wcs_pix2world(x, y, 0)


def _small_rings(**changes) -> RingsSkyMap:
    """A coarse rings map whose tracts are a few hundred pixels wide."""
    config = RingsSkyMapConfig(
        num_rings=12, pixel_scale=60.0, patch_inner_dimensions=(40, 30), patch_border=7
    )
    return RingsSkyMap(config.replace(**changes))


# -- patches ------------------------------------------------------------------------------


def test_inner_boxes_tile_the_tract_and_outer_boxes_are_clipped_grown_inner():
    skymap = _small_rings()
    for tract in (skymap[0], skymap[20], skymap[len(skymap) - 1]):
        nx, ny = tract.num_patches
        count = np.zeros(tract.bbox.shape, dtype=int)
        for patch in tract.patches():
            count[patch.inner_bbox.slices()] += 1
            grown = patch.inner_bbox.grown(7)
            assert patch.outer_bbox == grown.intersection(tract.bbox)
            at_edge = patch.index.x in (0, nx - 1) or patch.index.y in (0, ny - 1)
            assert (patch.outer_bbox == grown) == (not at_edge)
            assert patch.inner_bbox.shape == (30, 40)
        assert np.all(count == 1)  # no gap, no overlap
        assert tract.bbox.x0 == tract.bbox.y0 == 0


def test_patch_indices_sequential_and_errors(rings):
    tract = rings[9813]
    nx, _ = tract.num_patches
    patch = tract.patch((3, 7))
    assert patch.index == PatchIndex(3, 7) and patch.sequential_index == 7 * nx + 3
    assert tract.patch(7 * nx + 3) == patch and tract.patch(np.int64(73)) == patch
    assert patch.wcs is tract.wcs and patch.tract_id == 9813
    assert [p.sequential_index for p in tract.patches()] == list(range(tract.patch_count))
    for bad in ((10, 0), (0, -1), 100, -1, "3", (1, 2, 3), 2.0):
        with pytest.raises(InvalidParameterError, match="patch index"):
            tract.patch(bad)


def test_shrunk_inner_box_finds_one_patch_grown_finds_the_3x3_neighbours(rings):
    tract = rings.find_tract(*COSMOS)
    patch = tract.patch((4, 6))
    border = rings.config.patch_border
    found = tract.find_patches(*_sky_polygon(tract, patch.inner_bbox.grown(-(border + 1))))
    assert found == [patch]
    found = tract.find_patches(*_sky_polygon(tract, patch.inner_bbox.grown(2)))
    assert sorted(p.index for p in found) == [(x, y) for x in (3, 4, 5) for y in (5, 6, 7)]
    # the whole-sky search agrees: an interior patch belongs to one tract only
    (only,) = rings.find_tract_patch_list(*_sky_polygon(tract, patch.inner_bbox.grown(-201)))
    assert only.tract == tract and only.patches == [patch]


def test_find_patch_of_points(rings, rng):
    tract = rings[5063]
    x = rng.uniform(-0.5, tract.bbox.width - 0.5, 200)
    y = rng.uniform(-0.5, tract.bbox.height - 0.5, 200)
    ra, dec = tract.wcs.wcs_pix2world(x, y, 0)
    for xi, yi, r, d in zip(x[:40], y[:40], ra, dec, strict=False):
        assert tract.find_patch(r, d).inner_bbox.contains((xi, yi))
    assert np.all(tract.contains(ra, dec))
    far_ra, far_dec = tract.center[0] + 5.0, tract.center[1]
    assert not tract.contains(far_ra, far_dec)
    with pytest.raises(InvalidParameterError, match="not on tract 5063"):
        tract.find_patch(far_ra, far_dec)


# -- rings --------------------------------------------------------------------------------


def test_rings_match_lsst_tract_numbering(rings):
    # LSST's 120-ring sky maps (lsst_cells_v1, hsc_rings_v1) have 18938 tracts of 10 x 10
    # patches of 3000 pixels; published tract ids: HSC COSMOS 9813, LSST DP1 ECDFS 5063 and
    # 47 Tuc 453; LSST lists tract 2 as RA 18..54, Dec -89.26..-87.77.
    assert len(rings) == 18938
    assert list(rings.ring_tract_counts[:3]) == [10, 16, 22]
    assert [tuple(map(int, rings.ring_indices(t))) for t in (0, 1, 11, 18937)] == [
        (-1, 0),
        (0, 0),
        (1, 0),
        (120, 0),
    ]
    assert rings.find_tract(*COSMOS).tract_id == 9813
    assert rings.find_tract(53.13, -28.10).tract_id == 5063
    assert rings.find_tract(6.02, -72.08).tract_id == 453
    region = rings[2].inner_region
    assert region.ra_center - region.half_width == pytest.approx(18.0)
    assert region.ra_center + region.half_width == pytest.approx(54.0)
    assert (region.dec_min, region.dec_max) == pytest.approx((-89.256, -87.769), abs=1e-3)
    tract = rings[9813]
    assert tract.num_patches == (10, 10) and tract.bbox == Box(0, 0, 30000, 30000)
    assert tract.wcs.wcs.crpix == pytest.approx([15000.0, 15000.0])  # FITS, 1-based
    assert list(tract.wcs.wcs.crval) == pytest.approx(tract.center)


def test_rings_every_sky_point_lies_in_its_tract(rings, rng):
    n = 1000
    ra = np.concatenate([rng.uniform(0, 360, n), rng.uniform(0, 360, 100), [0.0, 180.0]])
    dec = np.concatenate(
        [np.rad2deg(np.arcsin(rng.uniform(-1, 1, n))), rng.uniform(89.0, 90.0, 100), [-90, 90]]
    )
    dec[n : n + 50] *= -1  # near both poles
    ra[:100] = np.mod(rng.uniform(-0.01, 0.01, 100), 360.0)  # across RA = 0/360
    ids = rings.find_tract_ids(ra, dec)
    assert ids.shape == ra.shape and ids.min() >= 0 and ids.max() < len(rings)
    for tract_id in np.unique(ids):
        tract, mine = rings[tract_id], ids == tract_id
        assert np.all(tract.inner_region.contains(ra[mine], dec[mine]))
        assert np.all(tract.contains(ra[mine], dec[mine]))
    assert rings.find_tract(ra[5], dec[5]).tract_id == ids[5]
    assert {ids[-2], ids[-1]} == {0, len(rings) - 1}


def test_rings_tracts_evenly_spaced_and_overlapping(rings):
    overlap = rings.config.tract_overlap
    counts = rings.ring_tract_counts
    for ring in (0, 40, 60, 119):
        first = 1 + int(counts[:ring].sum())
        centers = np.array([rings[first + j].center for j in range(3)])
        assert np.diff(centers[:, 0]) == pytest.approx(360.0 / counts[ring])
        assert np.all(centers[:, 1] == centers[0, 1])
        # points within overlap / 2 of the shared RA edge lie on both tracts
        a, b = rings[first], rings[first + 1]
        edge = a.inner_region.ra_center + a.inner_region.half_width
        dec = np.linspace(a.inner_region.dec_min, a.inner_region.dec_max, 9)
        for side in (-0.5, 0.5):
            ra = edge + side * overlap / np.cos(np.deg2rad(dec))
            assert np.all(a.contains(ra, dec)) and np.all(b.contains(ra, dec))
        # and across the Dec edge to the next ring north
        top = a.inner_region.dec_max
        ra = a.inner_region.ra_center + np.linspace(-0.9, 0.9, 7) * a.inner_region.half_width
        north = rings.find_tract_ids(ra, np.full_like(ra, top + 1e-9))
        for side in (-0.5, 0.5):
            dec = np.full_like(ra, top + side * overlap)
            assert np.all(a.contains(ra, dec))
            assert all(rings[t].contains(r, d) for t, r, d in zip(north, ra, dec, strict=True))


@pytest.mark.parametrize("projection", ["TAN", "STG"])
def test_tract_pixel_scale_and_projection_agree_with_astropy(projection, rng):
    skymap = RingsSkyMap(RingsSkyMapConfig(projection=projection))
    for tract_id in (0, 1, 5063, 9813, len(skymap) - 1):
        tract = skymap[tract_id]
        assert tract.wcs.wcs.ctype[0] == f"RA---{projection}"
        cx, cy = tract.crpix
        centre, east, north = tract.wcs.pixel_to_world([cx, cx + 1, cx], [cy, cy, cy + 1])
        for neighbour in (east, north):
            assert centre.separation(neighbour).to_value(u.arcsec) == pytest.approx(0.2, rel=1e-6)
        x = rng.uniform(0, tract.bbox.width, 100)
        y = rng.uniform(0, tract.bbox.height, 100)
        ra, dec = tract.wcs.wcs_pix2world(x, y, 0)
        x2, y2 = tract.sky_to_pixel(ra, dec)
        assert np.max(np.hypot(x2 - x, y2 - y)) < 1e-6
        ra2, dec2 = tract.pixel_to_sky(x, y)
        sep = SkyCoord(ra, dec, unit="deg").separation(SkyCoord(ra2, dec2, unit="deg"))
        assert np.max(sep.to_value(u.arcsec)) < 1e-6


def test_rings_tract_box_holds_its_inner_region_for_coarse_configs():
    # few rings and big patches: the RA/Dec boxes are far from square
    for projection in ("TAN", "STG"):
        skymap = _small_rings(num_rings=5, projection=projection, tract_overlap=2.0)
        for tract in skymap:
            ra, dec = tract.inner_region.grown(1.0).boundary(32)
            assert np.all(tract.contains(ra, dec))


def test_find_tract_patch_list_across_a_tract_boundary(rings):
    east, west = rings[9814], rings[9813]  # neighbours in one ring, east has the larger RA
    edge = west.inner_region.ra_center + west.inner_region.half_width
    ra = np.array([edge - 0.05, edge + 0.05, edge + 0.05, edge - 0.05])
    dec = np.array([2.0, 2.0, 2.1, 2.1])
    found = rings.find_tract_patch_list(ra, dec)
    assert [entry.tract.tract_id for entry in found] == [9813, 9814]
    (_, west_patches), (_, east_patches) = found
    assert {p.index.x for p in west_patches} == {0}  # x grows westwards (CD1_1 < 0)
    assert {p.index.x for p in east_patches} == {9}
    for tract, patches in found:
        x, y = tract.sky_to_pixel(ra, dec)
        inside = [
            any(p.outer_bbox.contains((a, b)) for p in patches) for a, b in zip(x, y, strict=True)
        ]
        assert any(inside)
    assert east.contains(edge - 0.01, 2.05) and west.contains(edge + 0.01, 2.05)


def test_find_overlapping_exposure(rings):
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = COSMOS
    wcs.wcs.crpix = [2000.0, 2000.0]
    wcs.wcs.cd = np.array([[-1.0, 0.0], [0.0, 1.0]]) * 0.26 / 3600
    found = rings.find_overlapping_exposure(wcs, Box(10, 10, 4000, 4000))
    tract = rings.find_tract(*COSMOS)
    assert [entry.tract for entry in found] == [tract]
    assert tract.find_patch(*COSMOS) in found[0].patches
    assert 4 <= len(found[0].patches) <= 9
    with pytest.raises(InvalidParameterError, match="bbox"):
        rings.find_overlapping_exposure(wcs, Box(0, 0, 0, 5))


def test_find_argument_errors(rings):
    with pytest.raises(InvalidParameterError, match="dec must"):
        rings.find_tract(10.0, 95.0)
    with pytest.raises(InvalidParameterError, match="ra must"):
        rings.find_tract_ids([np.nan], [0.0])
    with pytest.raises(InvalidParameterError, match="one shape"):
        rings.find_tract_ids([1.0, 2.0], [0.0])
    with pytest.raises(InvalidParameterError, match="at most 30"):
        rings.find_tract_patch_list([0, 90, 0], [0, 0, 80])
    with pytest.raises(InvalidParameterError, match=r"tract_id must be in \[0, 18938\)"):
        rings[18938]
    with pytest.raises(InvalidParameterError, match="use find_tract_ids"):
        rings.find_tract([1.0, 2.0], [0.0, 0.0])
    with pytest.raises(TypeError, match="abstract"):
        SkyMap()


# -- discrete -----------------------------------------------------------------------------


def test_discrete_point_inside_radius_found_outside_not():
    skymap = DiscreteSkyMap.from_centers([10.0, 200.0, 201.0], [-30.0, 45.0, 45.0], 0.5)
    assert len(skymap) == 3
    tract = skymap.find_tract(10.3, -30.2)
    assert tract.tract_id == 0 and tract.inner_region.contains(10.3, -30.2)
    assert skymap.find_tract(200.2, 45.0).tract_id == 1  # both hold it; nearest centre wins
    assert skymap.find_tract(200.8, 45.0).tract_id == 2
    assert list(skymap.find_tract_ids([12.0, 100.0], [-30.0, 0.0])) == [-1, -1]
    with pytest.raises(InvalidParameterError, match="lies in no tract"):
        skymap.find_tract(12.0, -30.0)
    for tract in skymap:
        ra, dec = tract.inner_region.grown(1 / 120).boundary()
        assert np.all(tract.contains(ra, dec))
        assert tract.wcs.wcs.crval == pytest.approx(tract.center)
    found = skymap.find_tract_patch_list([200.4, 200.6, 200.6, 200.4], [44.9, 44.9, 45.1, 45.1])
    assert [entry.tract.tract_id for entry in found] == [1, 2]
    empty = DiscreteSkyMap()
    assert len(empty) == 0 and list(empty) == [] and empty.find_tract_patch_list(10, 0) == []
    assert list(empty.find_tract_ids([1.0], [2.0])) == [-1]


# -- persistence, names and configuration ---------------------------------------------------


def test_round_trips_and_pickle(tmp_path, rings):
    discrete = DiscreteSkyMap.from_centers([10.0], [-30.0], 0.5)
    for skymap in (rings, discrete, _small_rings(ra_start=12.5, projection="STG")):
        data = skymap.to_dict()
        assert json.loads(json.dumps(data)) == data
        assert SkyMap.from_dict(data) == skymap
        path = skymap.write(tmp_path / f"{skymap.kind}.json", overwrite=True)
        assert json.loads(path.read_text()) == data
        again = SkyMap.read(path)
        assert again == skymap and type(again) is type(skymap)
        assert pickle.loads(pickle.dumps(skymap)) == skymap
        tract = skymap[0]
        assert tract.wcs.has_celestial  # a built WCS is left out of the pickle, rebuilt on use
        assert pickle.loads(pickle.dumps(tract)) == tract
        patch = tract.patch(0)
        assert pickle.loads(pickle.dumps(patch)) == patch
    assert rings != discrete and rings != _small_rings()
    assert list(tmp_path.glob(".*.tmp")) == []
    with pytest.raises(FileExistsError):
        rings.write(tmp_path / "rings.json")


def test_read_and_load_errors_name_the_file(tmp_path):
    with pytest.raises(InvalidParameterError, match="no such sky map file"):
        SkyMap.read(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InvalidParameterError, match=r"bad\.json: not a readable"):
        SkyMap.read(bad)
    bad.write_text(json.dumps({"kind": "hexagons"}))
    with pytest.raises(InvalidParameterError, match=r"bad\.json: unknown sky map kind"):
        load_skymap(bad)
    bad.write_text(json.dumps({"kind": "rings", "config": {"num_ring": 3}}))
    with pytest.raises(InvalidParameterError, match="has no field 'num_ring'"):
        load_skymap(str(bad))
    with pytest.raises(InvalidParameterError, match="neither a known sky map name"):
        load_skymap("rings_999")


def test_named_skymaps(tmp_path, rings):
    names = named_skymaps()
    assert {"rings_120", "hsc_rings_120"} <= set(names)
    assert rings == RingsSkyMap() and load_skymap("rings_120") == rings
    hsc = SkyMap.from_name("hsc_rings_120")
    tract = hsc.find_tract(*COSMOS)
    assert tract.tract_id == 9813 and tract.num_patches == (9, 9)  # HSC: 9 x 9 patches
    assert tract.patch(40).outer_bbox.shape == (4200, 4200)
    assert load_skymap(hsc.write(tmp_path / "hsc.json")) == hsc
    with pytest.raises(InvalidParameterError, match=r"known names: .*rings_120"):
        SkyMap.from_name("lsst_cells_v9")


@pytest.mark.parametrize(
    ("config_class", "changes", "match"),
    [
        (RingsSkyMapConfig, {"num_rings": 0}, "num_rings must be >= 1"),
        (RingsSkyMapConfig, {"ra_start": 360.0}, r"ra_start must be in \[0, 360\)"),
        (RingsSkyMapConfig, {"pixel_scale": -0.2}, "pixel_scale must be > 0"),
        (RingsSkyMapConfig, {"projection": "SIN"}, r"projection must be one of \['TAN', 'STG'\]"),
        (SkyMapConfig, {"patch_inner_dimensions": (3000,)}, "patch_inner_dimensions must be"),
        (SkyMapConfig, {"patch_border": -1}, "patch_border must be >= 0"),
        (SkyMapConfig, {"tract_overlap": 10.0}, "tract_overlap must be in"),
        (DiscreteSkyMapConfig, {"ra": (1.0, 2.0), "dec": (0.0,)}, "dec must have one value"),
        (DiscreteSkyMapConfig, {"ra": (1.0,), "dec": (0.0,), "radius": (20.0,)}, "radius must"),
        (DiscreteSkyMapConfig, {"ra": (1.0,), "dec": (91.0,), "radius": (1.0,)}, "dec must lie"),
    ],
)
def test_bad_config_values_raise_naming_the_field(config_class, changes, match):
    with pytest.raises(InvalidParameterError, match=match):
        config_class(**changes)


def test_skymap_needs_its_own_config_kind():
    with pytest.raises(InvalidParameterError, match="RingsSkyMap needs a RingsSkyMapConfig"):
        RingsSkyMap(DiscreteSkyMapConfig())

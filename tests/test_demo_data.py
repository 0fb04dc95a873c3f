"""Demo-set builders on small phantoms in the official formats (CI has no network).

The nuclei phantom is a 512 x 512 TIFF pair like stardist's (disks, some straddling the region
borders); the MRI phantom is three RAS NIfTI volumes like the MNI template. Oracles: the source
label image cropped at each tile's position (an instance must be one whole source nucleus),
pixel-set algebra for disjointness, and anatomy (an anterior structure must be at the top).
"""

from __future__ import annotations

import hashlib
import importlib.util
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tifffile
from PIL import Image

from cobot_lib.data import FolderDataset, read_split
from cobot_lib.data.demo import DEMO_NAMES, demo_root, ensure_demo_data

_SPEC = importlib.util.spec_from_file_location(
    "build_demo_data", Path(__file__).parents[1] / "data_scripts" / "build_demo_data.py"
)
bdd = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(bdd)

MNI = "mni_icbm152_{}_tal_nlin_sym_09a_converted.nii.gz"


def _nuclei_phantom(folder: Path) -> dict[str, Path]:
    """512 x 512 uint16 image + label TIFFs; disks of radius 6-14, some across x=256 and 384."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:512, 0:512]
    labels = np.zeros((512, 512), np.uint16)
    centres = [(rng.uniform(20, 492), rng.uniform(20, 492)) for _ in range(150)]
    centres += [(100, 256), (300, 384), (450, 255)]  # certain straddlers
    k = 0
    for cy, cx in centres:
        disk = (yy - cy) ** 2 + (xx - cx) ** 2 <= rng.uniform(6, 14) ** 2
        if (labels[disk] == 0).all():
            k += 1
            labels[disk] = k
    image = (20 + 150 * (labels > 0) + rng.normal(0, 5, labels.shape)).clip(0, 255)
    paths = {"img2d.tif": folder / "img2d.tif", "mask2d.tif": folder / "mask2d.tif"}
    tifffile.imwrite(paths["img2d.tif"], image.astype(np.uint16))
    tifffile.imwrite(paths["mask2d.tif"], labels)
    return paths


def _tile_origin(name: str) -> tuple[int, int]:
    y, x = name.split("_")[-2:]
    return int(y[1:]), int(x[1:])


def test_nuclei_tiles_hold_whole_source_nuclei_and_splits_share_no_nucleus_pixel(tmp_path):
    raw = _nuclei_phantom(tmp_path)
    out = tmp_path / "nuclei"
    meta = bdd.build_nuclei(out, raw)
    source = tifffile.imread(raw["mask2d.tif"]).astype(np.int64)
    t = bdd.NUCLEI_TILE
    footprint = {s: np.zeros(source.shape, bool) for s in ("train", "val", "test")}
    nuclei = {s: [] for s in ("train", "val", "test")}
    for split, names in meta["_splits"].items():
        for name in names:
            y, x = _tile_origin(name)
            footprint[split][y : y + t, x : x + t] = True
            tile = np.asarray(Image.open(out / "masks" / f"{name}.png"))
            crop = source[y : y + t, x : x + t]
            for k in np.unique(tile[tile > 0]):
                ids = np.unique(crop[tile == k])
                assert ids.size == 1 and ids[0] > 0, f"{name}: instance {k} is not one nucleus"
                assert ((crop == ids[0]) == (tile == k)).all(), f"{name}: nucleus {ids[0]} cut"
                assert (source == ids[0]).sum() == (tile == k).sum()  # wholly inside the tile
                nuclei[split].append(int(ids[0]))
    test_pixels = np.isin(source, nuclei["test"])
    val_pixels = np.isin(source, nuclei["val"])
    assert not (footprint["train"] & (test_pixels | val_pixels)).any()
    assert not (footprint["val"] & test_pixels).any()
    assert not set(nuclei["train"]) & (set(nuclei["val"]) | set(nuclei["test"]))
    for split in ("val", "test"):  # each evaluation nucleus is scored exactly once
        assert len(nuclei[split]) == len(set(nuclei[split])) > 0
    straddlers = {int(source[100, 256]), int(source[300, 384]), int(source[450, 255])}
    assert not straddlers & set(nuclei["train"] + nuclei["val"] + nuclei["test"])
    assert meta["nuclei_on_region_borders_unused"] >= 3


def _mri_phantom(folder: Path, shape=(64, 72, 160)) -> dict[str, Path]:
    """RAS volumes (identity affine): a head ellipsoid, 'white matter' inside, 'grey matter' a
    shell around it, and a white-matter rod beyond the shell at the anterior (+y) end."""
    x, y, z = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    r = np.sqrt(x**2 + y**2 + (z / 0.9) ** 2)
    wm = (r < 0.55) | ((x**2 + (y - 0.82) ** 2) < 0.08**2)
    gm = (r >= 0.55) & (r < 0.7) & ~wm
    t1 = 40.0 * (r < 0.95) + 60 * gm + 120 * wm
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    paths = {}
    for key, vol in (("t1", t1), ("wm", wm * 255.0), ("gm", gm * 200.0)):
        paths[MNI.format(key)] = folder / MNI.format(key)
        nib.save(nib.Nifti1Image(vol.astype(np.float32), affine), paths[MNI.format(key)])
    return paths


def test_mri_splits_are_blocks_of_slices_apart_and_masks_follow_the_anatomy(tmp_path):
    raw = _mri_phantom(tmp_path)
    out = tmp_path / "mri"
    meta = bdd.build_mri(out, raw)
    zs = {s: [int(n.split("_z")[-1]) for n in names] for s, names in meta["_splits"].items()}
    assert all(zs[s] for s in ("train", "val", "test"))
    for a in zs:
        for b in zs:
            if a < b:
                gap = min(abs(i - j) for i in zs[a] for j in zs[b])
                assert gap >= 2 * bdd.MRI_STEP, f"{a} and {b} slices only {gap} apart"
    wm = nib.load(raw[MNI.format("wm")]).get_fdata() > 127.5
    gm = nib.load(raw[MNI.format("gm")]).get_fdata() > 100
    name = meta["_splits"]["train"][len(zs["train"]) // 2]
    z = int(name.split("_z")[-1])
    label = np.asarray(Image.open(out / "masks" / f"{name}.png"))
    assert label.shape == (72, 64)  # rows = y (anterior-posterior), columns = x
    assert (label == 1).sum() == wm[:, :, z].sum() and (label == 2).sum() == gm[:, :, z].sum()
    rows_wm = np.flatnonzero((label == 1).any(1))
    rows_gm = np.flatnonzero((label == 2).any(1))
    assert rows_wm[0] < rows_gm[0]  # the anterior rod is at the top: anterior is up


def test_built_sets_load_with_the_folder_loader(tmp_path):
    raw = _nuclei_phantom(tmp_path)
    out = bdd.build(  # the raw files are given, so nothing is downloaded
        "nuclei", tmp_path / "nuclei", wheel=None, raw=raw
    )
    for split in ("train", "val", "test"):
        ds = FolderDataset(out, split, image_size=256)
        assert len(ds) == len(read_split(out, split)) > 0
        item = ds[0]
        assert item["masks"].shape[0] == item["boxes"].shape[0] >= 1
        assert item["original_size"] == (bdd.NUCLEI_TILE, bdd.NUCLEI_TILE)


def _fake_wheel(path: Path, files: dict[str, Path], prefix: str) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, src in files.items():
            zf.write(src, prefix + name)
    return path


def test_fetch_raw_reads_the_wheel_and_checks_sha256(tmp_path, monkeypatch):
    raw = _nuclei_phantom(tmp_path)
    wheel = _fake_wheel(tmp_path / "stardist-0-py3-none-any.whl", raw, bdd.WHEELS["nuclei"][1])
    with pytest.raises(ValueError, match="SHA-256"):  # the phantom is not stardist's image
        bdd.fetch_raw("nuclei", tmp_path / "raw1", wheel)
    digests = {n: hashlib.sha256(p.read_bytes()).hexdigest() for n, p in raw.items()}
    monkeypatch.setitem(bdd.FILES, "nuclei", digests)
    got = bdd.fetch_raw("nuclei", tmp_path / "raw2", wheel)
    assert {n: p.read_bytes() for n, p in got.items()} == {
        n: p.read_bytes() for n, p in raw.items()
    }


def test_tile_starts_cover_the_region_and_end_on_its_border():
    assert bdd.tile_starts(512, 128, 64) == [0, 64, 128, 192, 256, 320, 384]
    assert bdd.tile_starts(256, 128, 48) == [0, 48, 96, 128]
    with pytest.raises(ValueError, match="100"):
        bdd.tile_starts(100, 128, 64)


def test_demo_root_and_ensure(tmp_path, monkeypatch):
    monkeypatch.setenv("COBOT_DATA", str(tmp_path))
    assert DEMO_NAMES == ("nuclei", "mri")
    assert demo_root("mri") == tmp_path / "demo" / "mri"
    with pytest.raises(ValueError, match="'cells'"):
        demo_root("cells")
    (tmp_path / "demo" / "nuclei").mkdir(parents=True)
    (tmp_path / "demo" / "nuclei" / "dataset.json").write_text("{}")
    assert ensure_demo_data("nuclei") == tmp_path / "demo" / "nuclei"  # present: not rebuilt


def test_dense_mri_test_split_adds_the_skipped_slices_inside_test_blocks_only(tmp_path):
    raw = _mri_phantom(tmp_path)
    sparse = bdd.build_mri(tmp_path / "sparse", raw)["slices_per_split"]
    dense = bdd.build_mri(tmp_path / "dense", raw, dense_test=True)["slices_per_split"]
    assert dense["train"] == sparse["train"] and dense["val"] == sparse["val"]
    assert set(sparse["test"]) < set(dense["test"])  # the same blocks, more slices
    for block_start, block_end in ((min(sparse["test"]), max(sparse["test"])),):
        assert block_start <= min(dense["test"]) and max(dense["test"]) <= block_end
    between = [z for z in range(min(sparse["test"]), max(sparse["test"]) + 1)]
    assert set(dense["test"]) <= set(between)
    others = dense["train"] + dense["val"]
    gap = min(abs(i - j) for i in dense["test"] for j in others)
    assert gap >= 2 * bdd.MRI_STEP, f"a test slice is only {gap} slices from train/val"


def test_every_slice_of_blocks_fills_each_run_of_sampled_slices():
    usable = list(range(10, 40))
    sampled = usable[::2]  # 10, 12, ..., 38
    # two blocks: 14-18 (consecutive samples) and 30-32; 22 stands alone
    got = bdd.every_slice_of_blocks([14, 16, 18, 22, 30, 32], sampled, usable)
    assert got == [14, 15, 16, 17, 18, 22, 30, 31, 32]

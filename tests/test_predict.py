"""``python -m cobot_lib.predict``: the same masks as ``evaluate`` (its --save-masks files are
the oracle), automatic mode, NIfTI volumes against their PNG slices, the COCO file against
pycocotools, and one clear error per bad input, raised before the model runs.

The exactness check runs on the nuclei demo test split when the demo data is on this machine
and always on a small folder dataset written here (no network needed); the model is the tiny
SAM with random weights plus a LoRA adapter trained for two steps, so it is an *adapted* model
whose masks are not empty.
"""

from __future__ import annotations

import json
import shutil

import nibabel as nib
import numpy as np
import pytest
import yaml
from PIL import Image
from pycocotools import mask as mask_utils

from cobot_lib.data import write_dataset_json, write_mask, write_splits
from cobot_lib.data.demo import demo_root, ensure_demo_data
from cobot_lib.data.inputs import plan_inputs
from cobot_lib.data.layout import write_image
from cobot_lib.data.nifti import nifti_to_slices
from cobot_lib.data.predictions import CocoWriter, label_image
from cobot_lib.data.prompt_file import (
    PromptFileError,
    prompts_from_dataset,
    read_prompt_file,
    write_prompt_json,
)
from cobot_lib.engine import evaluation
from cobot_lib.engine import trainer as train
from cobot_lib.engine.config import load_config
from cobot_lib.engine.predict import PredictOptions, load_model, main, predict_folder
from cobot_lib.engine.runtime import build_datasets
from cobot_lib.peft import save_adapter

pytestmark = pytest.mark.usefixtures("one_thread")

NUCLEI = demo_root("nuclei")


def _toy_dataset(root):
    """Six 90 x 70 grey images, two rectangles each; train / val / test splits."""
    rng = np.random.default_rng(0)
    names = [f"img{i}" for i in range(6)]
    for i, name in enumerate(names):
        image = rng.integers(0, 60, (90, 70)).astype(np.uint8)
        masks = np.zeros((2, 90, 70), bool)
        masks[0, 5 + i : 40, 8:30] = True
        masks[1, 50:80, 30 + i : 66] = True
        image[masks.any(0)] += 150
        write_image(root / "images" / f"{name}.png", image)
        write_mask(root / "masks" / name, masks)
    write_splits(root, {"train": names[:3], "val": names[3:4], "test": names[4:]})
    write_dataset_json(root, {"name": "toy", "domain": "natural"})
    return root


def _adapted_run(tmp_path, root):
    """Config file + RUN_DIR/adapter: a random tiny SAM with a LoRA trained for 2 steps."""
    data = {
        "name": "run",
        "output_dir": str(tmp_path / "{name}"),
        "model": {"type": "tiny", "checkpoint": None},
        "peft": {"method": "lora", "cobot": True},
        "data": {"root": str(root), "val_split": None},
        "optim": {"epochs": 1, "lr": 1e-4},
        "runtime": {"progress": False, "max_steps": 2},
    }
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(data))
    trainer = train.Trainer(load_config(data), train_set=None)
    trainer.fit()
    save_adapter(trainer.sam, tmp_path / "run" / "adapter")  # the stopped run's weights
    return config, tmp_path / "run" / "adapter"


def _coco_masks(path):
    coco = json.loads(path.read_text())
    names = {im["id"]: im["file_name"] for im in coco["images"]}
    out: dict[str, list[np.ndarray]] = {n: [] for n in names.values()}
    for ann in coco["annotations"]:
        out[names[ann["image_id"]]].append(mask_utils.decode(ann["segmentation"]).astype(bool))
    return coco, out


@pytest.mark.parametrize("source", ["toy", "nuclei"])
def test_box_prompts_reproduce_evaluates_masks_exactly(tmp_path, source):
    # the nuclei set is built here when missing (a fresh clone), never skipped
    root = _toy_dataset(tmp_path / "toy") if source == "toy" else ensure_demo_data("nuclei")
    config, adapter = _adapted_run(tmp_path, root)
    assert evaluation.main([str(config), "--save-masks", "--adapter", str(adapter)]) == 0
    cfg = load_config(str(config))
    _, eval_set = build_datasets(cfg, need_train=False)
    prompts = write_prompt_json(tmp_path / "prompts.json", prompts_from_dataset(eval_set))
    images = tmp_path / "images"
    images.mkdir()
    for name in eval_set.names:
        shutil.copy(root / "images" / f"{name}.png", images)
    sam = load_model("tiny", "random", adapter)
    predict_folder(sam, images, tmp_path / "out", prompts, PredictOptions(progress=False))
    _, predicted = _coco_masks(tmp_path / "out" / "predictions.json")
    total = 0
    for name in eval_set.names:
        oracle = np.load(tmp_path / "run" / "masks" / f"{name}.npz")["masks"]
        got = np.stack(predicted[f"{name}.png"])
        assert got.shape == oracle.shape and np.array_equal(got, oracle), name
        written = np.asarray(Image.open(tmp_path / "out" / "masks" / f"{name}.png"))
        assert np.array_equal(written, label_image(oracle))
        total += oracle.sum()
    assert total > 0  # a real comparison, not empty masks
    # merged weights: the same masks up to float rounding; batches of 3: the same masks
    merged = load_model("tiny", "random", adapter, merge_adapter=True)
    predict_folder(merged, images, tmp_path / "merged", prompts, PredictOptions(progress=False))
    batched = PredictOptions(progress=False, batch_size=3)
    predict_folder(sam, images, tmp_path / "batched", prompts, batched)
    for other in ("merged", "batched"):
        _, masks = _coco_masks(tmp_path / other / "predictions.json")
        for name in eval_set.names:
            a, b = np.stack(masks[f"{name}.png"]), np.stack(predicted[f"{name}.png"])
            assert (a != b).mean() < 1e-3, (other, name)


def test_point_prompts_reproduce_evaluates_masks(tmp_path):
    root = _toy_dataset(tmp_path / "toy")
    cfg = load_config({"model": {"type": "tiny", "checkpoint": None}, "peft": {"method": "freeze"},
                       "data": {"root": str(root), "prompt": "box+point",
                                "negative_points": 2}})  # fmt: skip
    _, eval_set = build_datasets(cfg, need_train=False)
    sam = load_model("tiny", "random")
    oracle_dir = tmp_path / "oracle"
    evaluation.evaluate_model(sam, eval_set, save_masks=oracle_dir)
    prompts = write_prompt_json(tmp_path / "p.json", prompts_from_dataset(eval_set))
    assert json.loads(prompts.read_text())["images"]["img4"][0]["labels"] == [1, 0, 0]
    images = tmp_path / "images"
    images.mkdir()
    for name in eval_set.names:
        shutil.copy(root / "images" / f"{name}.png", images)
    predict_folder(sam, images, tmp_path / "out", prompts, PredictOptions(progress=False))
    _, predicted = _coco_masks(tmp_path / "out" / "predictions.json")
    for name in eval_set.names:
        oracle = np.load(oracle_dir / f"{name}.npz")["masks"]
        assert np.array_equal(np.stack(predicted[f"{name}.png"]), oracle), name


def test_automatic_mode_writes_masks(tmp_path):
    image = NUCLEI / "images" / "nuclei_test_y000_x384.png"
    if not image.is_file():  # offline: a toy image of the same kind
        image = _toy_dataset(tmp_path / "toy") / "images" / "img4.png"
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(image, folder)
    options = PredictOptions(progress=False, points_per_side=4, pred_iou_thresh=0.0,
                             stability_score_thresh=0.0)  # fmt: skip
    summary = predict_folder(load_model("tiny", "random"), folder, tmp_path / "out", None, options)
    assert summary["mode"] == "automatic" and summary["objects"] > 0
    coco, masks = _coco_masks(tmp_path / "out" / "predictions.json")
    stack = np.stack(masks[image.name])
    areas = stack.reshape(len(stack), -1).sum(1)
    assert (np.diff(areas) <= 0).all()  # largest first
    written = np.asarray(Image.open(tmp_path / "out" / "masks" / f"{image.stem}.png"))
    assert written.shape == stack.shape[1:] and np.array_equal(written, label_image(stack))
    assert (tmp_path / "out" / "overlays" / f"{image.stem}.png").is_file()
    assert len(coco["annotations"]) == summary["objects"]


def _volume(path, affine):
    """A 24 x 20 x 6 MR-like volume with a bright block; stored with ``affine``."""
    rng = np.random.default_rng(1)
    data = rng.normal(100, 10, (24, 20, 6)).astype(np.float32)
    data[5:15, 4:12, 1:5] += 300
    label = np.zeros(data.shape, np.uint8)
    label[5:15, 4:12, 1:5] = 1
    nib.save(nib.Nifti1Image(data, affine), str(path / "vol.nii.gz"))
    nib.save(nib.Nifti1Image(label, affine), str(path / "label.nii.gz"))


def test_volume_masks_match_its_png_slices_and_keep_the_affine(tmp_path):
    affine = np.array([[0, 0, -2.0, 40], [-1.5, 0, 0, 30], [0, 1.2, 0, -10], [0, 0, 0, 1]])
    (tmp_path / "vol").mkdir()
    _volume(tmp_path / "vol", affine)
    names = nifti_to_slices(tmp_path / "vol" / "vol.nii.gz", tmp_path / "vol" / "label.nii.gz",
                            tmp_path / "slices", "vol", modality="mr", min_voxels_3d=1,
                            min_pixels_2d=1)  # fmt: skip
    cfg = load_config({"model": {"type": "tiny", "checkpoint": None}, "peft": {"method": "freeze"},
                       "data": {"root": str(tmp_path / "slices")}})  # fmt: skip
    write_splits(tmp_path / "slices", {"test": names})
    _, eval_set = build_datasets(cfg, need_train=False)
    table = prompts_from_dataset(eval_set)
    volume_prompts = {"vol.nii.gz": [{**obj, "slice": int(name.split("_z")[1])}
                                     for name in names for obj in table[name]]}  # fmt: skip
    write_prompt_json(tmp_path / "vol.json", volume_prompts)
    write_prompt_json(tmp_path / "png.json", table)
    (tmp_path / "in").mkdir()
    shutil.copy(tmp_path / "vol" / "vol.nii.gz", tmp_path / "in")
    sam = load_model("tiny", "random")
    quiet = PredictOptions(progress=False)
    predict_folder(sam, tmp_path / "in", tmp_path / "out", tmp_path / "vol.json", quiet)
    predict_folder(sam, tmp_path / "slices" / "images", tmp_path / "png", tmp_path / "png.json",
                   quiet)  # fmt: skip
    written = nib.load(str(tmp_path / "out" / "masks" / "vol.nii.gz"))
    source = nib.load(str(tmp_path / "vol" / "vol.nii.gz"))
    assert written.shape == source.shape and np.allclose(written.affine, source.affine)
    canonical = np.asarray(nib.as_closest_canonical(written).dataobj)
    for name in names:
        k = int(name.split("_z")[1])
        png = np.asarray(Image.open(tmp_path / "png" / "masks" / f"{name}.png"))
        assert np.array_equal(np.flipud(canonical[:, :, k].T), png), name
    assert canonical.any()


def test_coco_writer_round_trips_through_pycocotools(tmp_path):
    rng = np.random.default_rng(3)
    masks = rng.random((3, 17, 23)) > 0.6
    writer = CocoWriter(tmp_path / "p.json")
    writer.add("a.png", (17, 23), masks, [0.9, 0.8, 0.7])
    writer.add("b.png", (5, 6), np.zeros((0, 5, 6), bool), [])
    writer.close()
    coco, decoded = _coco_masks(tmp_path / "p.json")
    assert [im["height"] for im in coco["images"]] == [17, 23][:1] + [5]
    assert np.array_equal(np.stack(decoded["a.png"]), masks) and decoded["b.png"] == []
    assert [a["area"] for a in coco["annotations"]] == masks.reshape(3, -1).sum(1).tolist()
    assert not list(tmp_path.glob(".p.json*"))  # the temporary line files are gone


# ---- bad input: one clear error each, before the model runs -----------------------------
@pytest.fixture
def folder(tmp_path):
    root = _toy_dataset(tmp_path / "toy")
    return root / "images"


def _prompts(tmp_path, table, name="p.json"):
    path = tmp_path / name
    path.write_text(json.dumps({"images": table}) if name.endswith(".json") else table)
    return path


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({}, "holds no objects"),
        ({"nowhere.png": [{"box": [1, 1, 5, 5]}]}, "image 'nowhere.png' is not in"),
        ({"img0": [{"box": [1, 1, 75, 5]}]}, "prompt outside image img0.png (70 x 90"),
        ({"img0": [{"points": [[5, 95]]}]}, "y in [95, 95]"),
        ({"img0": [{"box": [5, 5, 1, 9]}]}, "x1 < x0"),
        ({"img0": [{"points": [[5, 5]], "labels": [2]}]}, "1 (inside) or 0 (outside)"),
        ({"img0": [{"points": [[5, 5]], "labels": [0]}]}, "at least one label-1 point"),
        ({"img0": [{"box": [1, 1, 5, 5], "colour": 3}]}, "unknown keys ['colour']"),
        ({"img0": [{"box": [1, 1, 5, 5], "slice": 2}]}, "is a 2-D image; drop 'slice'"),
    ],
)
def test_bad_prompts_name_the_entry(tmp_path, folder, table, message):
    for name in [p.stem for p in folder.iterdir()]:  # every other image has a valid prompt
        if name not in str(table) and table:
            table[f"{name}.png"] = [{"box": [1, 1, 5, 5]}]
    path = _prompts(tmp_path, table)
    with pytest.raises((PromptFileError, FileNotFoundError)) as info:
        plan_inputs(folder, path)
    assert message in str(info.value) and str(path) in str(info.value)


def test_an_image_without_prompts_is_named(tmp_path, folder):
    path = _prompts(tmp_path, {"img0.png": [{"box": [1, 1, 5, 5]}]})
    with pytest.raises(PromptFileError, match=r"image .*img1\.png has no prompts in"):
        plan_inputs(folder, path)


def test_csv_json_and_coco_prompts_agree(tmp_path):
    csv = _prompts(tmp_path, "image,object,x0,y0,x1,y1,x,y,point_label\n"
                             "a.png,1,1,2,10,12,,,\na.png,1,,,,,5,6,1\na.png,1,,,,,0,0,0\n"
                             "a.png,,,,,,7,8,\n", name="p.csv")  # fmt: skip
    js = _prompts(tmp_path, {"a.png": [
        {"box": [1, 2, 10, 12], "points": [[5, 6], [0, 0]], "labels": [1, 0]},
        {"points": [[7, 8]]}]})  # fmt: skip
    assert read_prompt_file(csv) == read_prompt_file(js)
    coco = tmp_path / "coco.json"
    coco.write_text(
        json.dumps(
            {
                "images": [{"id": 4, "file_name": "a.png"}],
                "annotations": [{"image_id": 4, "bbox": [1, 2, 9, 10]}],
            }
        )
    )
    assert read_prompt_file(coco)["a.png"][0].box == (1, 2, 10, 12)
    with pytest.raises(PromptFileError, match=r"p2\.csv line 2: x0='one' is not a number"):
        read_prompt_file(_prompts(tmp_path, "image,x0,y0,x1,y1\na.png,one,1,2,3\n", "p2.csv"))
    with pytest.raises(FileNotFoundError, match="prompt file not found"):
        read_prompt_file(tmp_path / "missing.json")
    for empty in ("empty.json", "empty.csv"):
        (tmp_path / empty).write_text("\n")
        with pytest.raises(PromptFileError, match=f"prompt file .*{empty} is empty"):
            read_prompt_file(tmp_path / empty)
    header_only = _prompts(tmp_path, "image,x0,y0,x1,y1\n", "header.csv")
    with pytest.raises(PromptFileError, match="holds no objects"):
        read_prompt_file(header_only)


def test_volume_prompts_need_a_slice_that_exists(tmp_path):
    (tmp_path / "in").mkdir()
    _volume(tmp_path / "in", np.diag([1.0, 1.0, 1.0, 1.0]))
    (tmp_path / "in" / "label.nii.gz").unlink()
    for obj, message in (({"box": [1, 1, 5, 5]}, "each object needs a 'slice'"),
                         ({"box": [1, 1, 5, 5], "slice": 6}, "slice 6 is outside vol.nii.gz"),
                         ({"box": [1, 1, 5, 25], "slice": 2}, "(24 x 20 pixels")):  # fmt: skip
        path = _prompts(tmp_path, {"vol.nii.gz": [obj]})
        with pytest.raises(PromptFileError, match=message.replace("(", r"\(")):
            plan_inputs(tmp_path / "in", path)


def test_cli_errors_before_any_work(tmp_path, folder, capsys):
    run = tmp_path / "run"
    sam = load_model("tiny", "random")
    from cobot_lib.peft import apply_peft

    apply_peft(sam, "lora")
    save_adapter(sam, run / "adapter")
    out = tmp_path / "out"
    cases = [
        (["--adapter", str(run / "adapter"), "--model-type", "vit_b", "--checkpoint", "random"],
         "was trained on a backbone", "it fits --model-type tiny"),
        (["--checkpoint", "random", "--merge"], "--merge folds an adapter", ""),
        (["--checkpoint", str(tmp_path / "none.pth")], "SAM checkpoint not found", "none.pth"),
        (["--prompts", str(tmp_path / "none.json")], "prompt file not found", "none.json"),
        (["--batch-size", "0"], "batch size must be >= 1", ""),
    ]  # fmt: skip
    for extra, message, detail in cases:
        assert main([str(folder), "--out", str(out), "--no-progress", *extra]) == 2
        err = capsys.readouterr().err
        assert message in err and detail in err, err
        assert not out.exists(), extra
    assert main([str(tmp_path / "nothing"), "--out", str(out)]) == 2
    assert "input not found" in capsys.readouterr().err
    out.mkdir()
    (out / "masks").mkdir()
    assert main([str(folder), "--out", str(out), "--checkpoint", "random"]) == 2
    assert "already holds predictions (masks)" in capsys.readouterr().err
    assert main([str(folder), "--out", str(folder), "--checkpoint", "random"]) == 2
    assert "is the input folder" in capsys.readouterr().err


def test_inputs_sharing_a_stem_are_refused(tmp_path, folder):
    shutil.copy(folder / "img0.png", folder / "img0.jpg")
    with pytest.raises(ValueError, match=r"share the name 'img0'"):
        plan_inputs(folder)

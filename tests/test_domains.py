"""The benchmark's synthetic domains: seeded, counted, no train/test overlap, readable by the
library's folder reader. Small split sizes keep it fast: the loop that fills a split until it
holds the requested instances is the same at every size, and every domain requests >= 1,000
test instances (``test_domain_sizes_and_bad_names``)."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from cobot_lib.data import __main__ as data_cli
from cobot_lib.data import load_dataset
from cobot_lib.data.domains import DOMAINS, SPLIT_CODES, ensure_domain, render, write_domain
from cobot_lib.data.layout import read_split

SMALL = (2, 4, 8)  # train images, val instances, test instances


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    base = tmp_path_factory.mktemp("domains")
    out = {}
    for name in DOMAINS:
        for tag, seed in (("a", 0), ("b", 0), ("c", 1)):
            out[name, tag] = write_domain(name, base / f"{name}_{tag}", seed=seed, sizes=SMALL)
    return out


@pytest.mark.parametrize("name", list(DOMAINS))
def test_same_seed_same_bytes_other_seed_other_images(written, name):
    first, again, other = (_files(written[name, t]) for t in "abc")
    assert first == again
    images = {k: v for k, v in first.items() if k.startswith("images")}
    assert images and not set(images.values()) & set(_files(written[name, "c"]).values())


@pytest.mark.parametrize("name", list(DOMAINS))
def test_counts_splits_and_the_library_reads_them(written, name):
    root = written[name, "a"]
    info = json.loads((root / "dataset.json").read_text())
    counts = info["counts"]
    assert counts["train"]["images"] == SMALL[0]
    assert counts["val"]["instances"] >= SMALL[1] and counts["test"]["instances"] >= SMALL[2]
    for split in SPLIT_CODES:
        names = read_split(root, split)
        assert len(names) == counts[split]["images"]
        dataset = load_dataset(root, split, 256)
        assert len(dataset.names) == len(names)  # every image holds an instance
        # instances the reader indexes = instances the generator counted
        assert sum(len(v) for v in dataset.instance_labels) == counts[split]["instances"]


@pytest.mark.parametrize("name", list(DOMAINS))
def test_no_train_test_overlap(written, name):
    root = written[name, "a"]
    names = {s: set(read_split(root, s)) for s in SPLIT_CODES}
    assert not names["train"] & names["test"] and not names["val"] & names["test"]

    def digests(split):
        return {hashlib.sha256((root / "images" / f"{n}.png").read_bytes()).hexdigest()
                for n in names[split]}  # fmt: skip

    assert not digests("train") & digests("test") and not digests("val") & digests("test")
    # the streams differ by split: index i of train and index i of test are different images
    for i in range(3):
        assert not np.array_equal(render(name, 0, "train", i)[0], render(name, 0, "test", i)[0])


def test_domain_sizes_and_bad_names():
    for spec in DOMAINS.values():
        assert spec.test_instances >= 1000 and spec.val_instances >= 300
        assert 16 <= spec.train_images <= 64  # a small PEFT training set
    with pytest.raises(ValueError, match="unknown benchmark domain"):
        render("mars", 0, "train", 0)
    with pytest.raises(ValueError, match="split must be one of"):
        render("ct", 0, "holdout", 0)


def test_prepare_command_refuses_an_unknown_domain(capsys):
    with pytest.raises(SystemExit) as exit_info:
        data_cli.main(["prepare", "sonar", "mars"])
    assert exit_info.value.code == 2 and "unknown domain(s) ['mars']" in capsys.readouterr().err


def test_ensure_domain_keeps_a_prepared_set(written):
    root = written["ct", "a"]
    before = (root / "dataset.json").stat().st_mtime_ns
    assert ensure_domain("ct", root) == root  # same generator version and seed: not re-rendered
    assert (root / "dataset.json").stat().st_mtime_ns == before

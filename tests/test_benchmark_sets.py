"""Every benchmark domain's folder and metric (``data.benchmark_sets``), on phantoms (no network).

Oracles: the demo builders' own outputs (the real domains are those sets, mri with its test
blocks filled), the synthetic domains' registry, and the files on disk.
"""

from __future__ import annotations

import json

import pytest
from test_demo_data import _mri_phantom, bdd

from cobot_lib.data import benchmark_sets
from cobot_lib.data.benchmark_sets import (
    BENCHMARK_DOMAINS,
    benchmark_metric,
    ensure_benchmark_domain,
)
from cobot_lib.data.domains import DOMAINS


def test_every_domain_has_a_metric_and_unknown_ones_are_named():
    assert set(BENCHMARK_DOMAINS) == {*DOMAINS, "nuclei", "mri"}
    assert {d: benchmark_metric(d) for d in BENCHMARK_DOMAINS} == {
        "sonar": "miou", "ct": "dsc", "aerial": "miou", "nuclei": "miou", "mri": "dsc"
    }  # fmt: skip
    with pytest.raises(ValueError, match="'cells'"):
        benchmark_metric("cells")
    with pytest.raises(ValueError, match="'cells'"):
        ensure_benchmark_domain("cells")


def test_the_real_mri_domain_is_built_from_the_demo_raw_files_with_a_dense_test(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("COBOT_DATA", str(tmp_path))
    (tmp_path / "phantom").mkdir()
    raw = _mri_phantom(tmp_path / "phantom")
    demo = tmp_path / "demo" / "mri"
    (demo / "raw").mkdir(parents=True)
    for name, path in raw.items():
        (demo / "raw" / name).write_bytes(path.read_bytes())
    bdd.build("mri", demo, raw=raw)  # the demo set, as ensure_demo_data would find it
    monkeypatch.setitem(bdd.FILES, "mri", dict.fromkeys(raw, ""))  # phantom: no digests
    monkeypatch.setattr(benchmark_sets, "demo_builder", lambda: bdd)
    root = ensure_benchmark_domain("mri")
    assert root == tmp_path / "benchmark" / "mri"
    info, shown = (json.loads((p / "dataset.json").read_text()) for p in (root, demo))
    assert info["dense_test"] is True and info["metric"] == "dsc"
    assert info["slices_per_split"]["train"] == shown["slices_per_split"]["train"]
    assert len(info["slices_per_split"]["test"]) > len(shown["slices_per_split"]["test"])
    stamp = (root / "dataset.json").stat().st_mtime_ns
    assert ensure_benchmark_domain("mri") == root  # found, not rebuilt
    assert (root / "dataset.json").stat().st_mtime_ns == stamp

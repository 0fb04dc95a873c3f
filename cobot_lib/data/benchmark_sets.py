"""Every domain of the benchmark (issue 15): its metric and its prepared folder, whether it is
rendered (``domains``: sonar, ct, aerial) or real (``demo``: nuclei, mri).

The real ones are the two offline demo sets, rebuilt from the demo set's own source files
(``<demo>/raw``, so no network) into ``<data dir>/benchmark/<name>``, with the test split as
large as the source allows without touching training:

* ``nuclei``: the demo set unchanged. Its source, the stardist wheel, holds one labelled real
  image (512 x 512, 125 nuclei); its right quarter is the test split (23 nuclei). The wheel's
  3-D volume is synthetic and its H&E image has no labels, so a larger test split would have to
  come out of the training or validation quarters.
* ``mri``: the demo set's train and val splits; its test blocks keep every axial slice instead of
  every second (10 -> 18 slices, ``build_demo_data.every_slice_of_blocks``), still 4 mm or more
  from any training or validation slice.

    root = ensure_benchmark_domain("mri")      # built once, then found
    benchmark_metric("mri")                    # 'dsc'
"""

from __future__ import annotations

import os
from pathlib import Path

from .demo import data_dir, demo_builder, ensure_demo_data
from .domains import DOMAINS, ensure_domain
from .layout import read_dataset_json

__all__ = ["BENCHMARK_DOMAINS", "REAL_DOMAINS", "benchmark_metric", "ensure_benchmark_domain"]

#: The real domains: name -> (metric, the demo builder's options).
REAL_DOMAINS: dict[str, tuple[str, dict[str, bool]]] = {
    "nuclei": ("miou", {}),
    "mri": ("dsc", {"dense_test": True}),
}
#: Every domain a grid file may name.
BENCHMARK_DOMAINS = (*DOMAINS, *REAL_DOMAINS)


def _check(name: str) -> None:
    if name not in BENCHMARK_DOMAINS:
        raise ValueError(f"unknown benchmark domain {name!r}; expected one of "
                         f"{list(BENCHMARK_DOMAINS)}")  # fmt: skip


def benchmark_metric(name: str) -> str:
    """The metric the benchmark reports on domain ``name``: 'dsc' or 'miou'."""
    _check(name)
    return DOMAINS[name].metric if name in DOMAINS else REAL_DOMAINS[name][0]


def ensure_benchmark_domain(name: str, root: str | os.PathLike | None = None) -> Path:
    """The prepared folder of domain ``name`` (default ``<data dir>/benchmark/<name>``):
    rendered or built when missing, or when a real one was built with other options."""
    _check(name)
    if name in DOMAINS:
        return ensure_domain(name, root)
    root = Path(root) if root is not None else data_dir() / "benchmark" / name
    options = REAL_DOMAINS[name][1]
    info = read_dataset_json(root)
    if info and all(info.get(k) == v for k, v in options.items()):
        return root
    builder = demo_builder()  # the demo set's raw files, checked against their SHA-256
    raw = builder.fetch_raw(name, ensure_demo_data(name) / "raw")
    return builder.build(name, root, raw=raw, **options)

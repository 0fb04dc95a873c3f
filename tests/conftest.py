"""Shared fixtures: small, seeded models so the suite stays fast on 2 CPU cores."""

from __future__ import annotations

import pytest
import torch

from cobot_lib.backbone.sam import build_sam


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module's tests (``pytestmark = pytest.mark.usefixtures(
    "one_thread")``): small models run faster on one thread, and far faster when other jobs
    share the cores; the thread count is restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny_sam():
    """A randomly initialised tiny SAM (no pretraining needed), in eval mode."""
    return build_sam("tiny")


@pytest.fixture
def tiny_batch():
    """Two normalised 256 px images with three boxes each."""
    gen = torch.Generator().manual_seed(1)
    images = torch.randn(2, 3, 256, 256, generator=gen)
    boxes = [
        torch.tensor([[10.0, 20.0, 100.0, 120.0], [50.0, 50.0, 200.0, 220.0], [0, 0, 30, 30]]),
        torch.tensor([[5.0, 5.0, 250.0, 250.0], [100.0, 40.0, 140.0, 90.0], [60, 60, 61, 61]]),
    ]
    return images, boxes


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--rebuild",
        action="store_true",
        help="also run the opt-in rebuild tests (a full pretraining, ~25 min); "
        "`python3 workbook.py test --slow` passes it",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect (not skip) the rebuild tests unless --rebuild is given."""
    if config.getoption("--rebuild"):
        return
    kept = [item for item in items if "rebuild" not in item.keywords]
    if len(kept) != len(items):
        config.hook.pytest_deselected(items=[i for i in items if "rebuild" in i.keywords])
        items[:] = kept

"""Check a dataset before any work: decode every image and mask once, report every bad file.

    report = validate_dataset("data/my_set", ["train", "test"])   # every problem; raises nothing
    require_valid_dataset("data/my_set", ["train", "test"])       # DatasetError listing them all
    python -m cobot_lib.data check data/my_set [--split train]    # the same from a shell

What is checked (``format`` as in ``load_dataset``: the argument, else dataset.json, else
"folder"):

* every format: dataset.json parses (UTF-8 JSON object, known domain / metric / format,
  min_area and intensity of the right kind); every split file asked for exists, is UTF-8, lists
  names, none twice;
* "folder": every listed name has one image and one mask; every image decodes completely
  (a truncated file fails here), is (H, W) or (H, W, C) with H, W > 0, and holds no NaN or
  infinite pixel; every mask decodes to integer, non-negative labels (or a binary stack); image
  and mask have the same size;
* "coco": the annotation file parses; every image entry has a file name and positive integer
  height and width; every annotation refers to a listed image, has an integer category_id and a
  segmentation that decodes on its image; every listed image file decodes and has the size the
  annotation file says;
* "nifti": every case's image and label volumes decode, have finite intensities, integer
  non-negative labels and the same voxel grid (``nifti.check_case``); the slicing settings in
  dataset.json are valid.

Every problem is collected (path and what is wrong), so one run reports every bad file at once.
Files are decoded by up to 8 threads (one per core; the decoders release the GIL).

A file's result is cached by its size and modification time (as ``make`` and ``rsync`` judge
files), so a second check of an unchanged dataset decodes nothing: under a second. The cache is
one JSON file per dataset folder under ``<cache>/validation/`` (``backbone.sam.cache_dir``:
``$COBOT_CACHE`` or ``~/.cache/cobot_lib``), outside the user's data folder; at most
``MAX_CACHE_FILES`` are kept (the oldest go first). A file changed without a new size or
modification time (rare: a tool that restores timestamps) is not re-checked until
``use_cache=False``.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..files import atomic_write, cache_dir, remove_orphans
from .coco import index_annotations
from .layout import FORMATS, read_dataset_json, read_split
from .nifti import check_case, nifti_cases, slice_settings
from .readers import IMAGE_EXTS, MASK_EXTS, inspect_image, inspect_mask
from .transforms import INTENSITY_MODES

__all__ = [
    "CHECKER_VERSION",
    "MAX_CACHE_FILES",
    "DatasetError",
    "Job",
    "Problem",
    "ValidationReport",
    "validate_dataset",
    "require_valid_dataset",
    "validation_cache_path",
]

#: bump when a check changes, so results cached by an older checker are not trusted
CHECKER_VERSION = 1
MAX_CACHE_FILES = 256


class DatasetError(ValueError):
    """A dataset with bad files; the message lists every one, with what is wrong."""


@dataclass(frozen=True)
class Problem:
    """One bad file (or folder): its path and what is wrong (a sentence naming the file)."""

    path: str
    message: str


@dataclass
class ValidationReport:
    """The outcome of ``validate_dataset``."""

    root: Path
    format: str
    splits: list[str] | None
    files: int = 0  # files checked
    decoded: int = 0  # of which decoded in this call (the others were unchanged since cached)
    problems: list[Problem] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, path: str | os.PathLike, message: str) -> None:
        """Record a problem of ``path``."""
        self.problems.append(Problem(str(path), message))

    def summary(self) -> str:
        verdict = "no problems" if self.ok else f"{len(self.problems)} problem(s)"
        return (
            f"{self.format} dataset {self.root}: {self.files} files checked ({self.decoded} "
            f"decoded, {self.files - self.decoded} unchanged since the last check) in "
            f"{self.seconds:.2f} s: {verdict}"
        )

    def text(self, limit: int | None = None) -> str:
        """The summary and one line per problem (at most ``limit``, then a count)."""
        shown = self.problems if limit is None else self.problems[:limit]
        lines = [self.summary()] + [f"  - {p.message}" for p in shown]
        if len(shown) < len(self.problems):
            lines.append(
                f"  ... and {len(self.problems) - len(shown)} more: run "
                f"`python -m cobot_lib.data check {self.root}` to list them all"
            )
        return "\n".join(lines)


def validation_cache_path(root: str | os.PathLike) -> Path:
    """The cache file of the dataset folder ``root`` (one per resolved path)."""
    resolved = Path(root).resolve()
    key = hashlib.sha256(str(resolved).encode()).hexdigest()[:16]
    return cache_dir() / "validation" / f"{resolved.name}-{key}.json"


@dataclass(frozen=True)
class Job:
    """One check: its cache key, the files it reads, and the check itself (returns info)."""

    key: str
    paths: tuple[Path, ...]
    check: Callable[[], Any]


def _attempt(job: Job) -> dict[str, Any]:
    """{"info": job.check()}, or {"problem": message naming the file} for any error (every
    decoder raises its own types for a bad file)."""
    try:
        return {"info": job.check()}
    except Exception as exc:
        message = str(exc) if isinstance(exc, ValueError | OSError) else repr(exc)
        if str(job.paths[0]) not in message:
            message = f"{job.paths[0]}: {message}"
        return {"problem": message}


class _Cache:
    """Results per check, each keyed by the size and modification time of the files it read."""

    def __init__(self, root: Path, enabled: bool) -> None:
        self.path = validation_cache_path(root)
        self.enabled = enabled
        self.entries: dict[str, Any] = {}
        self.changed = False
        if enabled and self.path.is_file():
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
                if data.get("version") == CHECKER_VERSION and isinstance(data["entries"], dict):
                    self.entries = data["entries"]
            except (ValueError, OSError, KeyError, AttributeError):
                self.entries = {}  # unreadable or from another checker: check everything

    @staticmethod
    def stamp(paths: Sequence[Path]) -> list[list[int]]:
        out = []
        for p in paths:
            st = p.stat()
            out.append([st.st_size, st.st_mtime_ns])
        return out

    def run(self, jobs: Sequence[Job], workers: int, bar: tqdm) -> list[tuple[dict, bool]]:
        """(result, computed now?) per job: the cached result while the job's files keep their
        size and modification time, else ``job.check()`` (run by ``workers`` threads: the
        decoders release the GIL). A result is {"info": ...} or {"problem": message}."""
        results: list[Any] = [None] * len(jobs)
        todo: list[tuple[int, list]] = []
        for i, job in enumerate(jobs):
            try:
                stamp = self.stamp(job.paths)
            except FileNotFoundError as exc:
                results[i] = ({"problem": f"file not found: {exc.filename}"}, True)
                continue
            except OSError as exc:
                results[i] = ({"problem": f"cannot read {job.paths[0]}: {exc}"}, True)
                continue
            hit = self.entries.get(job.key)
            if self.enabled and isinstance(hit, dict) and hit.get("stamp") == stamp:
                results[i] = (hit["result"], False)
                bar.update()
            else:
                todo.append((i, stamp))
        with ThreadPoolExecutor(max(1, min(workers, len(todo)))) as pool:
            outcomes = pool.map(lambda t: _attempt(jobs[t[0]]), todo)
            for (i, stamp), result in zip(todo, outcomes, strict=True):
                self.entries[jobs[i].key] = {"stamp": stamp, "result": result}
                self.changed = True
                results[i] = (result, True)
                bar.update()
        return results

    def save(self) -> None:
        if not (self.enabled and self.changed):
            return
        folder = self.path.parent
        folder.mkdir(parents=True, exist_ok=True)
        remove_orphans(folder)
        text = json.dumps({"version": CHECKER_VERSION, "entries": self.entries})
        atomic_write(self.path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
        kept = sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in kept[MAX_CACHE_FILES:]:
            old.unlink(missing_ok=True)


# ---- files of a folder -----------------------------------------------------------------------


def _index(folder: Path, exts: tuple[str, ...], report: ValidationReport) -> dict[str, Path]:
    """name -> file of ``folder``; a missing folder or a name with two files is a problem."""
    if not folder.is_dir():
        report.add(folder, f"folder not found: {folder}")
        return {}
    out: dict[str, Path] = {}
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        stem, dot, ext = entry.name.rpartition(".")
        if not dot or ext.lower() not in exts or entry.name.startswith("."):
            continue
        if stem in out:
            message = f"two files for name {stem!r} in {folder}: {out[stem].name} and {entry.name}"
            report.add(entry.path, message + "; keep one")
        else:
            out[stem] = Path(entry.path)
    return out


# ---- the formats -----------------------------------------------------------------------------


def _split_names(
    root: Path, splits: list[str] | None, report: ValidationReport
) -> dict[str, list[str]] | None:
    """{split: names} for the splits asked for (all split files when None; None if none)."""
    if splits is None:
        splits = sorted(p.stem for p in (root / "splits").glob("*.txt"))
        if not splits:
            return None
    out = {}
    for split in splits:
        try:
            out[split] = read_split(root, split)
        except (ValueError, OSError) as exc:
            report.add(root / "splits" / f"{split}.txt", str(exc))
    return out


def _check_info(root: Path, report: ValidationReport) -> dict[str, Any]:
    path = root / "dataset.json"
    try:
        info = read_dataset_json(root)
    except (ValueError, OSError) as exc:
        report.add(path, str(exc))
        return {}
    area = info.get("min_area", 1)
    if isinstance(area, bool) or not isinstance(area, int) or area < 1:
        report.add(path, f"{path}: min_area={area!r}; expected an integer >= 1")
    mode = info.get("intensity", INTENSITY_MODES[0])
    if mode not in INTENSITY_MODES:
        message = f"{path}: intensity={mode!r}; expected one of {list(INTENSITY_MODES)}"
        report.add(path, message)
    return info


def _check_folder(root, names, cache, report, bar, workers) -> None:
    images = _index(root / "images", IMAGE_EXTS, report)
    masks = _index(root / "masks", MASK_EXTS, report)
    wanted = (
        sorted({n for ns in names.values() for n in ns}) if names is not None else sorted(masks)
    )
    where = {n: s for s, ns in (names or {}).items() for n in ns}
    jobs, owner = [], []
    for name in wanted:
        for kind, files, folder, exts, check in (
            ("image", images, "images", IMAGE_EXTS, inspect_image),
            ("mask", masks, "masks", MASK_EXTS, inspect_mask),
        ):
            if name not in files:
                listed = f"split {where[name]!r} lists {name!r}" if name in where else name
                looked = f"{name}.{{{','.join(exts)}}}"
                message = f"{listed}, but {root / folder} has no {kind} (looked for {looked})"
                report.add(root / folder, message)
                continue
            path = files[name]
            jobs.append(Job(f"{kind}:{path}", (path,), lambda p=path, c=check: c(p)))
            owner.append((name, kind))
    bar.reset(total=len(jobs))
    found: dict[str, dict[str, tuple[Path, dict]]] = {}
    for job, (name, kind), (result, fresh) in zip(
        jobs, owner, cache.run(jobs, workers, bar), strict=True
    ):
        report.files += 1
        report.decoded += fresh
        if "problem" in result:
            report.add(job.paths[0], result["problem"])
        else:
            found.setdefault(name, {})[kind] = (job.paths[0], result["info"])
    for pair in found.values():
        if len(pair) == 2 and pair["image"][1]["hw"] != pair["mask"][1]["hw"]:
            (ip, ii), (mp, mi) = pair["image"], pair["mask"]
            (h, w), (mh, mw) = ii["hw"], mi["hw"]
            message = f"image {ip} is {h}x{w} but its mask {mp} is {mh}x{mw} (H x W); must match"
            report.add(mp, message)


def _check_coco(root, info, names, cache, report, bar, workers) -> None:
    ann_path = root / info.get("annotations", "annotations.json")
    image_dir = root / info.get("image_dir", "images")
    index_job = Job(f"coco:{ann_path}", (ann_path,), lambda: index_annotations(ann_path))
    ((result, fresh),) = cache.run([index_job], 1, bar)
    report.files += 1
    report.decoded += fresh
    if "problem" in result:
        report.add(ann_path, result["problem"])
        return
    index = result["info"]
    report.problems += [Problem(str(ann_path), m) for m in index["problems"]]
    wanted = (
        sorted({n for ns in names.values() for n in ns})
        if names is not None
        else sorted(index["images"])
    )
    jobs, sizes = [], []
    for name in wanted:
        if name not in index["images"]:
            report.add(ann_path, f"image {name!r} of a split is not in {ann_path}")
            continue
        h, w, file_name = index["images"][name]
        path = image_dir / file_name
        if not path.is_file():
            report.add(path, f"image {path} of {ann_path} not found")
            continue
        jobs.append(Job(f"image:{path}", (path,), lambda p=path: inspect_image(p)))
        sizes.append([h, w])
    bar.reset(total=len(jobs))
    for job, (h, w), (got, fresh) in zip(jobs, sizes, cache.run(jobs, workers, bar), strict=True):
        report.files += 1
        report.decoded += fresh
        path = job.paths[0]
        if "problem" in got:
            report.add(path, got["problem"])
        elif got["info"]["hw"] != [h, w]:
            fh, fw = got["info"]["hw"]
            report.add(path, f"image {path} is {fh}x{fw} but {ann_path} says {h}x{w} (H x W)")


def _check_nifti(root, info, cache, report, bar, workers) -> None:
    try:
        settings = slice_settings(info, str(root / "dataset.json"))
        cases, _ = nifti_cases(root)
    except (ValueError, OSError) as exc:
        report.add(root, str(exc))
        return
    channel = settings["channel"]
    jobs = [
        Job(f"case:{image}|{label}|channel={channel}", (image, label),
            lambda i=image, m=label: check_case(i, m, channel))
        for image, label in cases.values()
    ]  # fmt: skip
    bar.reset(total=len(jobs))
    for job, (result, fresh) in zip(jobs, cache.run(jobs, workers, bar), strict=True):
        report.files += 2
        report.decoded += 2 * fresh
        if "problem" in result:
            report.add(job.paths[0], result["problem"])


def validate_dataset(
    root: str | os.PathLike,
    splits: Sequence[str] | None = None,
    format: str | None = None,
    progress: bool = False,
    use_cache: bool = True,
    workers: int | None = None,
) -> ValidationReport:
    """Check the dataset at ``root`` for ``splits`` (all split files when None); returns the
    report with every problem (see the module docstring), raising nothing for bad files.

    ``workers`` threads decode (default: up to 8, one per CPU core)."""
    start = time.perf_counter()
    root = Path(root)
    report = ValidationReport(root, format or "?", list(splits) if splits is not None else None)
    if not root.is_dir():
        report.add(root, f"dataset folder not found: {root}")
        return report
    info = _check_info(root, report)
    fmt = format or info.get("format", "folder")
    report.format = fmt
    if fmt not in FORMATS:
        report.add(root, f"unknown dataset format {fmt!r}; expected one of {FORMATS}")
        return report
    names = _split_names(root, list(splits) if splits is not None else None, report)
    cache = _Cache(root, use_cache)
    with tqdm(desc=f"checking {root.name}", unit="file", disable=not progress, leave=False) as bar:
        workers = workers or min(8, os.cpu_count() or 1)
        if fmt == "folder":
            _check_folder(root, names, cache, report, bar, workers)
        elif fmt == "coco":
            _check_coco(root, info, names, cache, report, bar, workers)
        else:
            _check_nifti(root, info, cache, report, bar, workers)
    cache.save()
    report.problems.sort(key=lambda p: (p.path, p.message))
    report.seconds = time.perf_counter() - start
    return report


def require_valid_dataset(
    root: str | os.PathLike,
    splits: Sequence[str] | None = None,
    format: str | None = None,
    progress: bool = False,
) -> ValidationReport:
    """``validate_dataset``, raising DatasetError (every problem, up to 100 lines) if any."""
    report = validate_dataset(root, splits, format, progress)
    if not report.ok:
        raise DatasetError(report.text(limit=100))
    return report

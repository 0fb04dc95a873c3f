"""Command line: ``python -m cobot_lib.data check ROOT [--split S ...] [--format F]`` and
``python -m cobot_lib.data prepare [DOMAIN ...] [--out DIR] [--seed N]``.

``check`` decodes every image and mask of the dataset at ROOT once
(``validation.validate_dataset``) and lists every bad file with what is wrong. ROOT may be
``demo:nuclei`` or ``demo:mri``. Exit status: 0 no problems, 1 problems found, 2 bad usage.

``prepare`` renders the benchmark's synthetic domains (``domains``; default: all of them) into
``DIR/<domain>`` (default ``<data dir>/benchmark``), replacing what is there.
"""

from __future__ import annotations

import argparse
import sys

from .demo import ensure_demo_data
from .domains import DOMAINS, domain_root, write_domain
from .layout import FORMATS
from .validation import validate_dataset


def main(argv: list[str] | None = None) -> int:
    """CLI: check a dataset folder before training or evaluating on it."""
    parser = argparse.ArgumentParser(prog="python -m cobot_lib.data", description=main.__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="decode every image and mask, list bad files")
    check.add_argument("root", help="dataset folder (images/, masks/, splits/) or demo:NAME")
    check.add_argument(
        "--split", action="append", help="split to check (repeatable; default: every split file)"
    )
    check.add_argument("--format", choices=FORMATS, help="default: dataset.json's, else folder")
    check.add_argument("--no-cache", action="store_true", help="decode every file again")
    check.add_argument("--quiet", action="store_true", help="no progress bar")
    prepare = commands.add_parser("prepare", help="render the benchmark's synthetic domains")
    prepare.add_argument("domains", nargs="*", help=f"any of {', '.join(DOMAINS)} (default: all)")
    prepare.add_argument("--out", help="parent folder (default: <data dir>/benchmark)")
    prepare.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    args = parser.parse_args(argv)
    if args.command == "prepare":
        unknown = [d for d in args.domains if d not in DOMAINS]
        if unknown:
            parser.error(f"unknown domain(s) {unknown}; expected any of {list(DOMAINS)}")
        for name in args.domains or DOMAINS:
            root = write_domain(name, f"{args.out}/{name}" if args.out else domain_root(name),
                                args.seed)  # fmt: skip
            print(f"{name}: {root}")
        return 0
    try:
        root = ensure_demo_data(args.root[5:]) if args.root.startswith("demo:") else args.root
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report = validate_dataset(
        root, args.split, args.format, progress=not args.quiet, use_cache=not args.no_cache
    )
    print(report.text())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""Fetch the released Segment Anything checkpoints (ViT-B/L/H) and verify them.

Source: Meta AI, https://github.com/facebookresearch/segment-anything#model-checkpoints
(Apache-2.0). The files live at https://dl.fbaipublicfiles.com/segment_anything/. Meta
publishes no checksum file; the six hex digits in each file name are the start of its MD5, and
the full SHA-256 and MD5 below are the values recorded for these files by several independent
projects (e.g. micro-sam's model registry). A download is verified against both before it is
kept; ``verify`` checks a file fetched by hand.

    python data_scripts/fetch_sam_checkpoints.py                 # vit_b into the cache
    python data_scripts/fetch_sam_checkpoints.py vit_b vit_l vit_h --out /data/sam
    python data_scripts/fetch_sam_checkpoints.py --verify-only /data/sam/sam_vit_b_01ec64.pth

The default folder is <cache>/sam, with <cache> = $COBOT_CACHE or ~/.cache/cobot_lib.
Use a checkpoint with ``cobot_lib.build_sam("vit_b", checkpoint=path)``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cobot_lib.data.download import download, verify_file
from cobot_lib.files import cache_dir

BASE_URL = "https://dl.fbaipublicfiles.com/segment_anything/"
CHECKPOINTS: dict[str, dict[str, str]] = {
    "vit_b": {
        "file": "sam_vit_b_01ec64.pth",
        "sha256": "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
        "md5": "01ec64d29a2fca3f0661936605ae66f8",
    },
    "vit_l": {
        "file": "sam_vit_l_0b3195.pth",
        "sha256": "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
        "md5": "0b3195507c641ddb6910d2bb5adee89c",
    },
    "vit_h": {
        "file": "sam_vit_h_4b8939.pth",
        "sha256": "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
        "md5": "4b8939a88964f0f4ff5f5b2642c598a6",
    },
}


def url(model_type: str) -> str:
    """Official download address of a checkpoint."""
    return BASE_URL + CHECKPOINTS[_check(model_type)]["file"]


def _check(model_type: str) -> str:
    if model_type not in CHECKPOINTS:
        raise ValueError(f"unknown SAM model {model_type!r}; expected one of {list(CHECKPOINTS)}")
    return model_type


def verify(path: str | Path, model_type: str) -> Path:
    """Check that ``path`` is the released ``model_type`` checkpoint (SHA-256 and MD5)."""
    info = CHECKPOINTS[_check(model_type)]
    verify_file(path, sha256=info["sha256"], md5=info["md5"])
    return Path(path)


def fetch(model_type: str, out_dir: str | Path | None = None, progress: bool = True) -> Path:
    """Download (unless already there and verified) and return the checkpoint's path."""
    info = CHECKPOINTS[_check(model_type)]
    out_dir = Path(out_dir) if out_dir is not None else cache_dir() / "sam"
    return download(url(model_type), out_dir / info["file"], info["sha256"], info["md5"], progress)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="*", default=["vit_b"], help=f"of {list(CHECKPOINTS)}")
    parser.add_argument("--out", type=Path, default=None, help="folder (default <cache>/sam)")
    parser.add_argument(
        "--verify-only", type=Path, default=None, metavar="FILE",
        help="verify a file fetched by hand (its model is read from its name)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.verify_only is not None:
        match = [m for m, i in CHECKPOINTS.items() if i["file"] == args.verify_only.name]
        if not match:
            parser.error(f"{args.verify_only.name} is not one of the released file names")
        verify(args.verify_only, match[0])
        print(f"OK {args.verify_only} is the released {match[0]} checkpoint")
        return 0
    for model in args.models:
        if model not in CHECKPOINTS:
            parser.error(f"unknown model {model!r}; expected some of {list(CHECKPOINTS)}")
        path = fetch(model, args.out)
        print(f"OK {model}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

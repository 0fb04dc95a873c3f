#!/usr/bin/env python3
"""One entry point for a newcomer, standard library only (works on a machine with only Python).

    python3 workbook.py test   # create .venv, install everything, lint, run all tests and notebooks
    python3 workbook.py test --slow   # ... and rebuild the foundation model (~25 min on 1 thread)
    python3 workbook.py run    # create .venv, install the notebooks' packages, run the walkthrough
                               # (01 -> 07 and appendix A1, in parallel on the free CPUs)
                               # and build the book: runs/book/index.html
    python3 workbook.py setup  # only create .venv and install everything

The virtual environment lives in ./.venv; an install stamp (a hash of pyproject.toml and the
extras installed) makes a later call skip the install. pip installs with --no-compile and the
packages are then byte-compiled on all CPUs at once (``compile_packages``): 34 s on 2 cores
where pip's one-file-at-a-time compilation of torch's CUDA build takes about twice that.
Neither command pretrains: the tiny foundation model ships with the repository
(cobot_lib/backbone/weights/, checked by its card's SHA-256).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PYTHON = VENV / "bin" / "python"
STAMP = VENV / ".cobot-install-stamp"
EVERYTHING = ("notebooks", "dev")  # test and setup
NOTEBOOKS_ONLY = ("notebooks",)  # run: no test tools, linters or browser drivers


def say(message: str) -> None:
    print(f"[workbook] {message}", flush=True)


def run(*args: str | os.PathLike, env: dict | None = None) -> None:
    say(" ".join(str(a) for a in args))
    result = subprocess.run([str(a) for a in args], cwd=ROOT, env={**os.environ, **(env or {})})
    if result.returncode:
        sys.exit(result.returncode)


def installed_extras(wanted_hash: str) -> set[str]:
    """The extras the stamp says are installed for this pyproject.toml (none if it changed)."""
    if not (PYTHON.exists() and STAMP.exists()):
        return set()
    digest, _, extras = STAMP.read_text().strip().partition(" ")
    return set(extras.split(",")) if digest == wanted_hash and extras else set()


def compile_packages() -> None:
    """Byte-compile the installed packages on every CPU at once (pip compiles one file after
    another). Without .pyc files every kernel, worker and test subprocess compiles torch again
    when PYTHONDONTWRITEBYTECODE is set, as on this project's machines. A file that is not
    valid Python 3 (a template some package ships) is skipped, as pip skips it."""
    purelib = subprocess.run(
        [str(PYTHON), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    say(f"byte-compiling {purelib}")
    subprocess.run([str(PYTHON), "-m", "compileall", "-q", "-j", "0", purelib],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)  # fmt: skip


def setup(extras: tuple[str, ...] = EVERYTHING) -> None:
    """Create .venv and install the package with ``extras`` (skipped when already there)."""
    if sys.version_info < (3, 10):  # noqa: UP036 (this file runs before any install)
        sys.exit(f"Python >= 3.10 is needed, this is {sys.version.split()[0]}")
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    have = installed_extras(wanted)
    if set(extras) <= have:
        say("environment is up to date (.venv)")
        return
    start = time.time()
    if not PYTHON.exists():
        say("creating .venv")
        venv.create(VENV, with_pip=True)
    both = sorted(have | set(extras))
    run(PYTHON, "-m", "pip", "install", "--quiet", "--no-compile", "-e", f".[{','.join(both)}]")
    compile_packages()
    run(PYTHON, "-m", "ipykernel", "install", "--sys-prefix", "--name", "python3")
    STAMP.write_text(f"{wanted} {','.join(both)}")
    say(f"installed in {time.time() - start:.0f} s")


def ensure_browser() -> None:
    """Debian's Chromium for tests/browser and the figures' static pictures (kaleido), never a
    downloaded browser; apt-get as root."""
    if Path(os.environ.get("COBOT_CHROMIUM", "/usr/bin/chromium")).is_file():
        return
    if shutil.which("apt-get") and hasattr(os, "geteuid") and os.geteuid() == 0:
        quiet = {"DEBIAN_FRONTEND": "noninteractive"}
        run("apt-get", "update", "-qq", env=quiet)
        run("apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium", env=quiet)
    else:
        say(
            "Chromium is missing, so tests/browser fail and figures get no static pictures: "
            "install Debian's 'chromium' package"
        )


def test() -> None:
    """Lint, then pytest; ``--slow`` becomes pytest's ``--rebuild`` (the opt-in full rebuild)."""
    setup()
    run(PYTHON, "-m", "ruff", "check", ".")
    ensure_browser()
    extra = ["--rebuild" if arg == "--slow" else arg for arg in sys.argv[2:]]
    run(PYTHON, "-m", "pytest", "-p", "no:cacheprovider", *extra)


def main_job() -> None:
    setup(NOTEBOOKS_ONLY)
    ensure_browser()
    run(PYTHON, "-m", "cobot_lib.walkthrough", *sys.argv[2:])


COMMANDS = {"setup": setup, "test": test, "run": main_job}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.exit(f"usage: python3 workbook.py {{{','.join(COMMANDS)}}} [extra arguments]")
    COMMANDS[sys.argv[1]]()

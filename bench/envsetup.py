"""bench/.venv: created on first use, the peers installed from bench/requirements.txt, and
coachwhip built from this repository into it. Standard library only (runs before the venv).

Lines `# optional: REQUIREMENT -- what it needs` in requirements.txt name peers that compile C
code at install time and may fail to (bjoern without Debian's libev-dev): each is installed on
its own after the rest, retried on every run while it is missing, and a failure is reported,
not fatal; the runner then skips that server (servers.ServerSpec.module)."""

from __future__ import annotations

import datetime
import hashlib
import json
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
VENV = BENCH_DIR / ".venv"
REQUIREMENTS = BENCH_DIR / "requirements.txt"
STAMP = VENV / "bench-requirements.sha256"
BUILD_INFO = VENV / "coachwhip-build.json"  # which commit the installed coachwhip was built from
OPTIONAL = "# optional:"


def venv_python() -> Path:
    return VENV / "bin" / "python"


def in_venv() -> bool:
    return Path(sys.prefix).resolve() == VENV.resolve()


def _run(argv: list[str], log: Path) -> int:
    with log.open("ab") as out:
        out.write(f"\n$ {' '.join(argv)}\n".encode())
        out.flush()
        return subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, cwd=REPO).returncode


def _step(what: str, argv: list[str], log: Path) -> None:
    print(f"==> {what}", flush=True)
    start = time.monotonic()
    status = _run(argv, log)
    if status != 0:
        tail = "\n    ".join(log.read_text(errors="replace").splitlines()[-20:])
        sys.exit(f"bench: {what} failed (status {status}); log {log}:\n    {tail}")
    print(f"    done in {time.monotonic() - start:.1f} s", flush=True)


def optional_requirements() -> list[tuple[str, str]]:
    """(requirement, what it needs) for each `# optional:` line of requirements.txt."""
    found = []
    for line in REQUIREMENTS.read_text().splitlines():
        if line.startswith(OPTIONAL):
            requirement, _, needs = line.removeprefix(OPTIONAL).partition(" -- ")
            found.append((requirement.strip(), needs.strip()))
    return found


def _installed(distribution: str) -> bool:
    probe = f"import importlib.metadata as m; m.version({distribution!r})"
    return subprocess.run([str(venv_python()), "-c", probe], capture_output=True).returncode == 0


def _ensure_optional(pip: list[str], log: Path) -> None:
    """Install each optional peer that is missing; report, but carry on after, a failure."""
    for requirement, needs in optional_requirements():
        name = requirement.split("==")[0].split(">")[0].split("<")[0].strip()
        if _installed(name):
            continue
        print(f"==> installing the optional peer {requirement}", flush=True)
        start = time.monotonic()
        if _run([*pip, "install", "-q", requirement], log) == 0:
            print(f"    done in {time.monotonic() - start:.1f} s", flush=True)
        else:
            print(
                f"    bench: WARNING: {requirement} did not install ({needs}; log {log}); "
                f"its server is skipped. It is retried on the next run",
                flush=True,
            )


def ensure(log: Path, build: bool = True) -> None:
    """Create the venv if missing, install the peers if the requirements changed since the last
    install, and (unless `build` is false) rebuild coachwhip from the working tree."""
    pip = [str(venv_python()), "-m", "pip", "--disable-pip-version-check"]
    if not venv_python().exists():
        _step(f"creating {VENV}", [sys.executable, "-m", "venv", str(VENV)], log)
    wanted = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    if not STAMP.exists() or STAMP.read_text().strip() != wanted:
        _step(
            "installing the peers (bench/requirements.txt)",
            [*pip, "install", "-q", "-r", str(REQUIREMENTS)],
            log,
        )
        STAMP.write_text(wanted + "\n")
    _ensure_optional(pip, log)
    if build:
        source = _source_state()
        # A build directory of its own, so a concurrent developer build in build/ is untouched.
        tag = f"bench-{sysconfig.get_platform()}-{sys.implementation.cache_tag}"
        _step(
            "building coachwhip from the repository",
            [
                *pip,
                "install",
                "-q",
                "--no-build-isolation",
                "--no-deps",
                "--force-reinstall",
                f"--config-settings=build-dir={REPO / 'build' / tag}",
                str(REPO),
            ],
            log,
        )
        BUILD_INFO.write_text(json.dumps(source) + "\n")


def _git(*args: str) -> str:
    try:
        run = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True)
    except OSError:  # no git: the stamp says "unknown"
        return ""
    return run.stdout.strip() if run.returncode == 0 else ""


def _source_state() -> dict[str, object]:
    """The commit coachwhip is being built from, and whether its sources differ from it."""
    changed = _git(
        "status", "--porcelain", "--", "src", "python", "CMakeLists.txt", "pyproject.toml"
    )
    return {
        "commit": _git("rev-parse", "--short", "HEAD") or "unknown",
        "uncommitted_changes": bool(changed),
        "built": datetime.datetime.now().isoformat(timespec="seconds"),
    }

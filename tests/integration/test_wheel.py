"""Installable wheels (docs/installation.md): one libzmq per process, and a wheel
that installs and serves with no compiler and no system libzmq.

tmn._core links the libzmq inside pyzmq's wheel. The first two tests read
/proc/PID/maps of real processes (one importing tmn._core and zmq, one running
tmn-serve on loopback) and require exactly one mapped libzmq file: the one
pyzmq loads. The slow tests take the release wheel ($TMN_WHEEL, or built here
with .ci/build-wheel: pip wheel, then auditwheel repair), check its tag and
what its core links, install it into a fresh virtualenv whose PATH has no
compiler and no cmake (pip may take binary wheels only), and run that venv's
tmn-serve, with the system's libzmq hidden, and a client against it.
"""

from __future__ import annotations

import glob
import io
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from serve_daemon import DaemonFactory, free_tcp_endpoint, running_daemons, start_daemon

ROOT = Path(__file__).resolve().parents[2]
COMPILERS = ("gcc", "g++", "cc", "c++", "clang", "clang++", "cmake", "ninja", "make")


def libzmq_files(maps: str) -> set[str]:
    """The libzmq files (any copy: system, pyzmq's, vendored) in a /proc/PID/maps text."""
    rows = (line.split(maxsplit=5) for line in maps.splitlines())
    return {row[5] for row in rows if len(row) == 6 and Path(row[5]).name.startswith("libzmq")}


def mapped_libzmq(pid: int | str) -> set[str]:
    """The libzmq files mapped into a running process."""
    return libzmq_files(Path(f"/proc/{pid}/maps").read_text())


def maps_after(python: str, code: str) -> str:
    """/proc/self/maps of a fresh ``python -c code``, read at its end."""
    proc = subprocess.run([python, "-c", f"{code}; print(open('/proc/self/maps').read())"],
                          capture_output=True, text=True, timeout=60, check=True)
    return proc.stdout


@pytest.fixture(scope="module")
def pyzmq_libzmq() -> str:
    """The libzmq file that pyzmq alone maps (a process that never imports tmn)."""
    files = libzmq_files(maps_after(sys.executable, "import zmq; zmq.Context().term()"))
    assert len(files) == 1, f"pyzmq alone maps {sorted(files)}"
    return files.pop()


@pytest.mark.parametrize("imports", ["import tmn._core, zmq; zmq.Context().term()",
                                     "import zmq, tmn._core; zmq.Context().term()"])
def test_tmn_core_and_zmq_in_one_process_map_one_libzmq(imports: str, pyzmq_libzmq: str
                                                        ) -> None:
    files = libzmq_files(maps_after(sys.executable, imports))
    assert files == {pyzmq_libzmq}, f"{imports!r} mapped {sorted(files)}"


def test_a_running_tmn_serve_maps_one_libzmq_the_one_pyzmq_ships(serve: DaemonFactory,
                                                                 pyzmq_libzmq: str) -> None:
    d = serve(None)  # the built-in model, loopback
    with d.client() as c:
        assert c.health()["status"] == "serving"
    assert mapped_libzmq(d.proc.pid) == {pyzmq_libzmq}


def pinned_pyzmq() -> tuple[str, str]:
    """The pyzmq requirement of the build and of the runtime, from pyproject.toml."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    build = [r for r in project["build-system"]["requires"] if r.startswith("pyzmq")]
    runtime = [r for r in project["project"]["dependencies"] if r.startswith("pyzmq")]
    assert len(build) == 1 and len(runtime) == 1, (build, runtime)
    return build[0], runtime[0]


def test_the_build_and_the_runtime_pin_the_same_pyzmq() -> None:
    """_core names the libzmq file of the pyzmq it was built with: the wheel must
    require exactly that pyzmq."""
    build, runtime = pinned_pyzmq()
    assert build == runtime and "==" in build, (build, runtime)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The release wheel: $TMN_WHEEL (CI builds it once with .ci/build-wheel and
    tests against it), else built here the same way (a few minutes the first
    time; build/wheel-test keeps the objects for the next run)."""
    given = os.environ.get("TMN_WHEEL")
    if given:
        assert Path(given).is_file(), f"TMN_WHEEL={given} is not a file"
        return Path(given)
    out = tmp_path_factory.mktemp("wheelhouse")
    proc = subprocess.run([str(ROOT / ".ci" / "build-wheel"), str(out),
                           "-C", "build-dir=build/wheel-test"],
                          env={**os.environ, "PYTHON": sys.executable},
                          capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, f".ci/build-wheel failed:\n{proc.stdout}\n{proc.stderr}"
    return Path(proc.stdout.split()[-1])


@pytest.mark.slow
def test_the_wheel_is_manylinux_and_needs_no_system_libzmq(wheel: Path) -> None:
    from elftools.elf.dynamic import DynamicSection
    from elftools.elf.elffile import ELFFile

    platform = wheel.name.removesuffix(".whl").split("-")[-1]
    assert platform.startswith("manylinux_2_") and platform.endswith("_x86_64"), wheel.name
    with zipfile.ZipFile(wheel) as zf:
        modules = [n for n in zf.namelist() if n.endswith(".so")]
        assert modules == [m for m in modules if m.startswith("tmn/_core.")], modules
        with zf.open(modules[0]) as f:
            dynamic = next(s for s in ELFFile(io.BytesIO(f.read())).iter_sections()
                           if isinstance(s, DynamicSection))
    needed = [t.needed for t in dynamic.iter_tags("DT_NEEDED")]
    runpath = [t.runpath for t in dynamic.iter_tags("DT_RUNPATH")]
    zmq_needed = [n for n in needed if "zmq" in n]
    # pyzmq's copy has a hashed name (libzmq-<hash>.so...), the system's is libzmq.so.5
    assert len(zmq_needed) == 1 and zmq_needed[0].startswith("libzmq-"), needed
    assert runpath == ["$ORIGIN/../pyzmq.libs"], runpath


def system_libzmq() -> list[str]:
    """Every libzmq file the loader could find outside a virtualenv: its cache
    (``ldconfig -p``) and the usual library folders."""
    found = {p for pattern in ("/usr/lib/*/libzmq.so*", "/usr/lib/libzmq.so*",
                               "/usr/local/lib/libzmq.so*") for p in glob.glob(pattern)}
    ldconfig = shutil.which("ldconfig") or "/sbin/ldconfig"
    if os.path.exists(ldconfig):
        cache = subprocess.run([ldconfig, "-p"], capture_output=True, text=True, timeout=30)
        found |= {line.rsplit("=> ", 1)[1] for line in cache.stdout.splitlines()
                  if "libzmq" in line and "=> " in line}
    return sorted({os.path.realpath(p) for p in found})


def hiding(files: list[str]) -> list[str]:
    """A command prefix that runs a command in a private mount namespace where
    ``files`` are /dev/null (so the loader cannot use them), or [] where this
    process may not make one (then the maps alone show which file is used)."""
    unshare, mount = shutil.which("unshare"), shutil.which("mount")
    if not files or unshare is None or mount is None:
        return []
    if subprocess.run([unshare, "--mount", "true"], capture_output=True, timeout=30).returncode:
        return []
    script = f'for f in "$@"; do [ "$f" = -- ] && break; {mount} --bind /dev/null "$f"; done; ' \
             'while [ "$1" != -- ]; do shift; done; shift; exec "$@"'
    return [unshare, "--mount", "/bin/sh", "-c", script, "sh", *files, "--"]


@pytest.mark.slow
def test_the_wheel_installs_and_serves_in_a_fresh_venv_without_compiler_or_system_libzmq(
        wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    bin_dir = venv / "bin"
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PYTHONUSERBASE")}
    env["PATH"] = str(bin_dir)  # nothing else: no compiler, no cmake
    assert [c for c in COMPILERS if shutil.which(c, path=env["PATH"])] == []
    # binary wheels only: pip may not build anything, tmn or a dependency
    install = subprocess.run([str(bin_dir / "python"), "-m", "pip", "install", "-q",
                              "--only-binary", ":all:", str(wheel)],
                             env=env, capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stdout + install.stderr

    site = Path(subprocess.run([str(bin_dir / "python"), "-c",
                                "import sysconfig; print(sysconfig.get_paths()['platlib'])"],
                               env=env, capture_output=True, text=True, check=True,
                               timeout=60).stdout.strip())
    venv_libzmq = [str(p) for p in (site / "pyzmq.libs").glob("libzmq*.so*")]
    assert len(venv_libzmq) == 1, f"the venv's pyzmq bundles {venv_libzmq}"

    hidden = system_libzmq()
    prefix = hiding(hidden)
    if prefix:  # the hiding works: the system's libzmq cannot be loaded behind it
        probe = subprocess.run([*prefix, str(bin_dir / "python"), "-c",
                                "import ctypes; ctypes.CDLL('libzmq.so.5')"],
                               env=env, capture_output=True, text=True, timeout=60)
        assert probe.returncode != 0, f"{hidden} still loadable behind the mount namespace"

    with running_daemons() as started:
        d = start_daemon(None, log_dir=tmp_path / "logs", endpoint=free_tcp_endpoint(),
                         launcher=[*prefix, str(bin_dir / "tmn-serve")])
        started.append(d)
        maps = Path(f"/proc/{d.proc.pid}/maps").read_text()
        assert str(site / "tmn" / "_core.") in maps, "the daemon does not run the wheel's tmn"
        assert libzmq_files(maps) == set(venv_libzmq), d.log()
        demo = subprocess.run([*prefix, str(bin_dir / "tmn-client"), "--endpoint", d.endpoint,
                               "demo", "--seconds", "1", "--rate", "max"],
                              env=env, capture_output=True, text=True, timeout=120)
        assert demo.returncode == 0, demo.stdout + demo.stderr
        assert "pass" in demo.stdout and "live accuracy at 500 ms" in demo.stdout, demo.stdout
    print(f"{wheel.name}: served from a fresh venv; system libzmq "
          f"{'hidden: ' + ', '.join(hidden) if prefix else 'not hidden (no mount namespace)'}")

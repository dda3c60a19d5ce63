"""Issue 30, item 7, the install scripts: the wheelhouse script never deletes a folder the user named, and the
Windows bundle carries the Visual C++ runtime onnxruntime needs."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ROOT

SCRIPT = ROOT / "scripts" / "make_wheelhouse.sh"
MARKER = ".hematovision-wheelhouse"
#: pip as the script calls it, without the network: `pip wheel -w OUT` leaves the app's wheel, `pip download -d OUT`
#: one dependency's; every call is logged
FAKE_PYTHON = """#!/usr/bin/env bash
echo "$@" >> "$FAKE_PIP_LOG"
command=$3  # python3 -m pip COMMAND ...
out=""
while [ $# -gt 0 ]; do
  case "$1" in -w|-d) out=$2; shift ;; esac
  shift
done
case "$command" in
  wheel) touch "$out/hematovision-9.9.9-py3-none-any.whl" ;;
  download) touch "$out/numpy-2.0.0-cp311-cp311-win_amd64.whl" ;;
esac
"""

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="the script needs bash")


def _wheelhouse(tmp_path: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "python3"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", FAKE_PIP_LOG=str(tmp_path / "pip.log"))
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, cwd=cwd or tmp_path, env=env, timeout=60)


def test_a_folder_with_other_files_is_refused_and_left_whole(tmp_path):
    """Break: `make_wheelhouse.sh OUT` ran `rm -rf OUT`; a USB stick's folder lost a file."""
    stick = tmp_path / "usb"
    stick.mkdir()
    (stick / "patient-list.xlsx").write_bytes(b"kept")
    (stick / "old.whl").write_bytes(b"a wheel of the user's")
    r = _wheelhouse(tmp_path, str(stick), "win_amd64", "3.11")
    assert r.returncode == 2
    assert "not a wheelhouse made by this script" in r.stderr and "patient-list.xlsx" in r.stderr
    assert sorted(p.name for p in stick.iterdir()) == ["old.whl", "patient-list.xlsx"]
    assert (stick / "patient-list.xlsx").read_bytes() == b"kept"
    assert not (tmp_path / "pip.log").exists()  # refused before anything was built or fetched


def test_a_file_named_as_out_is_refused(tmp_path):
    target = tmp_path / "wheelhouse-win"
    target.write_text("not a folder")
    r = _wheelhouse(tmp_path, str(target))
    assert r.returncode == 2 and "is not a folder" in r.stderr
    assert target.read_text() == "not a folder"


def test_a_new_folder_becomes_a_marked_wheelhouse_and_is_refilled_in_place(tmp_path):
    out = tmp_path / "wheelhouse-win"
    r = _wheelhouse(tmp_path, str(out), "win_amd64", "3.11")
    assert r.returncode == 0, r.stderr
    assert (out / MARKER).is_file()
    assert {p.name for p in out.glob("*.whl")} == {"hematovision-9.9.9-py3-none-any.whl", "numpy-2.0.0-cp311-cp311-win_amd64.whl"}
    assert "--platform win_amd64 --python-version 3.11" in (tmp_path / "pip.log").read_text()
    # run again: the same folder, its old wheels replaced, what the user added beside them kept
    (out / "numpy-1.0.0-cp311-cp311-win_amd64.whl").write_bytes(b"stale")
    (out / "README.txt").write_text("for the clinic")
    r = _wheelhouse(tmp_path, str(out), "win_amd64", "3.11")
    assert r.returncode == 0, r.stderr
    assert not (out / "numpy-1.0.0-cp311-cp311-win_amd64.whl").exists()
    assert (out / "README.txt").read_text() == "for the clinic"
    assert "2 wheels" in r.stdout


def test_an_empty_folder_and_an_unmarked_wheelhouse_are_used(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _wheelhouse(tmp_path, str(empty)).returncode == 0
    earlier = tmp_path / "earlier"  # made by this script before it left a marker
    earlier.mkdir()
    (earlier / "hematovision-1.3.0-py3-none-any.whl").write_bytes(b"old")
    (earlier / "pillow-10.0.0-cp311-cp311-win_amd64.whl").write_bytes(b"old")
    r = _wheelhouse(tmp_path, str(earlier))
    assert r.returncode == 0, r.stderr
    assert {p.name for p in earlier.iterdir()} == {
        MARKER,
        "hematovision-9.9.9-py3-none-any.whl",
        "numpy-2.0.0-cp311-cp311-win_amd64.whl",
    }


def test_a_relative_out_is_where_the_script_was_run(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    r = _wheelhouse(tmp_path, "wh", cwd=work)
    assert r.returncode == 0, r.stderr
    assert (work / "wh" / MARKER).is_file() and not (ROOT / "wh").exists()


# ---------------------------------------------------------------------------------------------- build.spec


def _spec_function(name: str):
    """A function of build.spec (PyInstaller executes the file; here only the function and the names it uses)."""
    tree = ast.parse((ROOT / "build.spec").read_text(encoding="utf-8"))
    wanted = [
        node
        for node in tree.body
        if (isinstance(node, ast.FunctionDef) and node.name == name)
        or (isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "VC_RUNTIME_DLLS" for t in node.targets))
    ]
    namespace = {"sys": sys, "os": os, "Path": Path}
    exec(compile(ast.Module(body=wanted, type_ignores=[]), "build.spec", "exec"), namespace)  # noqa: S102
    return namespace[name], tree


def test_the_windows_bundle_carries_the_visual_cpp_runtime(tmp_path):
    """Break: the bundle did not carry the Visual C++ runtime a fresh Windows PC lacks ("DLL load failed")."""
    vc_runtime_binaries, tree = _spec_function("vc_runtime_binaries")
    python_dir, system32 = tmp_path / "Python311", tmp_path / "System32"
    python_dir.mkdir()
    system32.mkdir()
    for name in ("vcruntime140.dll", "vcruntime140_1.dll"):
        (python_dir / name).write_bytes(b"python's")
    for name in ("msvcp140.dll", "msvcp140_1.dll", "vcruntime140.dll", "vcruntime140_1.dll"):
        (system32 / name).write_bytes(b"system")
    found = dict(vc_runtime_binaries("win32", [python_dir, system32]))
    assert set(found.values()) == {"."}  # beside the executable, where Windows looks first
    assert {Path(p).name: Path(p).parent for p in found} == {
        "msvcp140.dll": system32,
        "msvcp140_1.dll": system32,
        "vcruntime140.dll": python_dir,
        "vcruntime140_1.dll": python_dir,
    }
    assert vc_runtime_binaries("linux", [python_dir, system32]) == []
    assert vc_runtime_binaries("darwin", [python_dir, system32]) == []
    analysis = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "Analysis")
    binaries = next(k.value for k in analysis.keywords if k.arg == "binaries")
    assert isinstance(binaries, ast.Call) and binaries.func.id == "vc_runtime_binaries"  # the bundle uses them


def test_the_quick_start_names_the_visual_cpp_runtime_on_both_windows_routes():
    """Break: the Windows route never said that onnxruntime needs a current Visual C++ runtime."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    quick = readme.split("## Quick start on a clinic PC", 1)[1].split("\n## ", 1)[0]
    route1, route2 = quick.split("**Route 2", 1)
    name = "Microsoft Visual C++ Redistributable for Visual Studio 2015-2022 (x64)"
    for route in (route1.split("- *Windows*", 1)[1].split("- *macOS*", 1)[0], route2):
        assert name in " ".join(route.split()) and "DLL load failed" in route

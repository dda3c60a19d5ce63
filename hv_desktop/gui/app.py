"""Start the desktop app: logging to a file, a dialog for any unexpected error,
the autosaved session restored, and the ``--screenshot`` mode used by docs and CI."""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
import traceback
from pathlib import Path
from types import TracebackType
from typing import cast

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QMessageBox

from hv_desktop.core.system.appdata import data_dir as core_data_dir

log = logging.getLogger("hematovision")


def data_dir() -> Path:
    """The one per-user folder for the autosaved session, site models and logs ($HV_DATA_DIR overrides):
    Linux ~/.local/share/HematoVision, Windows %LOCALAPPDATA%\\HematoVision, macOS
    ~/Library/Application Support/HematoVision. (Before 1.3 it was .../HematoVision/HematoVision: moved once.)"""
    if os.environ.get("HV_DATA_DIR"):
        return core_data_dir()
    folder = core_data_dir()  # the command line's folder too (its case archive is the window's)
    old = folder / "HematoVision"
    if old.is_dir() and not (folder / "autosave.json").exists():
        try:
            for item in old.iterdir():
                target = folder / item.name
                if not target.exists():
                    item.rename(target)
            old.rmdir()
        except OSError:
            pass  # left where it is; nothing is lost
    return folder


def setup_logging(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "hematovision.log"
    handler = logging.handlers.RotatingFileHandler(path, maxBytes=1_000_000, backupCount=3, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    return path


def install_excepthook(log_path: Path) -> None:
    """An unexpected exception becomes a log entry and a dialog, never a vanished window."""

    def hook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        text = "".join(traceback.format_exception(exc_type, exc, tb))
        log.error("unexpected error\n%s", text)
        if QApplication.instance() is not None and not os.environ.get("HV_NO_ERROR_DIALOG"):
            QMessageBox.critical(
                None,
                "Unexpected error",
                f"{exc_type.__name__}: {exc}\n\nYour work is autosaved. Details were written to\n{log_path}",
            )

    sys.excepthook = hook


#: Debian/Ubuntu packages for the libraries Qt's X11 plugin loads (soname -> package).
_PACKAGES = {
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-xinerama.so.0": "libxcb-xinerama0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-util.so.1": "libxcb-util1",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libxcb.so.1": "libxcb1",
    "libEGL.so.1": "libegl1",
    "libGL.so.1": "libgl1",
    "libOpenGL.so.0": "libopengl0",
    "libfontconfig.so.1": "libfontconfig1",
    "libdbus-1.so.3": "libdbus-1-3",
    "libSM.so.6": "libsm6",
    "libICE.so.6": "libice6",
    "libX11.so.6": "libx11-6",
}


def _qt_dir() -> Path:
    import PySide6

    return Path(PySide6.__file__).resolve().parent / "Qt"


def missing_linux_libraries() -> list[str]:
    """Shared libraries Qt's X11 platform plugin needs and cannot find (sonames; [] when all load).

    Why: without them Qt aborts with "could not load the Qt platform plugin xcb ... xcb-cursor0 is needed",
    naming the wrong library. The plugin and its Qt library are asked directly (ldd), so every missing one
    is named at once."""
    import shutil
    import subprocess

    ldd = shutil.which("ldd")
    qt = _qt_dir()
    targets = [qt / "plugins" / "platforms" / "libqxcb.so", *sorted((qt / "lib").glob("libQt6XcbQpa.so*"))[:1]]
    missing: list[str] = []
    if ldd is None:
        return missing
    for t in targets:
        if not t.exists():
            continue
        try:
            out = subprocess.run([ldd, str(t)], capture_output=True, text=True, timeout=20).stdout
        except (OSError, subprocess.SubprocessError):
            continue
        for line in out.splitlines():
            if "not found" in line:
                name = line.split("=>")[0].strip()
                if name and name not in missing:
                    missing.append(name)
    return missing


def _x_display_reachable(display: str) -> bool:
    """Whether a local X display (":0", "unix:0.0") has its socket; remote displays are left to Qt."""
    import re
    import socket

    m = re.fullmatch(r"(?:unix)?:(\d+)(?:\.\d+)?", display)
    if not m:
        return True
    path = f"/tmp/.X11-unix/X{m.group(1)}"
    for address in (path, "\0" + path):  # the file, or Linux's abstract socket of the same name
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(2)
        try:
            s.connect(address)
            return True
        except OSError:
            continue
        finally:
            s.close()
    return False


def platform_problem(screenshot: bool = False) -> str | None:
    """Why the window cannot open here, in one line naming what is missing (None: it can).

    Checked before Qt starts, because Qt's own failure is an abort (exit 134) with a misleading message.
    A screenshot run needs no display: it is switched to Qt's offscreen platform instead."""
    if not sys.platform.startswith("linux") or os.environ.get("QT_QPA_PLATFORM"):
        return None
    display, wayland = os.environ.get("DISPLAY"), os.environ.get("WAYLAND_DISPLAY")
    if screenshot and (not display or not _x_display_reachable(display)) and not wayland:
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
        return None
    if not display and not wayland:
        return (
            "no display to open the window on (DISPLAY and WAYLAND_DISPLAY are not set); run it on the "
            "desktop, or use 'hematovision classify' for work without a window"
        )
    if wayland and not display:
        return None
    if not _x_display_reachable(display or ""):
        return f"cannot connect to the display {display} (is the desktop session running?)"
    missing = missing_linux_libraries()
    if missing:
        packages = sorted({_PACKAGES.get(m, m) for m in missing})
        return (
            f"the window needs system libraries that are missing: {', '.join(missing)} "
            f"(Debian/Ubuntu: sudo apt install {' '.join(packages)}); 'hematovision classify' works without them"
        )
    return None


def _application() -> QApplication:
    """The one QApplication (a caller's, e.g. pytest-qt's, or a new one), named, styled and with the app's icon."""
    from hv_desktop.core.system.resources import app_icon_path

    # instance() is typed as QCoreApplication; here it can only be the QApplication made below or by a caller
    app = cast(QApplication, QApplication.instance()) or QApplication(sys.argv[:1])
    app.setApplicationName("HematoVision")
    app.setStyle("Fusion")  # the same look on every platform and desktop theme
    icon = app_icon_path()
    if icon.exists():
        from PySide6.QtGui import QIcon

        app.setWindowIcon(QIcon(str(icon)))
    app.setOrganizationName("HematoVision")
    return app


def run_gui(paths: list[str] | None = None, model_path: Path | None = None, screenshot: Path | None = None) -> int:
    from hv_desktop.core.system.runtime import configure_process

    configure_process()
    problem = platform_problem(screenshot=screenshot is not None)
    if problem:
        print(f"hematovision: {problem}", file=sys.stderr)
        return 1
    from hv_desktop.gui.main_window import MainWindow

    app = _application()
    from hv_desktop.core.inference.model import runtime_problem

    missing = runtime_problem()  # e.g. a Windows PC without a current Visual C++ runtime: say what to install
    if missing:
        print(f"hematovision: {missing}", file=sys.stderr)
        QMessageBox.critical(None, "HematoVision cannot start", missing[0].upper() + missing[1:])
        return 1
    folder = data_dir()
    log_path = setup_logging(folder)
    install_excepthook(log_path)
    window = MainWindow(model_path=model_path, autosave_path=folder / "autosave.json", restore=screenshot is None)
    window.show()
    if window.model is None and screenshot is None:
        QMessageBox.critical(
            window,
            "No model",
            window.statusBar().currentMessage() + "\n\nUse File ▸ Load Model… to choose a HematoVision .onnx file.",
        )

    if screenshot is not None:
        window.autosave_path = None  # a screenshot run must not replace the user's session

        def shoot() -> None:
            app.processEvents()
            window.grab().save(str(screenshot))
            app.quit()

        def start() -> None:
            if paths and window.model is not None:
                window.runFinished.connect(lambda: QTimer.singleShot(300, shoot))
                window.classify([Path(p) for p in paths])
            else:
                QTimer.singleShot(300, shoot)

        QTimer.singleShot(0, start)
        QTimer.singleShot(600_000, app.quit)  # never hang a script
    elif paths:
        QTimer.singleShot(0, lambda: window.classify([Path(p) for p in paths]))
    code = app.exec()
    return code

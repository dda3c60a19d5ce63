"""Start the desktop app: logging to a file, a dialog for any unexpected error,
the autosaved session restored, and the ``--screenshot`` mode used by docs and CI."""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
import traceback
from pathlib import Path

from PySide6.QtCore import QStandardPaths, QTimer
from PySide6.QtWidgets import QApplication, QMessageBox

log = logging.getLogger("hematovision")


def data_dir() -> Path:
    """Per-user folder for the autosaved session and logs ($HV_DATA_DIR overrides)."""
    env = os.environ.get("HV_DATA_DIR")
    if env:
        return Path(env)
    loc = QStandardPaths.writableLocation(QStandardPaths.AppDataLocation)
    return Path(loc) if loc else Path.home() / ".hematovision"


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

    def hook(exc_type, exc, tb):
        text = "".join(traceback.format_exception(exc_type, exc, tb))
        log.error("unexpected error\n%s", text)
        if QApplication.instance() is not None and not os.environ.get("HV_NO_ERROR_DIALOG"):
            QMessageBox.critical(None, "Unexpected error",
                                 f"{exc_type.__name__}: {exc}\n\nYour work is autosaved. Details were written to\n{log_path}")

    sys.excepthook = hook


def missing_linux_libraries() -> list[str]:
    """System libraries Qt's X11 plugin needs but pip cannot install (Qt would abort without a word)."""
    if not sys.platform.startswith("linux") or not os.environ.get("DISPLAY"):
        return []
    if os.environ.get("QT_QPA_PLATFORM") or os.environ.get("WAYLAND_DISPLAY"):
        return []
    import ctypes.util
    import glob

    bundle = getattr(sys, "_MEIPASS", None)
    missing = []
    for lib, package in (("xcb-cursor", "libxcb-cursor0"), ("xkbcommon-x11", "libxkbcommon-x11-0")):
        if ctypes.util.find_library(lib) is None and not (bundle and glob.glob(f"{bundle}/**/lib{lib}.so*",
                                                                               recursive=True)):
            missing.append(package)
    return missing


def run_gui(paths: list[str] | None = None, model_path: Path | None = None, screenshot: Path | None = None) -> int:
    missing = missing_linux_libraries()
    if missing:
        print("hematovision: the desktop app needs these system packages: " + " ".join(missing)
              + f" (e.g. sudo apt install {' '.join(missing)}); 'hematovision classify' works without them",
              file=sys.stderr)
        return 2
    from hv_desktop.gui.main_window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("HematoVision")
    app.setStyle("Fusion")  # the same look on every platform and desktop theme
    icon = Path(getattr(sys, "_MEIPASS", Path(__file__).resolve().parents[2])) / "assets" / "icons" / "hematovision.png"
    if icon.exists():
        from PySide6.QtGui import QIcon

        app.setWindowIcon(QIcon(str(icon)))
    app.setOrganizationName("HematoVision")
    folder = data_dir()
    log_path = setup_logging(folder)
    install_excepthook(log_path)
    window = MainWindow(model_path=model_path, autosave_path=folder / "autosave.json",
                        restore=screenshot is None)
    window.show()
    if window.model is None and screenshot is None:
        QMessageBox.critical(window, "No model", window.statusBar().currentMessage()
                             + "\n\nUse File ▸ Load Model… to choose a HematoVision .onnx file.")

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

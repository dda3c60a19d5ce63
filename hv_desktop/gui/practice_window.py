"""Practice mode: one cell at a time, the student answers, feedback is instant."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QKeyEvent, QPixmap
from PySide6.QtWidgets import (
    QDialog,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from hv_desktop.core.cases.practice import PracticeSession, load_practice_set
from hv_desktop.core.cases.review import key_map
from hv_desktop.core.imaging.preprocess import ImageError, normalise, open_image, resize_for_model
from hv_desktop.core.inference.heatmap import explain
from hv_desktop.core.inference.model import Model
from hv_desktop.gui.results_model import to_pixmap


class PracticeWindow(QDialog):
    def __init__(self, model: Model, folder: Path, parent: QWidget | None = None, seed: int | None = None) -> None:
        super().__init__(parent)
        self.model = model
        self.session = PracticeSession(model.labels, load_practice_set(folder, model.labels, seed=seed))
        self.setWindowTitle(f"Practice — {folder.name}")
        self.resize(900, 700)
        self.awaiting_answer = True

        self.counter = QLabel()
        self.image = QLabel()
        self.image.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.image.setMinimumSize(QSize(420, 320))
        self.feedback = QLabel("Which cell is this? Press 1–4 or E/L/M/N, or click a class.")
        self.feedback.setWordWrap(True)
        self.feedback.setStyleSheet("font-size: 15px; padding: 6px;")
        self.buttons: dict[str, QPushButton] = {}
        row = QHBoxLayout()
        for i, lab in enumerate(model.labels):
            b = QPushButton(f"{lab.capitalize()} ({i + 1}/{lab[0].upper()})")
            b.clicked.connect(lambda _=False, lab=lab: self.submit(lab))
            row.addWidget(b)
            self.buttons[lab] = b
        self.next_button = QPushButton("Next (Space)")
        self.next_button.clicked.connect(self.next_item)
        self.next_button.setEnabled(False)
        self.export_button = QPushButton("Export results CSV…")
        self.export_button.clicked.connect(lambda: self.export_csv())
        self.score_table = QTableWidget(len(model.labels), 1)
        self.score_table.setHorizontalHeaderLabels(["Correct / seen"])
        self.score_table.setVerticalHeaderLabels([lab.capitalize() for lab in model.labels])
        self.score_table.setMaximumHeight(160)
        self.score_table.horizontalHeader().setStretchLastSection(True)
        self.score_table.setFocusPolicy(Qt.FocusPolicy.NoFocus)

        layout = QVBoxLayout(self)
        layout.addWidget(self.counter)
        layout.addWidget(self.image, 1)
        layout.addWidget(self.feedback)
        layout.addLayout(row)
        bottom = QHBoxLayout()
        bottom.addWidget(self.score_table, 1)
        side = QVBoxLayout()
        side.addWidget(self.next_button)
        side.addWidget(self.export_button)
        side.addStretch(1)
        bottom.addLayout(side)
        layout.addLayout(bottom)
        self.show_item()

    # ------------------------------------------------------------------
    def show_item(self) -> None:
        cur = self.session.current()
        if cur is None:
            self.show_summary()
            return
        path, _ = cur
        self.awaiting_answer = True
        self.counter.setText(f"Cell {self.session.position + 1} of {len(self.session.items)}")
        self.feedback.setText("Which cell is this? Press 1–4 or E/L/M/N, or click a class.")
        self.feedback.setStyleSheet("font-size: 15px; padding: 6px;")
        try:
            self._image: Image.Image | None = open_image(path, draft_size=(600, 600))
            self._set_image(np.asarray(self._image))
        except ImageError as exc:
            self._image = None
            self.image.setText(f"Cannot show {path.name}: {exc}")
        for b in self.buttons.values():
            b.setEnabled(True)
        self.next_button.setEnabled(False)
        self._update_scores()

    def _set_image(self, arr: np.ndarray) -> None:
        pm: QPixmap = to_pixmap(arr)
        self.image.setPixmap(
            pm.scaled(
                self.image.size() - QSize(8, 8), Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation
            )
        )

    def submit(self, label: str) -> None:
        if not self.awaiting_answer or self.session.finished:
            return
        model_label = conf = None
        heat_img = None
        if self._image is not None:
            probs, view = explain(self.model, self._image, heat=True)  # one inference for answer and heatmap
            if probs is None:  # a model without a heatmap output
                prep = self.model.info.preprocessing
                probs = self.model.probabilities(
                    normalise(resize_for_model(self._image, self.model.input_size, prep)[None], prep)
                )[0]
            else:
                heat_img = view
            k = int(probs.argmax())
            model_label, conf = self.model.labels[k], float(probs[k])
        a = self.session.answer(label, model_label, conf)
        self.awaiting_answer = False
        verdict = "✓ Correct" if a.correct else f"✗ Not quite — this is a <b>{a.reference}</b>"
        model_text = f"The model says <b>{model_label}</b> ({conf * 100:.0f} %)" if model_label and conf is not None else ""
        self.feedback.setText(
            f"<span style='font-size: 18px;'>{verdict}</span><br>You answered {label}. {model_text}"
            + ("<br><small>Heatmap: where the model found evidence for its answer.</small>" if heat_img is not None else "")
        )
        self.feedback.setStyleSheet("font-size: 15px; padding: 6px; background: %s;" % ("#dff5df" if a.correct else "#fde2e2"))
        if heat_img is not None:
            self._set_image(np.asarray(heat_img))
        for b in self.buttons.values():
            b.setEnabled(False)
        self.next_button.setEnabled(True)
        self.next_button.setFocus()
        self._update_scores()

    def next_item(self) -> None:
        if not self.awaiting_answer:
            self.show_item()

    def _update_scores(self) -> None:
        for i, (_lab, (c, n)) in enumerate(self.session.per_class().items()):
            self.score_table.setItem(i, 0, QTableWidgetItem(f"{c} / {n}" + (f"  ({100 * c / n:.0f} %)" if n else "")))

    def show_summary(self) -> None:
        c, n = self.session.score()
        self.counter.setText(f"Finished: {c} of {n} correct ({100 * c / max(n, 1):.0f} %)")
        labels = self.model.labels
        grid = self.session.confusion()
        html = [
            "<b>Your confusion matrix</b> (rows: true class, columns: your answer)<table border=1 cellpadding=4>",
            "<tr><th></th>" + "".join(f"<th>{lab[:4]}</th>" for lab in labels) + "</tr>",
        ]
        for lab, row in zip(labels, grid, strict=True):
            html.append(f"<tr><th>{lab}</th>" + "".join(f"<td align=right>{v}</td>" for v in row) + "</tr>")
        html.append("</table>")
        self.image.setText("".join(html))
        self.feedback.setText("Export your results to keep them.")
        self.feedback.setStyleSheet("font-size: 15px; padding: 6px;")
        for b in self.buttons.values():
            b.setEnabled(False)
        self.next_button.setEnabled(False)

    def export_csv(self, path: Path | None = None) -> bool:
        if path is None:
            name, _ = QFileDialog.getSaveFileName(self, "Export practice results", "practice.csv", "CSV files (*.csv)")
            if not name:
                return False
            path = Path(name)
        try:
            self.session.to_csv(path)
        except OSError as exc:
            QMessageBox.critical(self, "Export failed", f"Could not write {path}: {exc}")
            return False
        return True

    def keyPressEvent(self, event: QKeyEvent) -> None:
        text = event.text().lower()
        if self.awaiting_answer:
            # the main window's keys for the model's classes (one definition); practice asks only those
            name = key_map(self.model.labels).get(text) if text else None
            if name in self.model.labels:
                self.submit(name)
                return
        elif event.key() in (Qt.Key.Key_Space, Qt.Key.Key_Return, Qt.Key.Key_Enter, Qt.Key.Key_Right):
            self.next_item()
            return
        super().keyPressEvent(event)

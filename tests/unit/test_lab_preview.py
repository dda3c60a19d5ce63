"""What calibrate tells a lab about its own images (core.site.lab_preview): the flags, their reasons, the mix."""

from __future__ import annotations

from hv_desktop.core.site.lab_preview import LabPreview


def test_a_lab_mostly_flagged_is_told_why_and_what_to_do():
    lines = "\n".join(LabPreview(100, 97, 90, {"neutrophil": 60, "lymphocyte": 30, "monocyte": 6, "eosinophil": 4}).lines())
    assert "flags 97 for review (97 %): 90 look unlike the training labs' cells, 7 are low confidence" in lines
    assert "look unlike those of every lab the model was trained on" in lines and "Adapt to This Lab" in lines
    assert "classes called: neutrophil 60 %, lymphocyte 30 %, monocyte 6 %, eosinophil 4 %" in lines
    assert "nearly every image" not in lines


def test_a_lab_at_home_is_not_warned():
    lines = "\n".join(LabPreview(100, 20, 12, {"neutrophil": 55, "lymphocyte": 35, "monocyte": 7, "eosinophil": 3}).lines())
    assert "flags 20 for review (20 %)" in lines and "far from every lab" not in lines and "nearly every" not in lines


def test_nearly_one_class_everywhere_is_called_a_probable_misreading():
    lines = "\n".join(LabPreview(40, 10, 10, {"eosinophil": 37, "neutrophil": 3}).lines())
    assert "nearly every image is called eosinophil" in lines
    # but not on a handful of images, which may well be one class
    assert "nearly every" not in "\n".join(LabPreview(10, 0, 0, {"eosinophil": 10}).lines())
    assert LabPreview(0, 0, 0).lines() == []


def test_a_lab_flagged_mostly_for_low_confidence_is_told_that_reason_not_the_other():
    lines = "\n".join(LabPreview(50, 40, 10, {"neutrophil": 30, "lymphocyte": 20}).lines())
    assert "unsure which cell type most of this lab's cells are" in lines and "look unlike" not in lines.split("\n", 1)[1]


def test_few_images_or_images_gone_since_measuring():
    # under the lab hint's 20 cells nothing is said about the lab as a whole, only the count
    lines = "\n".join(LabPreview(12, 12, 12, {"neutrophil": 12}).lines())
    assert "flags 12 for review (100 %)" in lines and "cannot vouch" not in lines
    assert LabPreview(0, 0, 0, {}, unread=3).lines() == [
        "3 measured image(s) could not be read again and are left out of this check"
    ]

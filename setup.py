"""The one thing pyproject.toml cannot say: the repository's assets/ (the shipped model and icon, where training
writes the model and the bundle build reads it) is installed as package data ``hv_desktop/assets``, so every
install finds them with importlib.resources (hv_desktop.core.resources). Everything else is in pyproject.toml."""

from setuptools import find_packages, setup

ASSETS = ["model/hematovision.onnx", "model/MODEL_CARD.md", "model/CHANGELOG.md", "icons/hematovision.png"]

setup(
    packages=[*find_packages(include=["hv_desktop", "hv_desktop.*"]), "hv_desktop.assets"],
    package_dir={"hv_desktop.assets": "assets"},
    package_data={"hv_desktop": ["py.typed"], "hv_desktop.assets": ASSETS},
)

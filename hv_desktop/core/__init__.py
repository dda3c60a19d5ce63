"""The Qt-free, TensorFlow-free engine every face of HematoVision uses.

The GUI, the CLI, the benchmarks and the tests all go through these modules:
``preprocess`` (pixels), ``model`` (ONNX + metadata), ``scan`` (files and
folders), ``batch`` (streaming classification) and ``export`` (CSV, differential).
"""

from hv_desktop.core.cases.differential import Differential, differential
from hv_desktop.core.imaging.preprocess import ImageError, load_for_model
from hv_desktop.core.imaging.scan import ScanItem
from hv_desktop.core.inference.batch import classify_paths, classify_stream
from hv_desktop.core.inference.model import INTENDED_USE, Model, ModelError, bundled_model_path
from hv_desktop.core.inference.result import Result
from hv_desktop.core.io.export import write_csv

__all__ = [
    "INTENDED_USE",
    "Differential",
    "ImageError",
    "Model",
    "ModelError",
    "Result",
    "ScanItem",
    "bundled_model_path",
    "classify_paths",
    "classify_stream",
    "differential",
    "load_for_model",
    "write_csv",
]

"""The Qt-free, TensorFlow-free engine every face of HematoVision uses.

The GUI, the CLI, the benchmarks and the tests all go through these modules:
``preprocess`` (pixels), ``model`` (ONNX + metadata), ``scan`` (files and
folders), ``batch`` (streaming classification) and ``export`` (CSV, differential).
"""

from hv_desktop.core.batch import classify_paths, classify_stream
from hv_desktop.core.export import Differential, differential, write_csv
from hv_desktop.core.model import INTENDED_USE, Model, ModelError, bundled_model_path
from hv_desktop.core.preprocess import ImageError, load_for_model
from hv_desktop.core.result import Result
from hv_desktop.core.scan import ScanItem

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

"""Training: fine-tune MobileNetV2 from offline ImageNet weights, evaluate, export to ONNX.

Needs the ``train`` extra (TensorFlow/Keras, tf2onnx). The app never imports this package.
"""

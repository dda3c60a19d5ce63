"""The model file and running it: the ONNX session, its metadata contract, the streaming classifier, results, every
cell of a field, heatmaps."""

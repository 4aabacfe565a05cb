"""Using a trained model: scores, predictions, the ONNX export and the model under onnxruntime.

- ``metrics``: accuracy, loss, ROC and confusion data (the evaluate stage).
- ``prediction``: predictions for fresh sequences or a dataset file, the table and captions.
- ``pictures``: the predict stage's captioned picture.
- ``export``: Keras -> ONNX, checked against Keras (the export stage).
- ``onnx_runtime``: the exported model under onnxruntime, with no TensorFlow in the process.
- ``server``: that model over HTTP (the Open Inference Protocol v2), ``bash run.sh serve``.

Nothing here trains; a .onnx model runs here without TensorFlow.
"""

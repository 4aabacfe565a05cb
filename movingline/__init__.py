"""Shared library of the moving-line CNN-LSTM pipeline.

Each module has one job: ``params`` (params.yaml), ``labels`` (the classes and the
decision threshold), ``sequences`` (the problem: random walks and frames), ``batching``
(consecutive batches), ``dataset`` (the HDF5 format), ``generate`` (writing a dataset),
``runtime`` (TensorFlow's one door: threads, CPU kernels, seeds), ``model`` (the
CNN-LSTM), ``training`` (the loop), ``cluster`` (workers), ``evaluation`` (metrics),
``prediction`` (the predictions table), ``onnx_export`` (Keras -> ONNX, checked
against Keras), ``serving`` (the ONNX model under onnxruntime, no TensorFlow), ``plots``
(pictures), ``outputs`` (atomic writes), ``preflight`` (the checks a stage runs before its work) and ``cli`` (the stage
shell, imported only by stages/ and command-line entry points). Importing this package
imports nothing heavy: TensorFlow loads on first use of ``runtime.tf`` or ``runtime.keras``.
"""

"""The moving-line CNN-LSTM pipeline's library: a ground floor every stage shares, and four wings.

Ground floor (each stage uses most of these):
``params`` (params.yaml -> frozen dataclasses), ``settings`` (the MOVINGLINE_* variables, read
once), ``runtime`` (TensorFlow's one door: threads, CPU kernels, seeds), ``model`` (the
CNN-LSTM: build, save, load), ``environment`` (the numeric environment and the training
record), ``preflight`` (the checks a stage runs before its work), ``outputs`` (all-or-nothing
writes), ``errors`` (the exceptions stages report in one line) and ``cli`` (the stage shell,
imported only by stages/ and command-line entry points).

Wings, each a folder whose docstring says what it holds:
``data/`` (the problem, the HDF5 format, generation), ``training/`` (the loop, session,
steps, state and checkpoint), ``inference/`` (metrics, predictions, the ONNX export and its
runtime), ``cluster/`` (training across workers; only the train stage imports it).

A reader of one-process training reads the ground floor, ``data/`` and ``training/``, and can
skip ``cluster/``. docs/architecture.md draws the house. Importing this package imports nothing
heavy: TensorFlow loads only in runtime.prepare().
"""

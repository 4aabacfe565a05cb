"""Shared library of the moving-line CNN-LSTM pipeline.

Each module has one job: ``params`` (params.yaml), ``sequences`` (the generator),
``dataset`` (the HDF5 format), ``model`` (the CNN-LSTM), ``outputs`` (atomic writes),
``plots`` (pictures) and ``cli`` (what every stage does on start-up and on failure).
Importing this package imports nothing heavy: TensorFlow loads only with ``model``.
"""

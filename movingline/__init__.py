"""Shared library of the moving-line CNN-LSTM pipeline.

Each module has one job: ``params`` (params.yaml), ``sequences`` (the problem: random
walks and frames), ``batching`` (consecutive batches), ``dataset`` (the HDF5 format),
``generate`` (writing a dataset), ``model`` (the CNN-LSTM), ``evaluation`` (metrics),
``prediction`` (the predictions table), ``plots`` (pictures), ``outputs`` (atomic
writes), ``resources`` (memory and disk checks) and ``cli`` (what every stage does on
start-up and on failure). Importing this package imports nothing heavy: TensorFlow loads
only with ``model``.
"""

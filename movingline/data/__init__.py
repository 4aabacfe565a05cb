"""The data: the problem (random walks drawn as cumulative frames), its HDF5 file format, and
generating a dataset with its frame strip. No TensorFlow here.

- ``labels``: the two classes, their names and the decision threshold.
- ``batching``: consecutive batches, the one batching rule every reader and writer follows.
- ``sequences``: random walks and the frames they draw (the problem, once).
- ``dataset``: the HDF5 format: write, read, validate (the only module that imports h5py).
- ``generate``: a dataset file from a seed, rendered and written in batches.
- ``pictures``: the frame strip the generate stages draw.

Every other wing reads data through ``dataset.DatasetReader``; the generate stages are its
only writers.
"""

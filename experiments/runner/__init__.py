"""The one experiment runner behind `python -m experiments.sweep` and `python -m experiments.learning_curve`.

Both front ends hand it a grid of named `dvc exp run -S` combinations and get back the
experiments `dvc exp show` lists; neither imports the other. It holds:

- repo.py: the user's repository through the dvc and git beside this interpreter (one error
  convention), its clean-workspace check and the experiments it holds;
- grid.py: `-S` specs expanded into combinations (DVC's own expansion), checked against
  params.yaml before anything runs;
- local.py: the combinations on DVC's queue here (`dvc queue start --jobs N`);
- slurm.py and task.py: the combinations as one Slurm job array, and one task of it;
- launch.py: the door the front ends use: the --slurm options, start the grid here or on Slurm,
  wait for it, say what failed.
"""

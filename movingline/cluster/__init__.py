"""Training across workers: who this process is among them, and how they meet.

- ``tf_config``: the cluster as TF_CONFIG describes it (Kubernetes TFJob, Kubeflow, cloud trainers).
- ``slurm``: the cluster as a Slurm job step of several tasks describes it (``srun -n N``).
- ``team``: reading either, joining the other workers, and the team that training is handed.
- ``local``: ``--local-workers N``, N workers on this machine.

Only the train stage imports this wing: it builds the team and hands it to training
(movingline/training/team.py says what training asks of it). A reader of one-process
training can skip it.
"""

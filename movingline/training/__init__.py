"""Training one model: the loop, its session, the compiled steps, the state and the checkpoint.

The path of one run: ``loop.train`` makes a ``session.Session`` (the model, the optimiser and
the run's ``state.TrainingState``), which resumes from ``checkpoint.Checkpoint`` when one fits;
the loop then takes the session's moves step by step (``steps`` compiles them), saves a
checkpoint when due and stops between steps on a signal. ``team.Alone`` is the one-process
team; under several workers the train stage hands in the cluster wing's team instead, and
nothing here imports that wing. Only the train stage and the benchmarks import this wing.
"""

"""The learning-curve grid: which models, training budgets and seeds run, and what one run gives."""

from dataclasses import dataclass

ACCURACY_GOAL = 0.99

# Each model is params.yaml as committed (the reference model, the original example's) with
# these params set (dvc exp run -S). The reference model spends 91% of its arithmetic in the
# LSTM's input projection from 1,152 features per frame; a second CNN block shrinks that to
# 242 (240,661 -> 58,679 weights), so there are fewer weights to fit from few sequences.
# A batch of 8 instead of 32 gives four times as many Adam updates from the same sequences.
# One change per variant keeps their effects apart; three models keep the whole grid to 45 runs.
MODELS: dict[str, dict[str, object]] = {
    "reference": {},
    "deep2": {"model.conv_layers": 2},
    "batch8": {"train.batch_size": 8},
}
BUDGETS = (250, 500, 1000, 2000, 5000)
SEEDS = (3, 4, 5)  # train.seed; 3 is params.yaml's
PREFIX = "lc"

# A smoke run: the same grid machinery on tiny sequences, in a minute or two per job.
SMOKE_BUDGETS = (16, 32)
SMOKE_SEEDS = (3, 4)
SMOKE_PREFIX = "lcsmoke"
SMOKE_PARAMS: dict[str, object] = {
    "data.size": 8,
    "generate_test.n_samples": 40,
    "model.lstm_units": 4,
    "train.learning_rate": 0.01,
}


@dataclass(frozen=True)
class Run:
    """One experiment of the grid."""

    model: str
    budget: int
    seed: int
    prefix: str

    @property
    def name(self) -> str:
        return f"{self.prefix}-{self.model}-n{self.budget}-s{self.seed}"


@dataclass(frozen=True)
class Result:
    """What one finished experiment gave: test accuracy and loss, and how long it trained."""

    run: Run
    accuracy: float
    loss: float
    train_seconds: float | None
    time_source: str
    parameters: int
    test_set: str  # e.g. "1000 sequences of 50x50 frames, generate_test.seed = 2"


def grid(models: dict[str, dict], budgets: tuple[int, ...], seeds: tuple[int, ...], prefix: str) -> list[Run]:
    """Every run, budget by budget, so that runs sharing a training set follow each other
    (generate_train then comes from DVC's run-cache after its first run)."""
    return [Run(model, budget, seed, prefix) for budget in budgets for model in models for seed in seeds]


def set_params(run: Run, models: dict[str, dict], base: dict[str, object]) -> dict[str, object]:
    """The params a run sets: the base overrides, the model's, then its budget and seed."""
    return {**base, **models[run.model], "generate_train.n_samples": run.budget, "train.seed": run.seed}

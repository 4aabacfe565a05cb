"""Stage train: data/train.h5 -> models/model.keras, the per-step curve and models/training.json.

Alone, or as one worker of a cluster: TF_CONFIG, `srun -n N` or --local-workers N (docs/scaling.md).
Checkpoints to checkpoints/ and resumes from there after an interruption (docs/training.md).
"""

import logging
import os
import sys
from pathlib import Path

from movingline import runtime
from movingline.cli import add_path, count_argument, run_stage, stage_parser
from movingline.cluster.local import run_local_workers
from movingline.cluster.team import join, read_cluster, worker_settings
from movingline.data.dataset import DatasetReader
from movingline.environment import numeric_environment
from movingline.outputs import atomic_outputs, check_destinations
from movingline.params import load_params
from movingline.preflight import require_training_data
from movingline.settings import Settings
from movingline.training.checkpoint import FILE_NAME, Checkpoint, code_files, run_key
from movingline.training.loop import log_summary, train, write_outputs
from movingline.training.team import Alone

log = logging.getLogger(__name__)
PATHS = ("params", "data", "model", "curve", "record", "checkpoints")


def main(settings: Settings) -> None:
    parser = stage_parser("train", __doc__.splitlines()[0])
    add_path(parser, "--data", "data/train.h5", "training set")
    add_path(parser, "--model", "models/model.keras", "model to write")
    add_path(parser, "--curve", "plots/training.csv", "per-step curve")
    add_path(parser, "--record", "models/training.json", "record of the numeric environment and the unrounded curve")
    add_path(parser, "--checkpoints", "checkpoints", "folder for the checkpoint that an interrupted run resumes from")
    parser.add_argument("--local-workers", type=count_argument, metavar="N", help="train as N workers on 127.0.0.1")
    args = parser.parse_args()
    if args.local_workers is not None:
        sys.exit(run_local_workers(args.local_workers, [f"--{name}={getattr(args, name)}" for name in PATHS], settings))
    cluster = read_cluster(os.environ)  # None: this process trains alone
    settings, more = worker_settings(cluster, settings, os.environ) if cluster is not None else (settings, {})
    check_destinations(args.model, args.curve, args.record, args.checkpoints / FILE_NAME)
    params = load_params(args.params)
    with DatasetReader(args.data) as reader:
        require_training_data(args.data, reader.info.size, len(reader), params, args.params)
        setup = runtime.prepare(settings, more)
        team = join(cluster, settings) if cluster is not None else Alone()
        key = run_key(args.data, params, team.count, setup.as_dict(), code_files(Path(__file__)))
        checkpoint = Checkpoint(args.checkpoints / FILE_NAME, key, settings.checkpoint_seconds)
        print(f"train: training on {runtime.describe_devices(team.strategy, team.count, setup)}", flush=True)
        progress = (1 if sys.stdout.isatty() else 2) if team.is_chief else 0
        run = train(reader, params.model, params.train, team=team, progress=progress, checkpoint=checkpoint)
    log_summary(run)
    if team.is_chief:
        with atomic_outputs(args.model, args.curve, args.record) as paths:
            write_outputs(run, numeric_environment(setup.as_dict(), team.count), *paths)
        checkpoint.remove()
        log.info("wrote %s (%d parameters), %s and %s", args.model, run.model.count_params(), args.curve, args.record)


if __name__ == "__main__":
    run_stage(main)

"""Stage train: data/train.h5 -> models/model.keras, the per-step training curve and training.json.

Trains in this process or, when TF_CONFIG is set or `srun -n N` started it, as one worker
of a tf.distribute cluster (docs/scaling.md); --local-workers N starts N such workers on
this machine. Saves its state in checkpoints/ every MOVINGLINE_CHECKPOINT_SECONDS and when
interrupted, and a rerun with the same inputs resumes from it (docs/training.md).
"""

import dataclasses
import logging
import sys

from movingline import runtime
from movingline.checkpoints import DEFAULT_SECONDS, FILE_NAME, SECONDS_VARIABLE, fingerprint, remove_checkpoint
from movingline.cli import add_path, run_stage, stage_parser
from movingline.cluster import make_strategy, read_cluster, run_local_workers
from movingline.dataset import DatasetReader
from movingline.environment import numeric_environment, training_record
from movingline.outputs import atomic_outputs, check_destinations, write_json
from movingline.params import load_params
from movingline.preflight import require_size, require_training_fits, require_training_sequences
from movingline.runtime import positive_setting

log = logging.getLogger(__name__)


def main() -> None:
    parser = stage_parser("train", __doc__.splitlines()[0])
    add_path(parser, "--data", "data/train.h5", "training set")
    add_path(parser, "--model", "models/model.keras", "model to write")
    add_path(parser, "--curve", "plots/training.csv", "per-step curve")
    add_path(parser, "--record", "training.json", "record of the numeric environment and the unrounded curve")
    add_path(parser, "--checkpoints", "checkpoints", "folder for the checkpoint that an interrupted run resumes from")
    parser.add_argument("--local-workers", type=int, metavar="N", help="train as N workers on 127.0.0.1")
    args = parser.parse_args()
    if args.local_workers is not None:
        if args.local_workers < 1:
            parser.error("--local-workers must be at least 1")
        paths = ["--params", args.params, "--data", args.data, "--model", args.model, "--curve", args.curve,
                 "--record", args.record, "--checkpoints", args.checkpoints]
        sys.exit(run_local_workers(args.local_workers, list(map(str, paths))))

    cluster = read_cluster()
    check_destinations(args.model, args.curve, args.record, args.checkpoints / FILE_NAME)
    interval = positive_setting(SECONDS_VARIABLE, DEFAULT_SECONDS, "seconds")
    params = load_params(args.params)
    is_chief = cluster is None or cluster.is_chief
    with DatasetReader(args.data) as reader:
        require_size(args.data, reader.info.size, args.params, params.data.size)
        require_training_sequences(len(reader), params.train.validation_sequences, args.params, args.data)
        n_train = len(reader) - params.train.validation_sequences
        require_training_fits(params, args.params, min(params.train.batch_size, n_train))
        from movingline.resume import Checkpointing
        from movingline.training import train, write_curve

        read = {"data.size": params.data.size, "model": dataclasses.asdict(params.model),
                "train": dataclasses.asdict(params.train)}
        n_workers = cluster.n_workers if cluster else 1
        run_fingerprint = fingerprint(args.data, read, n_workers, runtime.setup())
        checkpointing = Checkpointing(args.checkpoints / FILE_NAME, run_fingerprint, interval, is_chief)
        strategy = make_strategy(cluster)
        print(f"train: training on {runtime.describe_devices(strategy)}", flush=True)
        run = train(reader, params.model, params.train, strategy, replica=cluster.rank if cluster else 0,
                    progress=(1 if sys.stdout.isatty() else 2) if is_chief else 0, checkpointing=checkpointing)
    steps = len(run.step_ends)  # this run's; a resumed run took the others before
    log.info("trained %d steps in %.1f s (%.1f sequences/s)", steps, run.seconds, run.sequences_per_second)
    if run.resumed_at:
        log.info("train: %d steps in all, %.1f s of training with the interrupted runs", run.resumed_at + steps,
                 run.seconds + run.earlier_seconds)
    if is_chief:
        from movingline.model import save_model

        environment = numeric_environment(runtime.setup(), n_workers)
        record = training_record(environment, [row.loss for row in run.curve], [row.accuracy for row in run.curve])
        with atomic_outputs(args.model, args.curve, args.record) as (model_path, curve_path, record_path):
            save_model(run.model, model_path)
            write_curve(run.curve, curve_path)
            write_json(record, record_path)
        remove_checkpoint(checkpointing.path)
        log.info("wrote %s (%d parameters), %s and %s", args.model, run.model.count_params(), args.curve, args.record)


if __name__ == "__main__":
    run_stage(main)

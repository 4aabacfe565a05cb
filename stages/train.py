"""Stage train: data/train.h5 -> models/model.keras and the per-step training curve.

Trains in this process or, when TF_CONFIG is set or `srun -n N` started it, as one worker
of a tf.distribute cluster (docs/scaling.md); --local-workers N starts N such workers on
this machine.
"""

import logging
import sys

from movingline.cli import add_path, run_stage, stage_parser
from movingline.cluster import make_strategy, read_cluster, run_local_workers
from movingline.dataset import DatasetReader
from movingline.outputs import atomic_outputs, check_destinations
from movingline.params import load_params
from movingline.preflight import require_size, require_training_fits

log = logging.getLogger(__name__)


def main() -> None:
    parser = stage_parser("train", __doc__.splitlines()[0])
    add_path(parser, "--data", "data/train.h5", "training set")
    add_path(parser, "--model", "models/model.keras", "model to write")
    add_path(parser, "--curve", "plots/training.csv", "per-step curve")
    parser.add_argument("--local-workers", type=int, metavar="N", help="train as N workers on 127.0.0.1")
    args = parser.parse_args()
    if args.local_workers is not None:
        if args.local_workers < 1:
            parser.error("--local-workers must be at least 1")
        paths = ["--params", args.params, "--data", args.data, "--model", args.model, "--curve", args.curve]
        sys.exit(run_local_workers(args.local_workers, list(map(str, paths))))

    cluster = read_cluster()
    check_destinations(args.model, args.curve)
    params = load_params(args.params)
    with DatasetReader(args.data) as reader:
        require_size(args.data, reader.info.size, args.params, params.data.size)
        require_training_fits(params, args.params, min(params.train.batch_size, len(reader)))
        from movingline.training import describe_devices, train, write_curve

        strategy = make_strategy(cluster)
        print(f"train: training on {describe_devices(strategy)}", flush=True)
        is_chief = cluster is None or cluster.is_chief
        run = train(reader, params.model, params.train, strategy, replica=cluster.rank if cluster else 0,
                    progress=(1 if sys.stdout.isatty() else 2) if is_chief else 0)
    log.info("trained %d steps in %.1f s (%.1f sequences/s)", len(run.curve), run.seconds, run.sequences_per_second)
    if is_chief:
        from movingline.model import save_model

        with atomic_outputs(args.model, args.curve) as (model_path, curve_path):
            save_model(run.model, model_path)
            write_curve(run.curve, curve_path)
        log.info("wrote %s (%d parameters) and %s", args.model, run.model.count_params(), args.curve)


if __name__ == "__main__":
    run_stage(main)

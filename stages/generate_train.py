"""Stage generate_train: params.yaml's generate_train section -> data/train.h5 and a frame strip.

generate_test runs the same main() on its own section.
"""

import logging

from movingline.cli import add_path, run_stage, stage_parser
from movingline.data.generate import generate_dataset, most_rendered_at_once
from movingline.outputs import atomic_outputs, check_destinations
from movingline.params import load_params
from movingline.preflight import require_generation_fits, require_training_fits
from movingline.settings import Settings

log = logging.getLogger(__name__)


def main(settings: Settings, section: str = "generate_train", output: str = "data/train.h5", strip: str = "plots/train_sequences.png") -> None:
    parser = stage_parser(section, f"Generate moving-line sequences from params.yaml's '{section}' section into an HDF5 file.")
    add_path(parser, "--output", output, "dataset to write")
    add_path(parser, "--strip", strip, "PNG of a few sequences")
    args = parser.parse_args()

    check_destinations(args.output, args.strip)
    params = load_params(args.params)
    # Every stage checks that training will fit, so an impossible data.size or model stops
    # the pipeline at its first stage rather than at training.
    require_training_fits(params, args.params)
    size, settings = params.data.size, getattr(params, section)
    require_generation_fits(params, args.params, section, args.output, most_rendered_at_once(size))
    with atomic_outputs(args.output, args.strip) as (dataset_path, strip_path):
        generate_dataset(
            dataset_path, strip_path, size=size, n_samples=settings.n_samples, seed=settings.seed, label=str(args.output)
        )
    log.info("wrote %s: %d sequences of %dx%d, seed %d", args.output, settings.n_samples, size, size, settings.seed)


if __name__ == "__main__":
    run_stage(main)

"""Stage export: models/model.keras -> models/model.onnx, checked against Keras by onnxruntime.

The check runs both models on the first test sequences, at full length and at half length:
every probability must agree within onnx_export.TOLERANCE and every label be the same,
or the stage stops with one line and writes nothing.
"""

import logging

from movingline.cli import add_path, run_stage, stage_parser
from movingline.data.dataset import DatasetReader
from movingline.errors import InputError
from movingline.model import frame_size, load_model
from movingline.inference.export import CHECK_SEQUENCES, TOLERANCE, compare, export_onnx
from movingline.outputs import atomic_outputs, check_destinations
from movingline.preflight import require_model_size
from movingline.settings import Settings
from movingline.inference.onnx_runtime import OnnxModel

log = logging.getLogger(__name__)


def main(settings: Settings) -> None:
    parser = stage_parser("export", __doc__.splitlines()[0])
    add_path(parser, "--model", "models/model.keras", "trained Keras model")
    add_path(parser, "--data", "data/test.h5", "sequences to check the export on")
    add_path(parser, "--output", "models/model.onnx", "ONNX file to write")
    args = parser.parse_args()

    check_destinations(args.output)
    with DatasetReader(args.data, require_labels=False) as reader:
        frames = reader.read_frames(0, min(CHECK_SEQUENCES, len(reader)))
    model = load_model(args.model, settings)
    require_model_size(args.model, frame_size(model), int(frames.shape[2]), args.data)
    exported = export_onnx(model).SerializeToString()
    served = OnnxModel(exported, str(args.output))
    for length in (frames.shape[1], max(1, frames.shape[1] // 2)):
        agreement = compare(model, served, frames[:, :length])
        if not agreement.holds:
            raise InputError(
                f"{args.model}: its ONNX export disagrees with Keras on the first {agreement.n_sequences} sequences of "
                f"{args.data} ({length} frames): max |difference| {agreement.max_difference:.2e} (tolerance {TOLERANCE:.0e}), "
                f"{agreement.label_mismatches} labels differ; {args.output} not written"
            )
        log.info("%d frames: onnxruntime agrees with Keras on %d sequences, max |difference| %.2e",
                 length, agreement.n_sequences, agreement.max_difference)
    with atomic_outputs(args.output) as (onnx_path,):
        onnx_path.write_bytes(exported)
    print(f"wrote {args.output} ({len(exported)} bytes)")


if __name__ == "__main__":
    run_stage(main)

"""Stage generate_train: params.yaml's generate_train section -> data/train.h5 and a frame strip."""

from movingline.cli import run_stage
from movingline.generate import main


if __name__ == "__main__":
    run_stage(lambda: main("generate_train", "data/train.h5", "plots/train_sequences.png"))

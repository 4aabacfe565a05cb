"""Stage generate_test: params.yaml's generate_test section -> data/test.h5 and a frame strip."""

from movingline.cli import run_stage
from stages.generate_train import main

if __name__ == "__main__":
    run_stage(lambda settings: main(settings, "generate_test", "data/test.h5", "plots/test_sequences.png"))

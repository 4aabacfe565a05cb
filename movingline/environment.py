"""The numeric environment a training run computed in, and the record the train stage keeps of it.

The same params give the same bits only in one numeric environment: the CPU, the kernel path,
the thread count, the number of workers and the package versions (docs/reproducibility.md).
The train stage records that environment and its curve at full precision in
`models/training.json` (cached by DVC like the model, so the run-cache restores it), and the
evaluate stage copies it to `training.json`, which git keeps beside `dvc.lock` and
`metrics.json`: `bash run.sh verify` compares a workspace with it.
"""

import json
import platform
from importlib import metadata
from pathlib import Path

from movingline.errors import InputError

# The packages besides TensorFlow and Keras (which runtime.Setup names) whose version can change
# the bits of the training run or of the datasets it reads.
PACKAGES = ("numpy", "h5py")


def cpu_model(cpuinfo: str) -> str:
    """The CPU's name from /proc/cpuinfo's text ('model name', with its family and model numbers,
    which tell apart CPUs that virtual machines all call "Intel(R) Xeon(R) Processor"), else
    what the platform module says."""
    fields: dict[str, str] = {}
    for line in cpuinfo.split("\n\n")[0].splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    if not fields.get("model name"):
        return platform.processor() or platform.machine() or "unknown CPU"
    if "cpu family" in fields and "model" in fields:
        return f"{fields['model name']} (family {fields['cpu family']}, model {fields['model']})"
    return fields["model name"]


def cpu_flag(cpuinfo: str, flag: str) -> bool | None:
    """Whether /proc/cpuinfo's text lists ``flag`` among the CPU's flags; None where it lists none."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return flag in value.split()
    return None


def read_cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def describe_cpu() -> str:
    """E.g. 'Intel(R) Xeon(R) Processor (family 6, model 207), with avx512_vnni': the name, and
    whether the CPU has the flag that turns TensorFlow's own oneDNN default on."""
    cpuinfo = read_cpuinfo()
    vnni = cpu_flag(cpuinfo, "avx512_vnni")
    has = "flags unknown" if vnni is None else ("with avx512_vnni" if vnni else "no avx512_vnni")
    return f"{cpu_model(cpuinfo)}, {has}"


def numeric_environment(setup: dict[str, str], n_workers: int) -> dict[str, str | int]:
    """What decides a training run's bits here, from runtime.Setup.as_dict() and the worker count."""
    versions = [setup["versions"], *(f"{name} {metadata.version(name)}" for name in PACKAGES)]
    return {
        "cpu": describe_cpu(),
        "platform": f"{platform.system()} {platform.machine()}",
        "kernels": setup["kernels"],
        "threads": int(setup["threads"]),
        "workers": n_workers,
        "packages": ", ".join(versions),
    }


def training_record(environment: dict[str, str | int], curve: list) -> dict:
    """The train stage's record: where it computed, and its curve (rows with .loss and .accuracy;
    one value per step, unrounded)."""
    # Its git-tracked copy is a metric of the evaluate stage, so DVC shows its scalars (`dvc metrics
    # show`, `dvc exp show`): the environment, beside each experiment; it leaves the lists out.
    return {
        "environment": environment,
        "curve": {"loss": [float(row.loss) for row in curve], "accuracy": [float(row.accuracy) for row in curve]},
    }


def read_record(path: Path) -> dict:
    """A training record as the train stage wrote it; InputError naming the file if it is not one."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: no such file (the train stage writes it)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"{path}: not a training record: {error}") from None
    if not isinstance(record, dict) or set(record) != {"environment", "curve"}:
        raise InputError(f"{path}: not a training record: expected the keys 'environment' and 'curve'")
    return record

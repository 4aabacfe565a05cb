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


def cpu_fields(cpuinfo: str) -> dict[str, str]:
    """The first processor's block of /proc/cpuinfo's text, as {key: value}."""
    fields: dict[str, str] = {}
    for line in cpuinfo.split("\n\n")[0].splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


def cpu_model(cpuinfo: str) -> str:
    """The CPU's name from /proc/cpuinfo's text ('model name', with its family and model numbers,
    which tell apart CPUs that virtual machines all call "Intel(R) Xeon(R) Processor"), else
    what the platform module says."""
    fields = cpu_fields(cpuinfo)
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


# MIDR_EL1's implementer codes and part numbers, as Linux knows them
# (arch/arm64/include/asm/cputype.h). A part missing here is shown by its number.
ARM_IMPLEMENTERS = {
    0x41: "Arm", 0x42: "Broadcom", 0x43: "Cavium", 0x46: "Fujitsu", 0x48: "HiSilicon", 0x4E: "NVIDIA",
    0x50: "Applied Micro", 0x51: "Qualcomm", 0x61: "Apple", 0xC0: "Ampere",
}
ARM_PARTS = {
    (0x41, 0xD03): "Cortex-A53", (0x41, 0xD04): "Cortex-A35", (0x41, 0xD05): "Cortex-A55",
    (0x41, 0xD07): "Cortex-A57", (0x41, 0xD08): "Cortex-A72", (0x41, 0xD09): "Cortex-A73",
    (0x41, 0xD0A): "Cortex-A75", (0x41, 0xD0B): "Cortex-A76", (0x41, 0xD0D): "Cortex-A77",
    (0x41, 0xD41): "Cortex-A78", (0x41, 0xD44): "Cortex-X1", (0x41, 0xD46): "Cortex-A510",
    (0x41, 0xD47): "Cortex-A710", (0x41, 0xD48): "Cortex-X2", (0x41, 0xD80): "Cortex-A520",
    (0x41, 0xD81): "Cortex-A720", (0x41, 0xD0C): "Neoverse N1", (0x41, 0xD40): "Neoverse V1",
    (0x41, 0xD49): "Neoverse N2", (0x41, 0xD4F): "Neoverse V2", (0x41, 0xD84): "Neoverse V3",
    (0x41, 0xD8E): "Neoverse N3",
    (0x43, 0x0AF): "ThunderX2", (0x46, 0x001): "A64FX", (0x48, 0xD01): "Kunpeng 920 (TaiShan v110)",
    (0x4E, 0x004): "Carmel", (0x50, 0x000): "X-Gene",
    (0x61, 0x022): "M1 (Icestorm)", (0x61, 0x023): "M1 (Firestorm)", (0x61, 0x032): "M2 (Blizzard)",
    (0x61, 0x033): "M2 (Avalanche)",
    (0xC0, 0xAC3): "Ampere-1", (0xC0, 0xAC4): "Ampere-1a",
}
MIDR_PATH = Path("/sys/devices/system/cpu/cpu0/regs/identification/midr_el1")
KERNEL_ARCH_PATH = Path("/proc/sys/kernel/arch")


def architecture(name: str) -> str | None:
    """'x86-64' or 'aarch64' for the names platforms give them; None for others."""
    name = name.strip().lower()
    if name in ("x86_64", "amd64", "x86-64"):
        return "x86-64"
    if name in ("aarch64", "arm64"):
        return "aarch64"
    return None


def cpuinfo_architecture(cpuinfo: str) -> str | None:
    """Which architecture /proc/cpuinfo's text describes: Arm's kernels write 'CPU implementer',
    x86's 'vendor_id' and 'flags'."""
    fields = cpu_fields(cpuinfo)
    if "CPU implementer" in fields:
        return "aarch64"
    if "vendor_id" in fields or "flags" in fields:
        return "x86-64"
    return None


def emulating_host(machine: str, cpuinfo: str, kernel_arch: str) -> str | None:
    """The architecture of the CPU that runs this process when it is not ``machine``'s: QEMU's user
    mode reports the emulated machine to programs, but the kernel's /proc/sys/kernel/arch and
    (QEMU 7.2) /proc/cpuinfo still describe the host."""
    ours = architecture(machine)
    host = architecture(kernel_arch) or cpuinfo_architecture(cpuinfo)
    return host if ours and host and host != ours else None


def arm_cpu(implementer: int, part: int) -> str:
    """E.g. 'Arm Neoverse V1 (implementer 0x41, part 0xd40)'."""
    vendor = ARM_IMPLEMENTERS.get(implementer, "Arm-architecture")
    name = ARM_PARTS.get((implementer, part), "CPU")
    return f"{vendor} {name} (implementer {implementer:#04x}, part {part:#05x})"


def arm_ids(cpuinfo: str, midr: str) -> tuple[int, int] | None:
    """(implementer, part) from /proc/cpuinfo's text, else from MIDR_EL1's value (hex text)."""
    fields = cpu_fields(cpuinfo)
    try:
        if "CPU implementer" in fields and "CPU part" in fields:
            return int(fields["CPU implementer"], 16), int(fields["CPU part"], 16)
        if midr.strip():
            value = int(midr.strip(), 16)
            return (value >> 24) & 0xFF, (value >> 4) & 0xFFF
    except ValueError:
        pass
    return None


def cpu_description(machine: str, cpuinfo: str, midr: str = "", kernel_arch: str = "") -> str:
    """What describe_cpu() says, from the texts it reads (empty where a file is missing)."""
    host = emulating_host(machine, cpuinfo, kernel_arch)
    if host:
        return f"{architecture(machine)} emulated on {host}"
    if architecture(machine) == "aarch64":
        ids = arm_ids(cpuinfo, midr)
        if ids:
            return arm_cpu(*ids)
        return f"{cpu_model(cpuinfo)}, implementer and part unknown"
    vnni = cpu_flag(cpuinfo, "avx512_vnni")
    has = "flags unknown" if vnni is None else ("with avx512_vnni" if vnni else "no avx512_vnni")
    return f"{cpu_model(cpuinfo)}, {has}"


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def read_cpuinfo() -> str:
    return read_text(Path("/proc/cpuinfo"))


def describe_cpu() -> str:
    """The CPU that runs this process. On x86-64 e.g. 'Intel(R) Xeon(R) Processor (family 6,
    model 207), with avx512_vnni': the name, and whether it has the flag that turns TensorFlow's
    own oneDNN default on. On Arm e.g. 'Arm Neoverse V1 (implementer 0x41, part 0xd40)': the part
    decides TensorFlow's default there (runtime.arm_kernel_default). Under emulation e.g.
    'aarch64 emulated on x86-64', never the host's CPU as if it ran the code."""
    return cpu_description(platform.machine(), read_cpuinfo(), read_text(MIDR_PATH), read_text(KERNEL_ARCH_PATH))


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

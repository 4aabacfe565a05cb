"""TensorFlow's one door: ``prepare(settings)`` sets what TensorFlow reads when it loads, then
loads it; every module that needs ``tf`` or ``keras`` takes them from here afterwards.

    setup = runtime.prepare(settings)     # in a stage's main(), before any TensorFlow work
    from movingline.runtime import keras, tf

TensorFlow reads some settings only once, when it loads: its thread pools and which CPU
kernels it uses. So ``prepare`` is the one writer of those variables and the one place that
imports TensorFlow (its C++ start-up notices kept off the terminal); it refuses to change
them once TensorFlow has loaded, and ``runtime.tf`` refuses to load TensorFlow on its own.
Importing this module loads nothing heavy; stages that never touch TensorFlow never call it.

CPU kernels. On its own, TensorFlow turns its oneDNN kernels on only on CPUs with
AVX512_VNNI, AVX512_BF16 or AMX, and oneDNN then uses the widest instructions the CPU has;
elsewhere it runs its Eigen kernels. Each path computes in another order, so each gives
other model bytes, and for this model Eigen trains several times slower
(docs/reproducibility.md). So on x86-64 every process here runs oneDNN capped at AVX2,
which every x86-64 server CPU of the last decade has: one kernel path on all of them.
A user who sets TF_ENABLE_ONEDNN_OPTS or ONEDNN_MAX_CPU_ISA keeps their choice (the train
log says which path ran). Other CPUs (Arm) keep TensorFlow's own choice, which the log
names with its reason (arm_kernel_path). On a GPU, configure_gpus() turns TF32 off and
memory growth on as TensorFlow loads.
"""

import contextlib
import importlib
import os
import platform
import sys
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from movingline.settings import Settings, usable_cores

# TensorFlow's C++ log level: 2 keeps its notices and warnings out of the stages' logs.
LOG_LEVEL_VARIABLE = "TF_CPP_MIN_LOG_LEVEL"
ONEDNN_VARIABLE = "TF_ENABLE_ONEDNN_OPTS"
ISA_VARIABLE = "ONEDNN_MAX_CPU_ISA"
# The kernel path pinned on x86-64: oneDNN on, its instructions capped at AVX2.
PINNED_KERNELS = {ONEDNN_VARIABLE: "1", ISA_VARIABLE: "AVX2"}


@dataclass(frozen=True)
class Setup:
    """What of this process's TensorFlow decides the bits it computes (a checkpoint's key and the
    training record name them)."""

    threads: int  # of TensorFlow's intra-op pool
    kernels: str  # e.g. "oneDNN, AVX2 kernels"
    versions: str  # e.g. "TensorFlow 2.21.0, Keras 3.12.0"

    def as_dict(self) -> dict[str, str]:
        return {"threads": str(self.threads), "kernels": self.kernels, "versions": self.versions}


def kernel_variables(env: Mapping[str, str]) -> dict[str, str]:
    """The pinned kernel path (PINNED_KERNELS) on x86-64, unless the user chose one; else nothing."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return {}
    if any(variable in env for variable in PINNED_KERNELS):
        return {}
    return dict(PINNED_KERNELS)


def tensorflow_environment(settings: Settings, env: Mapping[str, str], more: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables TensorFlow reads when it loads, as ``settings`` want them, on top of ``env``;
    ``more`` adds a caller's own (the training cluster's TF_CONFIG and log level)."""
    wanted = {LOG_LEVEL_VARIABLE: env.get(LOG_LEVEL_VARIABLE, "2")}
    if settings.threads is not None:
        wanted["TF_NUM_INTRAOP_THREADS"] = wanted["TF_NUM_INTEROP_THREADS"] = str(settings.threads)
    return wanted | dict(more or {}) | kernel_variables(env)


def prepare(settings: Settings, more: Mapping[str, str] | None = None) -> Setup:
    """Sets what TensorFlow reads when it loads (tensorflow_environment), loads it, and returns
    its set-up. Refuses to change those variables once TensorFlow has loaded: it would silently
    ignore the change."""
    changes = {k: v for k, v in tensorflow_environment(settings, os.environ, more).items() if os.environ.get(k) != v}
    if changes and "tensorflow" in sys.modules:
        raise RuntimeError(f"runtime.prepare() after TensorFlow loaded: it would not see {', '.join(sorted(changes))}")
    os.environ.update(changes)
    # TensorFlow 2.21 logs its start-up notices through absl before TF_CPP_MIN_LOG_LEVEL
    # can take effect. An import error still surfaces as a Python exception.
    with stderr_silenced(shown=settings.debug):
        import keras
        import tensorflow as tf
    configure_gpus(tf)
    gpus = describe_gpus(tf)  # a GPU computes the layers it can run; the CPU's kernels the rest
    kernels = f"{gpus}; CPU: {kernel_path()}" if gpus else kernel_path()
    return Setup(threads(), kernels, f"TensorFlow {tf.__version__}, Keras {keras.__version__}")


def __getattr__(name: str) -> Any:
    """``tf`` and ``keras`` once prepare() has loaded TensorFlow (PEP 562)."""
    if name not in ("tf", "keras"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return _loaded(name)


def _loaded(name: str) -> Any:
    if "tensorflow" not in sys.modules:
        raise RuntimeError(f"runtime.{name} before runtime.prepare(settings): TensorFlow loads only through prepare()")
    return importlib.import_module("tensorflow" if name == "tf" else "keras")


def kernel_path() -> str:
    """Which CPU kernels TensorFlow runs in this process, e.g. 'oneDNN, AVX2 kernels'.

    Names the variables when they are not the pinned path (the user's own choice).
    """
    _loaded("tf")
    from tensorflow.python.util import _pywrap_util_port

    if platform.machine().lower() in ("aarch64", "arm64"):
        return arm_kernel_path(_pywrap_util_port.IsMklEnabled(), platform.system(), os.environ.get(ONEDNN_VARIABLE))
    if not _pywrap_util_port.IsMklEnabled():
        path = "Eigen kernels (oneDNN off)"
    else:
        isa = os.environ.get(ISA_VARIABLE, "").strip()
        path = f"oneDNN, {isa.upper()} kernels" if isa and isa.upper() != "ALL" else "oneDNN, kernels for this CPU's widest instructions"
    chosen = {variable: os.environ[variable] for variable in PINNED_KERNELS if variable in os.environ}
    if chosen and chosen != PINNED_KERNELS:
        path += f"; set by {', '.join(f'{key}={value}' for key, value in chosen.items())}"
    return path


def arm_kernel_path(onednn: bool, system: str, chosen: str | None) -> str:
    """kernel_path() on Arm, where the project pins nothing: what TensorFlow chose, and why.

    TensorFlow's Linux aarch64 build has oneDNN with the Arm Compute Library, and turns it on by
    default only on a Neoverse V1: DefaultOneDnnPolicy() in tensorflow/core/util/util.cc asks
    TestAarch64CPU(ARM_NEOVERSE_V1), which third_party/xla/xla/tsl/platform/cpu_info.cc answers
    from MIDR_EL1 (implementer 0x41, part 0xd40) as /sys/devices/system/cpu/cpuN/regs/
    identification/midr_el1 gives it for the first present CPU. Elsewhere, and under emulation
    (where that file is the host's and missing), it runs its Eigen kernels.
    """
    path = "oneDNN with the Arm Compute Library" if onednn else "Eigen kernels (oneDNN off)"
    if chosen is not None:
        return f"{path}; set by {ONEDNN_VARIABLE}={chosen}"
    if system != "Linux":
        return path
    return f"{path}: TensorFlow's default " + ("on a Neoverse V1" if onednn else "on every Arm CPU but Neoverse V1")


def configure_gpus(tf: Any) -> list[str]:
    """Sets what a GPU run needs, right after TensorFlow loads (before it starts a device), and
    returns the GPUs' names; on a machine without a GPU it does nothing.

    - TF32 off: on Ampere and newer, TensorFlow otherwise rounds the inputs of float32 matrix
      products and convolutions to TF32's 10-bit mantissa, which is not the float32 model
      the CPU trains.
    - Memory growth on: TensorFlow otherwise takes nearly all of a GPU's memory at start-up,
      so a second process (`dvc exp run --queue` with `--jobs 2`) finds none left.

    Keras's LSTM layer takes cuDNN's kernel on a GPU by itself (its defaults allow it): another
    order of sums than the CPU's, so a GPU run reproduces the CPU run within tolerance, not in bits.
    """
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return []
    tf.config.experimental.enable_tensor_float_32_execution(False)
    for gpu in gpus:
        tf.config.experimental.set_memory_growth(gpu, True)
    return [gpu.name for gpu in gpus]


def describe_gpus(tf: Any) -> str:
    """E.g. '1 GPU: NVIDIA H100 80GB HBM3 (TF32 off)', for the record of a run; '' without GPUs."""
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return ""
    names = [tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name) for gpu in gpus]
    tf32 = "on" if tf.config.experimental.tensor_float_32_execution_enabled() else "off"
    return f"{len(gpus)} GPU{'s' if len(gpus) != 1 else ''}: {', '.join(names)} (TF32 {tf32})"


def threads() -> int:
    """Threads in TensorFlow's intra-op pool (the one that runs each op's arithmetic) in this
    process: TF_NUM_INTRAOP_THREADS (which MOVINGLINE_THREADS sets), else the usable cores."""
    configured = os.environ.get("TF_NUM_INTRAOP_THREADS", "").strip()
    if configured.isdigit() and int(configured) > 0:
        return int(configured)
    return usable_cores()


def describe_devices(strategy, n_workers: int, setup: Setup) -> str:
    """E.g. '2 workers (2 replicas in all), devices here: /CPU:0 (oneDNN, AVX2 kernels, 1 thread)',
    for the log line that says where training runs and which kernels computed it."""
    gpus = [device.name for device in _loaded("tf").config.list_logical_devices("GPU")]
    cpu = f"/CPU:0 ({setup.kernels}, {setup.threads} thread{'s' if setup.threads != 1 else ''})"
    devices = ", ".join([*gpus, cpu])
    workers = f"{n_workers} worker{'s' if n_workers != 1 else ''}"
    replicas = f"{strategy.num_replicas_in_sync} replica{'s' if strategy.num_replicas_in_sync != 1 else ''}"
    return f"{workers} ({replicas} in all), devices here: {devices}"


def make_deterministic(seed: int) -> None:
    """Seeds Python, NumPy and TensorFlow, and makes TensorFlow ops deterministic."""
    tf, keras = _loaded("tf"), _loaded("keras")
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


@contextlib.contextmanager
def stderr_silenced(shown: bool = False) -> Iterator[None]:
    """Keeps what C++ code writes to stderr (file descriptor 2) off the terminal for a while.

    What was written is shown after all if the block fails; nothing is hidden when ``shown``
    (MOVINGLINE_DEBUG=1).
    """
    if shown:
        yield
        return
    with tempfile.TemporaryFile() as captured:
        try:
            with _stderr_sent_to(captured):
                yield
        except BaseException:
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise


@contextlib.contextmanager
def _stderr_sent_to(file) -> Iterator[None]:
    sys.stderr.flush()
    saved = os.dup(2)
    os.dup2(file.fileno(), 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)

"""TensorFlow's one door: what it sets before TensorFlow loads, and what it reports after."""

import subprocess
import sys

import pytest

from movingline import runtime
from movingline import settings as settings_module
from movingline.errors import InputError
from movingline.settings import Settings, read_settings
from tests.conftest import ROOT, stage_env

KERNEL_VARIABLES = (runtime.ONEDNN_VARIABLE, runtime.ISA_VARIABLE)


def test_the_kernel_path_is_pinned_on_x86_64(monkeypatch):
    monkeypatch.setattr(runtime.platform, "machine", lambda: "x86_64")
    assert runtime.kernel_variables({}) == {"TF_ENABLE_ONEDNN_OPTS": "1", "ONEDNN_MAX_CPU_ISA": "AVX2"}


@pytest.mark.parametrize("variable", KERNEL_VARIABLES)
def test_a_kernel_variable_the_user_set_wins_and_the_other_stays_unset(monkeypatch, variable):
    monkeypatch.setattr(runtime.platform, "machine", lambda: "x86_64")
    env = {variable: "0" if variable == runtime.ONEDNN_VARIABLE else "ALL"}
    assert runtime.kernel_variables(env) == {}
    assert not any(v in runtime.tensorflow_environment(Settings(), env) for v in KERNEL_VARIABLES)


def test_other_processors_keep_tensorflows_own_choice(monkeypatch):
    monkeypatch.setattr(runtime.platform, "machine", lambda: "aarch64")
    assert runtime.kernel_variables({}) == {}


def test_threads_follow_movingline_threads():
    settings = read_settings({settings_module.THREADS_VARIABLE: "3"})
    wanted = runtime.tensorflow_environment(settings, {})
    assert wanted["TF_NUM_INTRAOP_THREADS"] == wanted["TF_NUM_INTEROP_THREADS"] == "3"
    assert "TF_NUM_INTRAOP_THREADS" not in runtime.tensorflow_environment(read_settings({}), {})


def test_a_bad_thread_count_names_the_variable():
    with pytest.raises(InputError, match="^MOVINGLINE_THREADS: expected a whole number of threads of at least 1, found 'two'$"):
        read_settings({settings_module.THREADS_VARIABLE: "two"})


def test_prepare_refuses_to_change_what_tensorflow_has_read(monkeypatch):
    runtime.prepare(Settings())  # loads TensorFlow (the tests' conftest already has)
    monkeypatch.delenv("TF_NUM_INTRAOP_THREADS", raising=False)
    monkeypatch.delenv("TF_NUM_INTEROP_THREADS", raising=False)
    with pytest.raises(RuntimeError, match="after TensorFlow loaded: it would not see TF_NUM_INTEROP_THREADS, TF_NUM_INTRAOP_THREADS"):
        runtime.prepare(Settings(threads=3))


def test_threads_count_the_usable_cores_not_the_machines(monkeypatch):
    monkeypatch.setattr(settings_module.os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    monkeypatch.setattr(settings_module.os, "cpu_count", lambda: 64)
    assert settings_module.thread_share(1) == 3 and settings_module.thread_share(2) == 1


def test_importing_the_door_loads_nothing_heavy():
    code = "import sys, movingline.runtime, movingline.model, movingline.cli, stages.train; print('tensorflow' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=stage_env(), capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr


def describe_in_a_new_process(extra_env: dict[str, str]) -> str:
    """runtime.kernel_path() in a fresh interpreter whose environment adds ``extra_env``."""
    env = stage_env()
    for variable in KERNEL_VARIABLES:
        env.pop(variable, None)
    env.update(extra_env)
    code = "from movingline import runtime, settings; print(runtime.prepare(settings.Settings()).kernels)"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.slow
@pytest.mark.full
@pytest.mark.skipif(runtime.platform.machine() != "x86_64", reason="the kernel pin applies to x86-64 only")
def test_the_log_names_the_kernel_path_and_who_chose_it():
    assert describe_in_a_new_process({}) == "oneDNN, AVX2 kernels"
    assert describe_in_a_new_process({"TF_ENABLE_ONEDNN_OPTS": "0"}) == "Eigen kernels (oneDNN off); set by TF_ENABLE_ONEDNN_OPTS=0"
    chosen = {"TF_ENABLE_ONEDNN_OPTS": "1", "ONEDNN_MAX_CPU_ISA": "avx512_core"}
    assert describe_in_a_new_process(chosen) == (
        "oneDNN, AVX512_CORE kernels; set by TF_ENABLE_ONEDNN_OPTS=1, ONEDNN_MAX_CPU_ISA=avx512_core"
    )


def test_tensorflow_loads_only_through_prepare():
    code = (
        "import sys\nfrom movingline import runtime\n"
        "try:\n    runtime.keras\nexcept RuntimeError as error:\n    print(error)\n"
        "print('tensorflow' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=stage_env(), capture_output=True, text=True)
    assert result.stdout.splitlines() == [
        "runtime.keras before runtime.prepare(settings): TensorFlow loads only through prepare()",
        "False",
    ], result.stderr


def test_prepare_returns_the_setup_a_checkpoint_key_names():
    setup = runtime.prepare(Settings())
    assert setup.as_dict() == {"threads": str(setup.threads), "kernels": setup.kernels, "versions": setup.versions}
    assert setup.versions.startswith("TensorFlow 2.") and setup.threads >= 1


def test_on_arm_the_kernel_path_says_what_tensorflow_chose_and_why():
    assert runtime.arm_kernel_path(False, "Linux", None) == (
        "Eigen kernels (oneDNN off): TensorFlow's default on every Arm CPU but Neoverse V1"
    )
    assert runtime.arm_kernel_path(True, "Linux", None) == (
        "oneDNN with the Arm Compute Library: TensorFlow's default on a Neoverse V1"
    )
    assert runtime.arm_kernel_path(True, "Linux", "1") == "oneDNN with the Arm Compute Library; set by TF_ENABLE_ONEDNN_OPTS=1"
    assert runtime.arm_kernel_path(False, "Darwin", None) == "Eigen kernels (oneDNN off)"


class FakeConfig:
    """The part of tf.config that configure_gpus() uses, recording the calls."""

    def __init__(self, gpus: list[str]):
        self.gpus = [type("PhysicalDevice", (), {"name": name})() for name in gpus]
        self.calls: list[tuple] = []
        self.experimental = self

    def list_physical_devices(self, kind):
        return self.gpus if kind == "GPU" else []

    def enable_tensor_float_32_execution(self, enabled):
        self.calls.append(("tf32", enabled))

    def set_memory_growth(self, device, enabled):
        self.calls.append(("growth", device.name, enabled))

    def get_device_details(self, device):
        return {"device_name": "NVIDIA H100 80GB HBM3"}

    def tensor_float_32_execution_enabled(self):
        return ("tf32", False) not in self.calls


def test_gpus_get_tf32_off_and_memory_growth_and_a_cpu_nothing():
    fake = type("FakeTF", (), {})()
    fake.config = FakeConfig(["/physical_device:GPU:0", "/physical_device:GPU:1"])
    assert runtime.configure_gpus(fake) == ["/physical_device:GPU:0", "/physical_device:GPU:1"]
    assert fake.config.calls == [("tf32", False), ("growth", "/physical_device:GPU:0", True),
                                 ("growth", "/physical_device:GPU:1", True)]
    assert runtime.describe_gpus(fake) == "2 GPUs: NVIDIA H100 80GB HBM3, NVIDIA H100 80GB HBM3 (TF32 off)"
    fake.config = FakeConfig([])
    assert runtime.configure_gpus(fake) == [] and fake.config.calls == []
    assert runtime.describe_gpus(fake) == ""


def test_without_a_gpu_tensorflow_keeps_its_own_settings():
    tf = runtime.tf
    if tf.config.list_physical_devices("GPU"):
        pytest.skip("this machine has a GPU")
    assert runtime.configure_gpus(tf) == []
    assert tf.config.experimental.tensor_float_32_execution_enabled()  # TensorFlow's default, untouched

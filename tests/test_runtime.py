"""TensorFlow's one door: what it sets before TensorFlow loads, and what it reports after."""

import subprocess
import sys

import pytest

from movingline import runtime
from movingline.errors import InputError
from tests.conftest import ROOT, stage_env

KERNEL_VARIABLES = (runtime.ONEDNN_VARIABLE, runtime.ISA_VARIABLE)


@pytest.fixture
def clean_environment(monkeypatch):
    for variable in (*KERNEL_VARIABLES, runtime.THREADS_VARIABLE, "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
        monkeypatch.delenv(variable, raising=False)
    return monkeypatch


def test_the_kernel_path_is_pinned_on_x86_64(clean_environment):
    clean_environment.setattr(runtime.platform, "machine", lambda: "x86_64")
    runtime.select_kernels()
    assert {variable: runtime.os.environ[variable] for variable in KERNEL_VARIABLES} == {
        "TF_ENABLE_ONEDNN_OPTS": "1",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
    }


@pytest.mark.parametrize("variable", KERNEL_VARIABLES)
def test_a_kernel_variable_the_user_set_wins_and_the_other_stays_unset(clean_environment, variable):
    clean_environment.setattr(runtime.platform, "machine", lambda: "x86_64")
    clean_environment.setenv(variable, "0" if variable == runtime.ONEDNN_VARIABLE else "ALL")
    runtime.select_kernels()
    other = next(v for v in KERNEL_VARIABLES if v != variable)
    assert other not in runtime.os.environ
    assert runtime.os.environ[variable] in ("0", "ALL")


def test_other_processors_keep_tensorflows_own_choice(clean_environment):
    clean_environment.setattr(runtime.platform, "machine", lambda: "aarch64")
    runtime.select_kernels()
    assert not any(variable in runtime.os.environ for variable in KERNEL_VARIABLES)


def test_threads_follow_movingline_threads(clean_environment):
    clean_environment.setenv(runtime.THREADS_VARIABLE, "3")
    runtime.prepare()
    assert runtime.os.environ["TF_NUM_INTRAOP_THREADS"] == runtime.os.environ["TF_NUM_INTEROP_THREADS"] == "3"
    assert runtime.threads() == 3


def test_a_bad_thread_count_names_the_variable(clean_environment):
    clean_environment.setenv(runtime.THREADS_VARIABLE, "two")
    with pytest.raises(InputError, match="^MOVINGLINE_THREADS: expected a whole number of threads of at least 1, found 'two'$"):
        runtime.prepare()


def test_importing_the_door_loads_nothing_heavy():
    code = "import sys, movingline.runtime, movingline.model, movingline.cli; print('tensorflow' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=stage_env(), capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr


def describe_in_a_new_process(extra_env: dict[str, str]) -> str:
    """runtime.kernel_path() in a fresh interpreter whose environment adds ``extra_env``."""
    env = stage_env()
    for variable in KERNEL_VARIABLES:
        env.pop(variable, None)
    env.update(extra_env)
    code = "from movingline import runtime; runtime.prepare(); print(runtime.kernel_path())"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.slow
@pytest.mark.skipif(runtime.platform.machine() != "x86_64", reason="the kernel pin applies to x86-64 only")
def test_the_log_names_the_kernel_path_and_who_chose_it():
    assert describe_in_a_new_process({}) == "oneDNN, AVX2 kernels"
    assert describe_in_a_new_process({"TF_ENABLE_ONEDNN_OPTS": "0"}) == "Eigen kernels (oneDNN off); set by TF_ENABLE_ONEDNN_OPTS=0"
    chosen = {"TF_ENABLE_ONEDNN_OPTS": "1", "ONEDNN_MAX_CPU_ISA": "avx512_core"}
    assert describe_in_a_new_process(chosen) == (
        "oneDNN, AVX512_CORE kernels; set by TF_ENABLE_ONEDNN_OPTS=1, ONEDNN_MAX_CPU_ISA=avx512_core"
    )

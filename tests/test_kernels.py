"""bench/kernels.py's parts that need no TensorFlow: each setting's environment, the CPU lines, the table."""

import pytest

from bench.kernels import VARIANTS, KernelRun, summarise, table
from bench.process import child_environment
from movingline.environment import cpu_flag, cpu_model
from movingline.runtime import ISA_VARIABLE as ISA
from movingline.runtime import ONEDNN_VARIABLE as ONEDNN

CPUINFO = (
    "processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 143\n"
    "model name\t: Intel(R) Xeon(R) Platinum 8480+\n"
    "flags\t\t: fpu sse2 avx2 avx512f avx512_vnni amx_tile\n\nprocessor\t: 1\n"
)


def variant_env(name: str) -> dict[str, str]:
    return child_environment(next(v for v in VARIANTS if v.name == name).env)


def test_each_setting_gets_only_its_own_kernel_variables_whatever_the_user_set(monkeypatch):
    monkeypatch.setenv(ONEDNN, "1")
    monkeypatch.setenv(ISA, "AVX512_CORE")
    pinned, default, off = (variant_env(name) for name in ("pinned", "default", "off"))
    assert ONEDNN not in pinned and ISA not in pinned
    assert ONEDNN not in default and default[ISA] == "ALL"
    assert off[ONEDNN] == "0" and ISA not in off
    # Everything else is passed on, quieted, with the project importable.
    assert pinned["TF_CPP_MIN_LOG_LEVEL"] == "2" and pinned["PYTHONPATH"]
    assert [v.name for v in VARIANTS] == ["pinned", "default", "off"]


def test_cpu_name_and_flag_come_from_cpuinfo():
    assert cpu_model(CPUINFO) == "Intel(R) Xeon(R) Platinum 8480+ (family 6, model 143)"
    assert cpu_model("model name\t: Ampere Altra\n") == "Ampere Altra"
    assert cpu_flag(CPUINFO, "avx512_vnni") is True
    assert cpu_flag(CPUINFO, "avx512_bf16") is False
    assert cpu_flag(CPUINFO.replace("avx512_vnni", "avx512_vnnix"), "avx512_vnni") is False
    assert cpu_flag("processor\t: 0\n", "avx512_vnni") is None
    assert cpu_model("processor\t: 0\n")  # a fallback name, never empty


def test_table_gives_medians_and_the_pinned_settings_ratios():
    runs = [
        KernelRun("pinned", 1, 300.0, 20.0, 30.0, 900_000_000, "a" * 32, "oneDNN"),
        KernelRun("default", 1, 150.0, 30.0, 50.0, 910_000_000, "b" * 32, "oneDNN"),
        KernelRun("off", 1, 40.0, 60.0, 100.0, 800_000_000, "c" * 32, "oneDNN"),
        KernelRun("pinned", 2, 320.0, 22.0, 32.0, 950_000_000, "a" * 32, "oneDNN"),
        KernelRun("default", 2, 170.0, 34.0, 54.0, 900_000_000, "d" * 32, "oneDNN"),
        KernelRun("off", 2, 42.0, 62.0, 110.0, 800_000_000, "c" * 32, "oneDNN"),
        KernelRun("pinned", 3, 100.0, 90.0, 40.0, 900_000_000, "a" * 32, "oneDNN"),
    ]
    summary = summarise(runs)
    assert list(summary) == ["pinned", "default", "off"]
    assert (summary["pinned"]["rate"], summary["pinned"]["wall_s"], summary["pinned"]["cpu_s"]) == (300.0, 22.0, 32.0)
    assert summary["pinned"]["kernel_paths"] == ["oneDNN"]
    assert summary["default"]["rate"] == 160.0 and summary["default"]["model_md5s"] == ["b" * 32, "d" * 32]
    lines = table(summary)
    assert lines[1].split()[:5] == ["pinned", "300.0", "22.0", "32.0", "950"]
    assert lines[1].endswith("300.0 20.0, 320.0 22.0, 100.0 90.0")
    assert f"{'b' * 32} / {'d' * 32}" in lines[2]
    assert lines[4] == (
        "pinned / default: 1.88x the steady-state speed, 0.69x the wall time, 0.62x the CPU time; different model bytes"
    )
    assert lines[5] == (
        "pinned / off: 7.32x the steady-state speed, 0.36x the wall time, 0.30x the CPU time; different model bytes"
    )
    rates = (("pinned", 2.0), ("default", 1.0))
    same = summarise([KernelRun(name, 1, rate, 1.0, 1.0, 1, "e", "oneDNN") for name, rate in rates])
    assert table(same)[-1] == (
        "pinned / default: 2.00x the steady-state speed, 1.00x the wall time, 1.00x the CPU time; same model bytes"
    )


@pytest.mark.parametrize("missing", ["pinned", "default"])
def test_table_leaves_out_a_ratio_it_cannot_compute(missing):
    names = [name for name in ("pinned", "default", "off") if name != missing]
    runs = [KernelRun(name, 1, 1.0, 1.0, 1.0, 1, "e", "oneDNN") for name in names]
    lines = table(summarise(runs))
    assert not any(line.startswith(f"pinned / {missing}") for line in lines)
    assert len(lines) == 3 + (missing == "default")

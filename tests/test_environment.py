"""The CPU a run records, from the texts Linux gives: x86-64, Arm, and Arm emulated on x86-64."""

import pytest

from movingline import environment
from movingline.environment import arm_ids, cpu_description, emulating_host

# This project's machine's /proc/cpuinfo (the first processor; the flags shortened).
X86_CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 167
model name\t: Intel(R) Xeon(R) Processor
stepping\t: 1
flags\t\t: fpu vme de pse tsc msr sse sse2 avx avx2 avx512f avx512_bf16 avx512_vnni amx_tile amx_int8
bogomips\t: 5199.99

processor\t: 1
vendor_id\t: GenuineIntel
"""

# A Neoverse V1 (AWS Graviton3) as Linux's arch/arm64/kernel/cpuinfo.c writes it: no 'model
# name', no 'flags'; the part number names the core.
NEOVERSE_V1_CPUINFO = """processor\t: 0
BogoMIPS\t: 2100.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm jscvt fcma lrcpc dcpop sha3 sm3 sm4 asimddp sha512 sve asimdfhm dit uscat ilrcpc flagm ssbs paca pacg dcpodp svei8mm svebf16 i8mm bf16 dgh rng
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x1
CPU part\t: 0xd40
CPU revision\t: 1

processor\t: 1
"""


def test_x86_64_names_the_model_and_the_flag_that_decides_tensorflows_oneDNN_default():
    assert cpu_description("x86_64", X86_CPUINFO, "", "x86_64") == (
        "Intel(R) Xeon(R) Processor (family 6, model 167), with avx512_vnni"
    )
    assert cpu_description("x86_64", X86_CPUINFO.replace(" avx512_vnni", ""), "", "x86_64").endswith(", no avx512_vnni")
    # Without /proc/sys/kernel/arch (kernels before 6.1) the same.
    assert cpu_description("x86_64", X86_CPUINFO, "", "") == cpu_description("x86_64", X86_CPUINFO, "", "x86_64")


def test_arm_names_implementer_and_part_from_cpuinfo():
    assert cpu_description("aarch64", NEOVERSE_V1_CPUINFO, "", "aarch64") == (
        "Arm Neoverse V1 (implementer 0x41, part 0xd40)"
    )
    n1 = NEOVERSE_V1_CPUINFO.replace("0xd40", "0xd0c")
    assert cpu_description("aarch64", n1, "", "aarch64") == "Arm Neoverse N1 (implementer 0x41, part 0xd0c)"


def test_arm_falls_back_to_midr_el1_and_shows_an_unknown_part_by_number():
    # MIDR_EL1 of an Ampere Altra (Neoverse N1 r3p1) as sysfs prints it.
    assert arm_ids("", "0x00000000413fd0c1\n") == (0x41, 0xD0C)
    assert cpu_description("aarch64", "processor\t: 0\n", "0x00000000413fd0c1\n", "aarch64") == (
        "Arm Neoverse N1 (implementer 0x41, part 0xd0c)"
    )
    assert cpu_description("aarch64", "", "0x00000000c00fac30\n", "aarch64") == "Ampere Ampere-1 (implementer 0xc0, part 0xac3)"
    assert cpu_description("aarch64", "", "0x00000000410fd990\n", "aarch64") == "Arm CPU (implementer 0x41, part 0xd99)"
    assert cpu_description("aarch64", "", "0x00000000990f1230\n", "aarch64") == (
        "Arm-architecture CPU (implementer 0x99, part 0x123)"
    )


def test_arm_without_ids_says_so():
    assert cpu_description("aarch64", "", "", "").endswith(", implementer and part unknown")
    assert cpu_description("aarch64", "CPU implementer\t: zz\nCPU part\t: 0xd40\n", "", "").endswith("part unknown")


def test_emulated_arm_says_emulated_not_the_hosts_cpu():
    # QEMU 7.2's user mode: uname says aarch64, /proc/cpuinfo and the kernel are the x86-64 host's.
    assert cpu_description("aarch64", X86_CPUINFO, "", "x86_64") == "aarch64 emulated on x86-64"
    # Either sign alone is enough: an older kernel without /proc/sys/kernel/arch, or a QEMU that
    # writes an Arm /proc/cpuinfo of its own.
    assert cpu_description("aarch64", X86_CPUINFO, "", "") == "aarch64 emulated on x86-64"
    assert cpu_description("aarch64", NEOVERSE_V1_CPUINFO, "", "x86_64") == "aarch64 emulated on x86-64"
    assert cpu_description("x86_64", NEOVERSE_V1_CPUINFO, "", "aarch64") == "x86-64 emulated on aarch64"
    assert "Xeon" not in cpu_description("aarch64", X86_CPUINFO, "", "x86_64")


@pytest.mark.parametrize(("machine", "kernel"), [("x86_64", "x86_64"), ("aarch64", "aarch64"), ("arm64", ""),
                                                 ("armv7l", "aarch64"), ("riscv64", "x86_64")])
def test_no_emulation_is_claimed_where_the_architectures_agree_or_are_not_ours(machine, kernel):
    cpuinfo = NEOVERSE_V1_CPUINFO if "arm" in machine or machine == "aarch64" else X86_CPUINFO
    assert emulating_host(machine, cpuinfo if machine != "riscv64" else "", kernel) is None


def test_describe_cpu_reads_this_machine(monkeypatch):
    texts = {environment.MIDR_PATH: "", environment.KERNEL_ARCH_PATH: "x86_64\n"}
    monkeypatch.setattr(environment, "read_cpuinfo", lambda: X86_CPUINFO)
    monkeypatch.setattr(environment, "read_text", lambda path: texts[path])
    monkeypatch.setattr(environment.platform, "machine", lambda: "aarch64")
    assert environment.describe_cpu() == "aarch64 emulated on x86-64"
    monkeypatch.setattr(environment.platform, "machine", lambda: "x86_64")
    assert environment.describe_cpu() == "Intel(R) Xeon(R) Processor (family 6, model 167), with avx512_vnni"

"""What machine and checkout a measurement ran on: the CPU from /proc/cpuinfo and the git
commit, read in one place for the benchmarks and the fingerprint."""

import platform
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


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


def commit() -> str:
    """The checkout's commit, marked '+changes' when the tracked files differ from it."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False).stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return head + ("+changes" if git("status", "--porcelain", "--untracked-files=no") else "")

"""The lock files agree with the requirements they were compiled from, on every platform.

Offline: scripts/check_platforms.sh asks the package index whether the wheels exist; this
only catches a requirements file edited without running scripts/update_locks.sh.
"""

from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent

PLATFORMS = {
    "Linux x86_64": {"sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64"},
    "Linux aarch64": {"sys_platform": "linux", "platform_system": "Linux", "platform_machine": "aarch64"},
    "macOS arm64": {"sys_platform": "darwin", "platform_system": "Darwin", "platform_machine": "arm64"},
}
PYTHONS = ("3.11", "3.12", "3.13")


def pins(path: Path, environment: dict) -> dict[str, str]:
    """Package name -> exact version, for the lines of a requirements file that apply here."""
    result = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate(environment):
            (specifier,) = requirement.specifier
            assert specifier.operator == "==", f"{path.name}: {line} is not an exact version"
            result[canonicalize_name(requirement.name)] = specifier.version
    return result


def environments():
    for platform, markers in PLATFORMS.items():
        for python in PYTHONS:
            interpreter = {"python_version": python, "python_full_version": f"{python}.0"}
            interpreter["implementation_name"] = "cpython"
            yield pytest.param({**markers, **interpreter}, id=f"{platform}-{python}")


@pytest.mark.parametrize("environment", environments())
@pytest.mark.parametrize(
    ("requirements", "lock"),
    [
        ("requirements.txt", "requirements.lock"),
        ("requirements-dev.txt", "requirements-dev.lock"),
        ("requirements-serve.txt", "requirements-serve.lock"),
    ],
)
def test_lock_pins_every_direct_requirement_at_its_version(requirements, lock, environment):
    direct = pins(ROOT / requirements, environment)
    locked = pins(ROOT / lock, environment)
    assert direct, requirements
    assert {name: locked.get(name) for name in direct} == direct


@pytest.mark.parametrize("environment", environments())
def test_one_tensorflow_build_per_platform(environment):
    locked = pins(ROOT / "requirements.lock", environment)
    builds = {name for name in locked if name in ("tensorflow", "tensorflow-cpu")}
    on_linux_x86_64 = environment["sys_platform"] == "linux" and environment["platform_machine"] == "x86_64"
    assert builds == ({"tensorflow-cpu"} if on_linux_x86_64 else {"tensorflow"})


def test_development_lock_keeps_the_runtime_versions():
    for environment in environments():
        runtime = pins(ROOT / "requirements.lock", environment.values[0])
        development = pins(ROOT / "requirements-dev.lock", environment.values[0])
        shared = runtime.keys() & development.keys()
        assert shared, "pytest shares packages (packaging, pygments) with the runtime"
        assert {name: development[name] for name in shared} == {name: runtime[name] for name in shared}


def test_serving_lock_is_the_runtime_lock_without_tensorflow():
    for environment in environments():
        runtime = pins(ROOT / "requirements.lock", environment.values[0])
        serving = pins(ROOT / "requirements-serve.lock", environment.values[0])
        assert {name: runtime.get(name) for name in serving} == serving
        assert not {"tensorflow", "tensorflow-cpu", "keras"} & serving.keys()

"""Training under Slurm: the step's environment read into a cluster, and runs against a real Slurm.

The parsing tests need nothing. The others run `srun` and `sbatch` on a Slurm that answers
on this machine (scripts/slurm/single_node.sh installs and starts a one-node one; .ci/run
does so on CI). Without one they are skipped, except under MOVINGLINE_REQUIRE_ALL=1, where they fail.
"""

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from movingline.errors import InputError
from movingline.cluster.team import read_cluster, worker_settings
from movingline.runtime import tensorflow_environment
from movingline.settings import read_settings, thread_share
from movingline.cluster.slurm import FIRST_PORT, PORT_BLOCK, PORT_BLOCKS, expand_hostlist, expand_tasks_per_node
from tests.conftest import (
    ROOT, THREAD_VARIABLES, copy_project, dvc, git_project, run, run_stage, slurm_env, stage_env, tiny_params, wait_until,
)
from tests.test_distributed import TRAIN, metrics_on, worker_projects

SBATCH_SCRIPT = ROOT / "scripts/slurm/train.sbatch"
# Those read_slurm_step reads; the tests' own process may run inside a Slurm job.
SLURM_VARIABLES = (
    "SLURM_JOB_ID", "SLURM_STEP_ID", "SLURM_STEP_NUM_TASKS", "SLURM_PROCID", "SLURM_LOCALID", "SLURMD_NODENAME",
    "SLURM_STEP_NODELIST", "SLURM_STEP_TASKS_PER_NODE", "SLURM_STEP_RESV_PORTS",
)


@pytest.mark.parametrize(
    "hostlist, hosts",
    [
        ("vm", ["vm"]),
        ("node[01-03,07],gpu5", ["node01", "node02", "node03", "node07", "gpu5"]),
        ("n[8-11]", ["n8", "n9", "n10", "n11"]),
        ("r[1-2]n[1-2]-ib", ["r1n1-ib", "r1n2-ib", "r2n1-ib", "r2n2-ib"]),
        ("a.example.org,b[0-1].example.org", ["a.example.org", "b0.example.org", "b1.example.org"]),
    ],
)
def test_expand_hostlist(hostlist, hosts):
    assert expand_hostlist(hostlist, "SLURM_STEP_NODELIST") == hosts


@pytest.mark.parametrize("hostlist", ["node[1-", "node]1[", "node[3-1]", "node[]", "a,,b", "node[a-b]", "n[[1]]", ""])
def test_bad_hostlist_is_refused(hostlist):
    with pytest.raises(InputError, match=r"^SLURM_STEP_NODELIST: "):
        expand_hostlist(hostlist, "SLURM_STEP_NODELIST")


def test_expand_tasks_per_node():
    assert expand_tasks_per_node("2(x3),1", "V") == [2, 2, 2, 1]
    assert expand_tasks_per_node("4", "V") == [4]


@pytest.mark.parametrize("counts", ["0", "2(x0)", "x", "2(3)", "2,", ""])
def test_bad_tasks_per_node_is_refused(counts):
    with pytest.raises(InputError, match=r"^SLURM_STEP_TASKS_PER_NODE: "):
        expand_tasks_per_node(counts, "SLURM_STEP_TASKS_PER_NODE")


def step_env(rank: int, nodes: str = "n[1-2]", tasks_per_node: str = "3,2", **more: str) -> dict[str, str]:
    """What srun sets for task ``rank`` of a step laid out in blocks (Slurm's default)."""
    counts = expand_tasks_per_node(tasks_per_node, "")
    hosts = expand_hostlist(nodes, "")
    node = next(i for i in range(len(counts)) if rank < sum(counts[: i + 1]))
    env = {
        "SLURM_JOB_ID": "4321",
        "SLURM_STEP_ID": "0",
        "SLURM_STEP_NUM_TASKS": str(sum(counts)),
        "SLURM_PROCID": str(rank),
        "SLURM_LOCALID": str(rank - sum(counts[:node])),
        "SLURMD_NODENAME": hosts[node],
        "SLURM_STEP_NODELIST": nodes,
        "SLURM_STEP_TASKS_PER_NODE": tasks_per_node,
    }
    return env | more


def test_every_task_of_a_step_sees_the_same_cluster_ranked_in_blocks():
    steps = [read_cluster(step_env(rank, SLURM_STEP_RESV_PORTS="12001-12003")) for rank in range(5)]
    addresses = ("n1:12001", "n1:12002", "n1:12003", "n2:12001", "n2:12002")
    for rank, cluster in enumerate(steps):
        assert cluster.addresses == addresses
        assert (cluster.rank, cluster.task_type, cluster.task_index) == (rank, "worker", rank)
        assert cluster.job_sizes == (("worker", 5),)
        assert cluster.tasks_on_node == (3 if rank < 3 else 2)


def test_without_reserved_ports_the_job_and_step_ids_pick_them():
    first = read_cluster(step_env(0)).addresses
    assert first == read_cluster(step_env(4)).addresses
    ports = [int(address.split(":")[1]) for address in first]
    assert ports == [ports[0] + local for local in (0, 1, 2, 0, 1)]
    assert FIRST_PORT <= ports[0] and ports[2] < FIRST_PORT + PORT_BLOCK * PORT_BLOCKS
    next_step = read_cluster(step_env(0, SLURM_STEP_ID="1")).addresses
    assert next_step != first


def test_outside_a_step_of_several_tasks_the_process_trains_alone():
    # The batch script itself: the job has two tasks, but no step runs them.
    assert read_cluster({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "2", "SLURM_PROCID": "0"}) is None
    assert read_cluster(step_env(0, nodes="n1", tasks_per_node="1")) is None
    assert read_cluster({}) is None


@pytest.mark.parametrize(
    "changes, problem",
    [
        ({"SLURM_STEP_NUM_TASKS": "two"}, r"^SLURM_STEP_NUM_TASKS: expected a whole number"),
        ({"SLURM_PROCID": "5"}, r"^SLURM_PROCID: expected a whole number from 0 to 4, found '5'"),
        ({"SLURM_PROCID": ""}, r"^SLURM_PROCID: not set"),
        ({"SLURM_STEP_NODELIST": ""}, r"^SLURM_STEP_NODELIST: not set"),
        ({"SLURM_STEP_NODELIST": "n[1-3]"}, r"^SLURM_STEP_TASKS_PER_NODE: .* names 3 node\(s\)"),
        ({"SLURM_STEP_TASKS_PER_NODE": "3,3"}, r"^SLURM_STEP_TASKS_PER_NODE: .* 6 task\(s\)"),
        ({"SLURMD_NODENAME": "n2"}, r"^SLURMD_NODENAME: 'n2', but task 1 .* would be 'n1'"),
        ({"SLURM_LOCALID": "0"}, r"^SLURM_LOCALID: '0', but task 1 .* would be '1'.*--distribution=block"),
        ({"SLURM_STEP_RESV_PORTS": "12001-12002"}, r"^SLURM_STEP_RESV_PORTS: '12001-12002' reserves 2 port\(s\)"),
        ({"SLURM_STEP_RESV_PORTS": "12001-"}, r"^SLURM_STEP_RESV_PORTS: "),
        ({"SLURM_STEP_RESV_PORTS": "65535-65537"}, r"^SLURM_STEP_RESV_PORTS: .* outside 1 to 65535"),
        ({"SLURM_JOB_ID": ""}, r"^SLURM_JOB_ID: not set"),
    ],
)
def test_bad_slurm_step_is_refused(changes, problem):
    with pytest.raises(InputError, match=problem):
        read_cluster(step_env(1) | changes)


def test_a_slurm_step_is_handed_to_tensorflow_with_a_thread_share():
    env = step_env(1, nodes="vm", tasks_per_node="2")
    before = dict(os.environ)
    cluster = read_cluster(env)
    settings, more = worker_settings(cluster, read_settings(env), env)
    assert dict(os.environ) == before, "reading the cluster wrote the environment"
    assert (cluster.rank, cluster.n_workers) == (1, 2)
    wanted = tensorflow_environment(settings, env, more)
    assert json.loads(wanted["TF_CONFIG"]) == {
        "cluster": {"worker": list(cluster.addresses)},
        "task": {"type": "worker", "index": 1},
    }
    assert wanted["TF_NUM_INTRAOP_THREADS"] == wanted["TF_NUM_INTEROP_THREADS"] == str(thread_share(2))


def test_a_thread_setting_is_kept_under_slurm():
    env = step_env(0, nodes="vm", tasks_per_node="2", MOVINGLINE_THREADS="3")
    cluster = read_cluster(env)
    settings, more = worker_settings(cluster, read_settings(env), env)
    assert settings.threads == 3 and cluster.rank == 0
    assert tensorflow_environment(settings, env, more)["TF_NUM_INTRAOP_THREADS"] == "3"


def test_tf_config_wins_over_slurm():
    config = {"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}
    env = step_env(4) | {"TF_CONFIG": json.dumps(config)}
    cluster = read_cluster(env)
    settings, more = worker_settings(cluster, read_settings(env), env)
    assert cluster.addresses == ("a:1", "b:2") and (cluster.rank, cluster.n_workers) == (1, 2)
    assert cluster.handed_config is None and settings.threads is None
    wanted = tensorflow_environment(settings, env, more)
    assert "TF_CONFIG" not in wanted and "TF_NUM_INTRAOP_THREADS" not in wanted


def test_the_cluster_is_read_only_for_training():
    """The other stages read the settings alone; only the train stage reads the cluster."""
    import stages.evaluate
    import stages.train

    assert "read_cluster" in vars(stages.train) and "read_cluster" not in vars(stages.evaluate)
    assert read_cluster(step_env(1)).n_workers == 5


@pytest.mark.slow
@pytest.mark.full
def test_stage_exits_2_with_one_line_on_a_bad_slurm_step(project):
    env = {k: v for k, v in stage_env().items() if k not in ("TF_CONFIG", *SLURM_VARIABLES)}
    env |= step_env(1, SLURMD_NODENAME="n2")
    result = subprocess.run(TRAIN, cwd=project, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: SLURMD_NODENAME: 'n2'"), result.stderr
    assert not (project / "models").exists()


# Against a real Slurm.


@pytest.fixture(scope="module")
def srun_run(slurm, data, tmp_path_factory) -> Path:
    """The train stage's own command under `srun -n 2`, both tasks in one project folder, as on one node."""
    (project,) = worker_projects(data, tmp_path_factory.mktemp("srun"), 1)
    before = set(project.rglob("*"))
    result = subprocess.run(["srun", "-n", "2", "--job-name=srun-test", *TRAIN], cwd=project, env=slurm_env(),
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    made = {path.relative_to(project).as_posix() for path in project.rglob("*") if path not in before}
    assert made == {"models", "models/model.keras", "models/training.json", "plots", "plots/training.csv"}
    assert result.stderr.count("TF_CONFIG set from the Slurm step") == 2, result.stderr
    # Each worker names its thread count where it trains: the node's cores shared by its two tasks.
    share = thread_share(2)
    assert result.stdout.count(f", {share} thread{'s' if share != 1 else ''})") == 2, result.stdout
    return project


@pytest.mark.slow
@pytest.mark.full
def test_srun_trains_on_two_workers_and_only_the_chief_writes(slurm, srun_run, data, tmp_path):
    """Each task in its own copy of the project, as on separate machines: task 1 writes nothing."""
    chief, worker = worker_projects(data, tmp_path, 2)
    in_own_copy = ["bash", "-c", f'cd "{tmp_path}/worker$SLURM_PROCID" && exec "$@"', "in-own-copy"]
    result = subprocess.run(["srun", "-n", "2", "--job-name=srun-test", *in_own_copy, *TRAIN], cwd=tmp_path,
                            env=slurm_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "training on 2 workers" in result.stdout
    assert not (worker / "models").exists() and not (worker / "plots/training.csv").exists()
    assert (chief / "models/model.keras").read_bytes() == (srun_run / "models/model.keras").read_bytes()


@pytest.mark.slow
@pytest.mark.full
def test_srun_matches_one_process(srun_run, data, built_project):
    """built_project trained the same params in one process (the data are the same, byte for byte)."""
    assert (built_project / "data/train.h5").read_bytes() == (data / "data/train.h5").read_bytes()
    alone = built_project
    metrics = {root: metrics_on(root / "models/model.keras", data / "data/test.h5") for root in (alone, srun_run)}
    assert metrics[srun_run]["accuracy"] == metrics[alone]["accuracy"]
    assert metrics[srun_run]["loss"] == pytest.approx(metrics[alone]["loss"], abs=1e-4)


@pytest.mark.slow
@pytest.mark.full
def test_srun_gives_the_same_bytes_as_two_tf_config_workers(srun_run, data, tmp_path):
    """The same cluster and, by the same thread share rule, the same threads: the same bytes."""
    (local,) = worker_projects(data, tmp_path, 1)
    subprocess.run([*TRAIN, "--local-workers", "2"], cwd=local, env=slurm_env(), check=True, capture_output=True)
    for output in ("models/model.keras", "plots/training.csv"):
        assert (local / output).read_bytes() == (srun_run / output).read_bytes(), output


@pytest.mark.slow
@pytest.mark.full
def test_a_step_signalled_mid_training_stops_every_worker_without_output(slurm, tmp_path):
    """What the batch script does before a time limit: `scancel --signal=TERM` reaches the workers.

    TensorFlow's coordination service took SIGTERM over when the workers joined, and they trained on.
    """
    params = tiny_params(generate_train={"n_samples": 1000}, train={"batch_size": 2, "epochs": 2})
    project = copy_project(tmp_path / "project", params)
    run_stage("generate_train", project)
    name = f"sigterm-{os.getpid()}"
    step = subprocess.Popen(["srun", "-n", "2", f"--job-name={name}", *TRAIN], cwd=project, env=slurm_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while "training on" not in step.stdout.readline():
            assert step.poll() is None, step.stderr.read()
        time.sleep(2)
        job = run(["squeue", "-h", "-n", name, "-o", "%i"], project).stdout.strip()
        run(["scancel", "--signal=TERM", job], project)
        _, stderr = step.communicate(timeout=60)
    finally:
        if step.poll() is None:
            step.kill()
    assert stderr.count("error: interrupted by SIGTERM; no partial output was left") == 2, stderr
    assert step.returncode == 143 and not (project / "models").exists()


def dvc_repo_with_remote(root: Path, params: dict | None = None) -> Path:
    """A git + DVC repository whose training set is made and pushed to a DVC remote in a folder beside it."""
    git_project(root, params)
    dvc(root, "remote", "add", "-d", "store", str(root.parent / "remote"))
    dvc(root, "repro", "generate_train")
    dvc(root, "push", "generate_train")
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-q", "-m", "training set"], root)
    return root


@pytest.mark.slow
@pytest.mark.full
def test_the_sbatch_script_trains_and_records_the_model_in_dvc(srun_run, tmp_path):
    repo = dvc_repo_with_remote(tmp_path / "repo")
    (repo / "data/train.h5").unlink()  # pulled back from the remote by the script
    result = subprocess.run(["sbatch", "--wait", "--parsable", str(SBATCH_SCRIPT)], cwd=repo, env=slurm_env(),
                            capture_output=True, text=True, timeout=600)
    log = repo / f"slurm-movingline-train-{result.stdout.strip()}.out"
    assert result.returncode == 0, log.read_text() if log.exists() else result.stderr
    assert (repo / "models/model.keras").read_bytes() == (srun_run / "models/model.keras").read_bytes()
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    assert [out["path"] for out in lock["stages"]["train"]["outs"]] == ["models/model.keras", "models/training.json",
                                                                        "plots/training.csv"]
    assert "in sync" in dvc(repo, "status", "--cloud", "train").stdout


def job_state(job: str) -> str:
    fields = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True).stdout.split()
    return next((field.split("=", 1)[1] for field in fields if field.startswith("JobState=")), "GONE")


@pytest.mark.slow
@pytest.mark.full
def test_a_signalled_job_requeues_and_resumes(slurm, tmp_path):
    # Long enough (two epochs of 500 steps) that the signal lands mid-training.
    params = tiny_params(generate_train={"n_samples": 1000}, train={"batch_size": 2, "epochs": 2})
    repo = dvc_repo_with_remote(tmp_path / "repo", params)
    job = run(["sbatch", "--parsable", str(SBATCH_SCRIPT)], repo).stdout.strip()
    log = repo / f"slurm-movingline-train-{job}.out"
    try:
        wait_until(lambda: log.exists() and "training on" in log.read_text(), "training to start", 300, interval=0.5)
        time.sleep(3)
        run(["scancel", "--batch", "--signal=TERM", job], repo)  # as Slurm does before the time limit
        wait_until(lambda: "requeueing" in log.read_text() and job_state(job) == "PENDING", "the requeue", 120, interval=0.5)
        # Slurm holds a requeued job for AuthInfo's cred_expire (20 s in single_node.sh's
        # slurm.conf). Forcing an earlier start can make slurmd refuse the job, whose
        # credential it still holds as revoked ("Job credential revoked").
        wait_until(lambda: job_state(job) in ("COMPLETED", "FAILED", "CANCELLED", "GONE"), "the requeued run", 400, interval=0.5)
    finally:
        subprocess.run(["scancel", job], capture_output=True)
    text = log.read_text()
    assert job_state(job) == "COMPLETED", text
    first, second = text.split(f"job {job}, run 2")
    assert "interrupted by SIGTERM" in first or "checkpoint" in first, text
    assert "resum" in second, text
    assert (repo / "models/model.keras").is_file()
    assert "train" in yaml.safe_load((repo / "dvc.lock").read_text())["stages"]

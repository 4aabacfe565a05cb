"""``python -m stages.train --local-workers N``: N training workers on this machine, on 127.0.0.1."""

import os
import signal
import socket
import subprocess
import sys
import time

from movingline.cluster.tf_config import VARIABLE, tf_config
from movingline.settings import THREADS_VARIABLE, Settings, thread_share


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports free on 127.0.0.1 now (the kernel picks them)."""
    sockets = []
    try:
        for _ in range(n):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def local_tf_configs(n_workers: int) -> list[str]:
    """One TF_CONFIG per worker of a cluster of ``n_workers`` on the loopback address."""
    addresses = [f"127.0.0.1:{port}" for port in free_ports(n_workers)]
    return [tf_config(addresses, rank) for rank in range(n_workers)]


def run_local_workers(n_workers: int, argv: list[str], settings: Settings) -> int:
    """Runs ``python -m stages.train ARGV`` as ``n_workers`` workers on this machine; returns the exit status.

    Each worker gets its own TF_CONFIG and, unless MOVINGLINE_THREADS is set, an equal share
    of the cores. When one fails the others are stopped at once, and the first failure's
    status is returned.
    """
    workers = []
    for config in local_tf_configs(n_workers):
        env = dict(os.environ, **{VARIABLE: config})
        env[THREADS_VARIABLE] = str(settings.threads or thread_share(n_workers))
        workers.append(subprocess.Popen([sys.executable, "-m", "stages.train", *argv], env=env))
    status = 0
    try:
        while any(worker.poll() is None for worker in workers) and status == 0:
            status = next((w.returncode for w in workers if w.returncode not in (None, 0)), 0)
            time.sleep(0.2)
        status = status or next((w.returncode for w in workers if w.returncode), 0)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
        for worker in workers:
            try:
                worker.wait(timeout=10)
            except subprocess.TimeoutExpired:
                # Blocked in TensorFlow's C++ (waiting for a peer), where SIGTERM is not handled.
                worker.kill()
                worker.wait()
    # A worker ended by a signal reports it as the shell does: 128 + the signal's number.
    return status if status >= 0 else 128 - status

"""A real S3 API on 127.0.0.1 for the tests: moto's server (`moto_server`) as a child process.

With ``authenticate=True`` the server checks credentials the way AWS does: it lets the
first few requests through unauthenticated (moto's INITIAL_NO_AUTH_ACTION_COUNT), which
create an IAM user allowed every S3 action, its access key and the bucket; after that a
wrong key is refused. Without it, any key is accepted (moto's default).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

BUCKET = "movingline"
REGION = "us-east-1"
# The unauthenticated requests that set the server up: create_user, create_access_key,
# put_user_policy; the bucket is then created with the new key.
SETUP_REQUESTS = 3
ALLOW_S3 = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class MotoServer:
    log_path: Path
    port: int
    authenticate: bool = True
    access_key_id: str = "testing"
    secret_access_key: str = "testing"
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MotoServer:
        """Starts the server process and waits until it answers; then makes the key and the bucket."""
        env = dict(os.environ)
        if self.authenticate:
            env["INITIAL_NO_AUTH_ACTION_COUNT"] = str(SETUP_REQUESTS)
        server = Path(sys.executable).parent / "moto_server"
        with open(self.log_path, "a", encoding="utf-8") as log:
            self.process = subprocess.Popen([str(server), "-H", "127.0.0.1", "-p", str(self.port)], env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto_server did not start; see {self.log_path}") from None
                time.sleep(0.1)
        if self.authenticate:
            self._create_user()
        self.client("s3").create_bucket(Bucket=BUCKET)
        return self

    def _create_user(self) -> None:
        iam = self.client("iam")
        iam.create_user(UserName="dvc")
        key = iam.create_access_key(UserName="dvc")["AccessKey"]
        iam.put_user_policy(UserName="dvc", PolicyName="s3", PolicyDocument=json.dumps(ALLOW_S3))
        self.access_key_id, self.secret_access_key = key["AccessKeyId"], key["SecretAccessKey"]

    def client(self, service: str):
        import boto3

        return boto3.client(
            service, endpoint_url=self.url, region_name=REGION,
            aws_access_key_id=self.access_key_id, aws_secret_access_key=self.secret_access_key,
        )

    def stop(self) -> None:
        """Ends the server at once (SIGKILL): what a crash or a lost connection looks like to DVC."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def requests(self, marker: str) -> int:
        """How many requests the server has logged whose line holds ``marker`` (e.g. 'PUT /movingline/')."""
        return self.log_path.read_text(encoding="utf-8", errors="replace").count(marker)

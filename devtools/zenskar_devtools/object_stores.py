"""Object stores on loopback for the tests: moto's S3 server and Azurite (Azure Blob Storage), each started as
a process of its own on a free port. Not a thread of the test process: delta-rs holds the GIL while some of
its calls wait for the store, so a server in the same interpreter would wait on its own client.

Each server comes with the variables a user would export to reach it (the `destination` resource's
`EnvVar`s) and a plain client for the tests' own looks at what landed. `python -m
zenskar_devtools.object_stores s3` serves moto's S3 (`--unconditional`: deaf to conditional writes, as some
S3-compatible stores are) and prints one JSON line with its endpoint.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

REGION = "us-east-1"
NODE_BIN = Path(__file__).resolve().parent.parent / "node_modules" / ".bin"
START_TIMEOUT_S = 60
# The IAM calls that make the tests' user and its key go unauthenticated; every request after them is signed
# and checked, so a wrong key gets the 403 a real S3 answers.
_SETUP_CALLS = 3


@dataclass
class _Process:
    process: subprocess.Popen[str]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@dataclass
class S3Server:
    """moto's S3 server: `endpoint`, and an access key it checks every request against (unless `checks_keys`
    is False)."""

    endpoint: str
    access_key_id: str
    secret_access_key: str
    checks_keys: bool
    _process: _Process = field(repr=False)

    def env(self) -> dict[str, str]:
        """The AWS_* variables a user exports for this store."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_REGION": REGION,
            "AWS_ALLOW_HTTP": "true",
        }

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            region_name=REGION,
        )

    def create_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name

    def objects(self, bucket: str, prefix: str = "") -> dict[str, bytes]:
        """Every object under `prefix`, by key, with its bytes."""
        s3 = self.client()
        keys = [
            item["Key"]
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for item in page.get("Contents", [])
        ]
        return {key: s3.get_object(Bucket=bucket, Key=key)["Body"].read() for key in keys}

    def stop(self) -> None:
        self._process.stop()


def start_s3(*, checks_keys: bool = True, conditional_writes: bool = True) -> S3Server:
    """A moto S3 server on a free loopback port. `checks_keys`: every request after the setup of the tests'
    IAM user must be signed with its key. `conditional_writes` False: it ignores `If-None-Match`."""
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": str(_SETUP_CALLS if checks_keys else 10**9)}
    command = [sys.executable, "-m", "zenskar_devtools.object_stores", "s3"]
    process = subprocess.Popen(
        [*command, *([] if conditional_writes else ["--unconditional"])],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    line = _wait_for_line(process, lambda text: text.startswith("{"), "moto's S3 server")
    _drain(process.stdout)
    endpoint = json.loads(line)["endpoint"]
    key_id, secret = "AKIAZENSKARTESTS0000", "not-checked"
    if checks_keys:
        import boto3

        setup = {"aws_access_key_id": "setup", "aws_secret_access_key": "setup", "region_name": REGION}
        iam = boto3.client("iam", endpoint_url=endpoint, **setup)
        iam.create_user(UserName="pipeline")
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        iam.put_user_policy(UserName="pipeline", PolicyName="everything", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName="pipeline")["AccessKey"]
        key_id, secret = key["AccessKeyId"], key["SecretAccessKey"]
    return S3Server(endpoint, key_id, secret, checks_keys, _Process(process))


@dataclass
class AzuriteServer:
    """Azurite's Blob service: one storage account, `account` with `key`, at `endpoint`."""

    endpoint: str  # http://127.0.0.1:<port>/<account>
    account: str
    key: str
    _process: _Process = field(repr=False)

    def env(self) -> dict[str, str]:
        """The AZURE_* variables a user exports for this store."""
        return {
            "AZURE_STORAGE_ACCOUNT_NAME": self.account,
            "AZURE_STORAGE_ACCOUNT_KEY": self.key,
            "AZURE_STORAGE_ENDPOINT": self.endpoint,
            "AZURE_ALLOW_HTTP": "true",
        }

    def client(self) -> Any:
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient(
            account_url=self.endpoint, credential={"account_name": self.account, "account_key": self.key}
        )

    def create_container(self, name: str) -> str:
        self.client().create_container(name)
        return name

    def objects(self, container: str, prefix: str = "") -> dict[str, bytes]:
        """Every blob under `prefix`, by name, with its bytes."""
        blobs = self.client().get_container_client(container)
        return {
            blob.name: blobs.download_blob(blob.name).readall()
            for blob in blobs.list_blobs(name_starts_with=prefix or None)
        }

    def stop(self) -> None:
        self._process.stop()


def start_azurite() -> AzuriteServer:
    """Azurite's Blob service on a free loopback port, in memory, with a storage account of its own (a fresh
    key, so that tests can look for it where it must not be). Needs `npm ci --prefix devtools` (`make
    test` runs it)."""
    binary = NODE_BIN / "azurite-blob"
    if not binary.exists() or shutil.which("node") is None:
        raise RuntimeError(f"no Azurite at {binary}; run `npm ci --prefix devtools` (make test does)")
    account = "zenskartest"
    key = base64.b64encode(secrets.token_bytes(64)).decode()
    process = subprocess.Popen(
        [
            str(binary),
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            "0",
            "--inMemoryPersistence",
            "--skipApiVersionCheck",
            "--disableTelemetry",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "AZURITE_ACCOUNTS": f"{account}:{key}"},
    )
    line = _wait_for_line(process, lambda text: "listens on http" in text, "Azurite")
    match = re.search(r"http://\S+", line)
    assert match is not None, line
    _drain(process.stdout)
    return AzuriteServer(f"{match.group(0).rstrip('/')}/{account}", account, key, _Process(process))


def _wait_for_line(process: subprocess.Popen[str], wanted: Callable[[str], bool], what: str) -> str:
    """The first line of the process's output that `wanted` accepts; fails when it exits or takes too long."""
    assert process.stdout is not None
    deadline = time.monotonic() + START_TIMEOUT_S
    seen: list[str] = []
    for line in process.stdout:
        if wanted(line):
            return line.strip()
        seen.append(line)
        if time.monotonic() > deadline:
            break
    process.kill()
    raise RuntimeError(f"{what} did not start: " + "".join(seen[-20:]))


def _drain(stream: IO[str] | None) -> None:
    """Keep reading a server's output in the background, so that a full pipe never stalls it."""
    import threading

    if stream is not None:
        threading.Thread(target=lambda: [None for _ in stream], daemon=True).start()


# --- the S3 server process -----------------------------------------------------------------------------


def _without_conditions(app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    """A WSGI app that serves `app` as if requests carried no conditional-write headers."""

    def serve(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        environ.pop("HTTP_IF_NONE_MATCH", None)
        environ.pop("HTTP_IF_MATCH", None)
        return app(environ, start_response)

    return serve


def serve_s3(unconditional: bool) -> None:
    from moto.server import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    app: Any = DomainDispatcherApplication(create_backend_app)
    server = make_server("127.0.0.1", 0, _without_conditions(app) if unconditional else app, threaded=True)
    print(json.dumps({"endpoint": f"http://127.0.0.1:{server.port}"}), flush=True)
    server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m zenskar_devtools.object_stores")
    commands = parser.add_subparsers(dest="command", required=True)
    s3 = commands.add_parser("s3", help="serve moto's S3 on a free loopback port")
    s3.add_argument("--unconditional", action="store_true", help="ignore If-None-Match and If-Match")
    args = parser.parse_args(argv)
    serve_s3(args.unconditional)


if __name__ == "__main__":
    main()

"""`zenskar-pipeline zenskar-api serve`, run as a user runs it: a process of its own, stopped with SIGTERM."""

from __future__ import annotations

import json
import signal
import stat
import subprocess
import sys
from pathlib import Path

import urllib3

CLI = [sys.executable, "-m", "zenskar_pipeline.cli"]


def test_serve_prints_its_settings_writes_the_env_file_and_serves_until_sigterm(tmp_path: Path) -> None:
    (tmp_path / "schemas.json").write_text(json.dumps({"api_calls": {"quantity": "Int64"}}))
    server = subprocess.Popen(
        [*CLI, "zenskar-api", "serve", "--state-dir", "state", "--schemas", "schemas.json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    try:
        assert server.stdout is not None
        settings = json.loads(server.stdout.readline())
        assert set(settings) == {"api_url", "organisation", "api_key"}
        assert settings["api_url"].startswith("http://127.0.0.1:")
        assert settings["organisation"] == "local-org"
        assert len(settings["api_key"]) >= 32
        env_file = tmp_path / "state" / "zenskar-api.env"
        assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
        assert dict(line.split("=", 1) for line in env_file.read_text().splitlines()) == {
            "ZENSKAR_API_URL": settings["api_url"],
            "ZENSKAR_ORGANISATION": "local-org",
            "ZENSKAR_API_KEY": settings["api_key"],
        }
        answer = urllib3.request(
            "POST",
            settings["api_url"] + "/usage/api_calls",
            json=[{"customer_id": "c", "timestamp": "2026-01-01T00:00:00Z", "data": {"quantity": 1}}],
            headers={"organisation": settings["organisation"], "x-api-key": settings["api_key"]},
        )
        assert (answer.status, answer.json()) == (200, {"accepted": 1})
    finally:
        server.send_signal(signal.SIGTERM)
        stdout, stderr = server.communicate(timeout=10)
    assert server.returncode == 0
    assert stdout == ""  # nothing after the JSON line, nor per request
    assert settings["api_key"] not in stderr


def test_serve_takes_its_organisation_and_key_and_refuses_a_bad_schemas_file(tmp_path: Path) -> None:
    (tmp_path / "schemas.json").write_text(json.dumps({"api_calls": {"quantity": "Integer"}}))
    refused = subprocess.run(
        [*CLI, "zenskar-api", "serve", "--state-dir", "state", "--schemas", "schemas.json"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=30,
    )
    assert refused.returncode != 0
    assert "unknown type 'Integer'" in refused.stderr
    server = subprocess.Popen(
        [*CLI, "zenskar-api", "serve", "--state-dir", "s", "--organisation", "acme", "--api-key", "k-123"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    try:
        assert server.stdout is not None
        settings = json.loads(server.stdout.readline())
        assert (settings["organisation"], settings["api_key"]) == ("acme", "k-123")
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(10) == 0

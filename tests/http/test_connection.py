"""What an `http` connection does for every request: TLS checked against the system's or a
stated certificate authority, a rate limit, OAuth2 client credentials with a token asked for
again when the API stops taking it."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from tests.http.conftest import http_spec
from tests.http.server import CLIENT_SECRET, TOKEN, Api, serve
from tests.http.test_source import a_task


@pytest.fixture
def tls_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("API_TOKEN", TOKEN)
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    served = Api(12)
    with serve(served, (str(cert), str(key))):
        yield served


def test_tls_is_checked_against_the_stated_authority(tls_api, mem, sync, tmp_path):
    (untrusted,) = sync(http_spec(tls_api, retries=0), mem.spec, [a_task()])
    assert untrusted.status == "failed" and "CERTIFICATE_VERIFY_FAILED" in untrusted.error
    (trusted,) = sync(http_spec(tls_api, ca_file="cert.pem"), mem.spec, [a_task()])
    assert trusted.status == "succeeded", trusted.error
    assert len(mem.rows("items")) == 12
    (unchecked,) = sync(http_spec(tls_api, verify=False), mem.spec, [a_task()], job="other")
    assert unchecked.status == "succeeded", unchecked.error


def test_the_rate_limit_spaces_requests(api, mem, sync):
    started = time.monotonic()
    (result,) = sync(http_spec(api, rate_limit=4), mem.spec, [a_task()])
    assert result.status == "succeeded", result.error
    requests = 1 + len(api.requests)  # the connection check, then 5 pages
    assert time.monotonic() - started >= (requests - 1) / 4 * 0.95  # a floor only: load makes it slower


def test_oauth2_client_credentials_and_a_revoked_token(api, mem, sync, monkeypatch):
    monkeypatch.setenv("CLIENT_SECRET", CLIENT_SECRET)
    api.auth = "oauth"
    auth = {
        "type": "oauth2",
        "token_url": f"{api.base}/oauth/token",
        "client_id": "robot",
        "client_secret": "${env:CLIENT_SECRET}",
        "scope": "read",
    }
    spec = http_spec(api, auth=auth)

    original = api.page

    def revoke_after_first(path, query):
        if query.get("after") == "10" and api.tokens_issued == 1:
            api.revoked.add("at-1-x9y8")
        return original(path, query)

    api.page = revoke_after_first  # the first token stops working after the first page
    (result,) = sync(spec, mem.spec, [a_task()])
    assert result.status == "succeeded", result.error
    assert len(mem.rows("items")) == 45
    assert api.tokens_issued == 2  # asked once, then again when the API answered 401


def test_a_wrong_client_secret_fails_without_showing_it(api, mem, sync, monkeypatch):
    monkeypatch.setenv("CLIENT_SECRET", "not-the-secret-at-all")
    auth = {
        "type": "oauth2",
        "token_url": f"{api.base}/oauth/token",
        "client_id": "robot",
        "client_secret": "${env:CLIENT_SECRET}",
    }
    (result,) = sync(http_spec(api, auth=auth), mem.spec, [a_task()])
    assert result.status == "failed" and "gave no access token (401)" in result.error
    assert "not-the-secret-at-all" not in result.error


def test_connections_test_fails_on_a_refused_token_and_takes_any_other_answer(api, monkeypatch, tmp_path):
    """`runner connections test` reported a wrong token `ok` (the root's 401 was "an answer")."""
    from runner.connectors.http.connection import HttpConnection
    from runner.connectors.http.connector import test
    from runner.errors import TerminalError

    spec = HttpConnection.model_validate(http_spec(api))
    assert test("api", spec, tmp_path).endswith("answered 404 Not Found")  # the root: no endpoint
    monkeypatch.setenv("API_TOKEN", "not-the-token")
    with pytest.raises(TerminalError, match="answered 401 Unauthorized to the connection's bearer") as failed:
        test("api", spec, tmp_path)
    assert "not-the-token" not in str(failed.value)

"""The requests of an `http` connection: signed in, rate-limited, retried, and never showing a
secret.

A request answered 429 or 5xx, or not answered at all, is tried again after a backoff that
doubles each time (honouring the server's `Retry-After`), up to the connection's `retries`;
then the failure is transient (the run may be retried). Any other answer is returned to the
caller, who decides what a 4xx means. Every URL shown in an error has its API key parameter
blanked, and every message passes through `secrets.redact` (tokens fetched at run time are
remembered for it too). A link the API hands out (a next page) is followed only on the
connection's own scheme, host and port: the credentials never go to another server."""

from __future__ import annotations

import base64
import email.utils
import logging
import time
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.connectors.http.connection import ApiKeyAuth, BasicAuth, BearerAuth, HttpConnection, OAuth2Auth
from runner.definitions import secrets
from runner.definitions.models import seconds
from runner.errors import TerminalError, TransientError

if TYPE_CHECKING:
    import httpx

BODY_START = 300  # characters of a failed response's body quoted in an error
MAX_BODY = 16 * 1024 * 1024  # bytes of an answer's body (decompressed) runner takes, at most
FIRST_BACKOFF = 0.5  # seconds before the first retry; doubled each time
USER_AGENT = "runner (https://github.com/runner)"


class _Redacted(logging.Filter):
    """httpx logs each request's URL at INFO: an API key in its query would reach whatever
    handler a host process or a debugging session sets up. Its records are redacted here."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = secrets.redact(record.getMessage()), ()
        return True


logging.getLogger("httpx").addFilter(_Redacted())


def body_start(response: httpx.Response) -> str:
    """The start of a response's body, on one line, redacted."""
    try:
        text = response.text
    except (UnicodeDecodeError, LookupError):
        text = repr(response.content[:BODY_START])
    text = " ".join(secrets.redact(text[: BODY_START * 2]).split())
    return text[:BODY_START] + ("…" if len(text) > BODY_START else "")


class HttpClient:
    """One connection's client: a pool of keep-alive connections to the API."""

    def __init__(self, name: str, spec: HttpConnection, base_dir: Path):
        import httpx

        self.name, self.spec, self.base_dir = name, spec, base_dir
        self.base = urllib.parse.urlsplit(spec.base_url)
        self.interval = 1.0 / spec.rate_limit if spec.rate_limit else 0.0
        self.next_slot = 0.0
        self.headers: dict[str, str] = {"User-Agent": USER_AGENT, **spec.headers}
        self.params: dict[str, str] = {}
        self.hidden_param: str | None = None  # the API key's parameter, blanked in shown URLs
        self.token: str | None = None  # an OAuth2 access token
        self.token_expires = 0.0
        auth = spec.auth
        try:
            if isinstance(auth, BearerAuth):
                self.headers["Authorization"] = f"Bearer {secrets.resolve(auth.token, base_dir)}"
            elif isinstance(auth, BasicAuth):
                password = secrets.resolve(auth.password, base_dir)
                pair = base64.b64encode(f"{auth.username}:{password}".encode()).decode()
                secrets.remember(pair)
                self.headers["Authorization"] = f"Basic {pair}"
            elif isinstance(auth, ApiKeyAuth):
                key = secrets.resolve(auth.value, base_dir)
                if auth.location == "header":
                    self.headers[auth.name] = key
                else:
                    self.params[auth.name] = key
                    self.hidden_param = auth.name  # its URL-encoded forms are redacted too
        except secrets.SecretError as exc:
            raise TerminalError(f"connection {name!r}: {exc}") from None
        timeout = self.timeout = seconds(spec.timeout)
        try:
            verify = spec.tls_verify(base_dir)
        except OSError as exc:  # ssl.SSLError is one too
            raise TerminalError(
                f"connection {name!r}: ca_file {spec.ca_file!r}: {exc.strerror or exc}"
            ) from None
        self.client = httpx.Client(
            verify=verify,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            headers=self.headers,
            follow_redirects=False,
        )

    def close(self) -> None:
        self.client.close()

    # --- URLs -------------------------------------------------------------------------

    def url(self, path_or_link: str) -> str:
        """An endpoint's path (relative to `base_url`) or a link the API gave, as an absolute URL.

        Raises:
            TerminalError: a link to another server (the credentials would go with it), with a
                user or password of the API's choosing, or one httpx cannot send.
        """
        import httpx

        try:
            if "://" not in path_or_link and not path_or_link.startswith("//"):
                path = path_or_link if path_or_link.startswith("/") else f"/{path_or_link}"
                if path.startswith(self.base.path + "/") and self.base.path:
                    absolute = f"{self.base.scheme}://{self.base.netloc}{path}"  # a link from the host's root
                else:
                    absolute = f"{self.spec.base_url}{path}"
            else:
                absolute = urllib.parse.urljoin(self.spec.base_url + "/", path_or_link)
            parts = urllib.parse.urlsplit(absolute)
            where = (parts.scheme, parts.hostname, parts.port)  # `port` may raise ValueError
            httpx.URL(absolute)  # what httpx would refuse when sending (a control character, say)
        except (ValueError, httpx.InvalidURL) as exc:
            raise TerminalError(
                f"connection {self.name!r}: the API links to a URL runner cannot use ({exc}): "
                f"{secrets.redact(path_or_link[:200])!r}"
            ) from None
        if where != (self.base.scheme, self.base.hostname, self.base.port):
            raise TerminalError(
                f"connection {self.name!r}: the API links to {parts.scheme}://{parts.hostname}, not to "
                f"{self.base.scheme}://{self.base.hostname}: runner sends its credentials only to the latter"
            )
        if parts.username is not None or parts.password is not None:
            raise TerminalError(
                f"connection {self.name!r}: the API links to a URL with a user or password in it "
                "(httpx would sign in with them instead of the connection's auth)"
            )
        return absolute

    def shown(self, url: str) -> str:
        """A URL as an error may show it: the API key's parameter blanked, secrets redacted."""
        if self.hidden_param:
            parts = urllib.parse.urlsplit(url)
            query = [
                (k, "***" if k == self.hidden_param else v)
                for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
            ]
            url = urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query, safe="*")))
        return secrets.redact(url)

    # --- requests -----------------------------------------------------------------------

    def request(
        self,
        method: str,
        url: str,
        params: dict[str, Any] | None = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """Send a request, retried on 429, 5xx and no answer; any other answer is returned.

        Raises:
            TransientError: still failing after the connection's retries.
            TerminalError: the token endpoint refused the client's credentials.
        """
        import httpx

        query = {**(params or {}), **self.params}
        # httpx replaces a URL's query with `params`: a next link's own parameters are merged here
        try:
            target = httpx.URL(url).copy_merge_params(query) if query else httpx.URL(url)
        except httpx.InvalidURL as exc:  # a parameter of the API's (a cursor) too long, say
            raise TerminalError(
                f"connection {self.name!r}: {method} {self.shown(url)} cannot be sent with its "
                f"parameters: {exc}"
            ) from None
        attempt, refreshed = 0, False
        while True:
            self._wait_for_slot()
            sent = dict(headers or {})
            if isinstance(self.spec.auth, OAuth2Auth):
                sent["Authorization"] = f"Bearer {self._token()}"
            try:
                response = self._send(method, target, content=content, headers=sent)
            except httpx.LocalProtocolError as exc:  # runner's request itself: sent again, the same
                raise TerminalError(
                    f"connection {self.name!r}: {method} {self.shown(str(target))} cannot be sent: "
                    f"{str(exc).split(' b', 1)[0]} (a header's value holds a line break or another "
                    "character HTTP does not allow)"
                ) from None
            except httpx.TransportError as exc:
                reason = f"no answer ({type(exc).__name__}: {secrets.redact(str(exc))})"
                wait = FIRST_BACKOFF * 2**attempt
            else:
                status = response.status_code
                if status == 401 and isinstance(self.spec.auth, OAuth2Auth) and not refreshed:
                    refreshed, self.token = True, None  # the token may have been revoked: one more
                    continue
                if status != 429 and status < 500:
                    return response
                reason = f"{status} {response.reason_phrase}: {body_start(response)}"
                wait = self._retry_after(response, attempt)
            if attempt >= self.spec.retries or wait is None:
                why = "" if wait is not None else f" (Retry-After longer than {self.spec.max_retry_wait})"
                raise TransientError(
                    f"connection {self.name!r}: {method} {self.shown(str(target))} failed "
                    f"after {attempt + 1} attempt(s){why}: {reason}"
                )
            attempt += 1
            time.sleep(min(wait, seconds(self.spec.max_retry_wait)))

    def probe(self) -> httpx.Response:
        """One GET of `base_url`, signed in, not retried: whether the API can be reached (any
        answer will do: an API's root may well be a 404, or a 5xx).

        Raises:
            TransientError: no answer.
        """
        import httpx

        headers = (
            {"Authorization": f"Bearer {self._token()}"} if isinstance(self.spec.auth, OAuth2Auth) else {}
        )
        self._wait_for_slot()  # a request like any other, within the rate limit
        try:
            return self._send(
                "GET", httpx.URL(self.spec.base_url).copy_merge_params(self.params), headers=headers
            )
        except httpx.TransportError as exc:
            raise TransientError(
                f"connection {self.name!r}: cannot reach {self.spec.base_url}: "
                f"{type(exc).__name__}: {secrets.redact(str(exc))}"
            ) from None

    def fail(self, method: str, response: httpx.Response, what: str = "") -> TerminalError:
        """The error of an answer the caller does not accept: the URL and the body's start (and,
        for a redirect, where to: runner follows none, its credentials would go along)."""
        location = response.headers.get("Location")
        if 300 <= response.status_code < 400 and location:
            to = urllib.parse.urlsplit(urllib.parse.urljoin(str(response.request.url), location))
            what += (
                f" (a redirect to {to.scheme}://{to.netloc.rpartition('@')[2]}{to.path}: runner follows "
                "none; point base_url or the path there)"
            )
        return TerminalError(
            f"connection {self.name!r}: {method} {self.shown(str(response.request.url))} answered "
            f"{response.status_code} {response.reason_phrase}{what}: {body_start(response)}"
        )

    def _send(self, method: str, url: Any, **options: Any) -> httpx.Response:
        """Send a request and read its answer whole, but no more than `MAX_BODY` bytes and within
        `timeout` in all (httpx's timeout bounds each read, so a server dripping a byte at a time
        would hold the run for ever).

        Raises:
            httpx.TransportError: no answer, or not in time.
            TerminalError: a body too big, or one its Content-Encoding does not decode.
        """
        import httpx

        deadline = time.monotonic() + self.timeout
        request = self.client.build_request(method, url, **options)
        response = self.client.send(request, stream=True)
        try:
            chunks: list[bytes] = []
            size = 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > MAX_BODY:
                    raise TerminalError(
                        f"connection {self.name!r}: {method} {self.shown(str(request.url))} answered with "
                        f"a body over {MAX_BODY // 2**20} MiB (decompressed): ask for smaller pages"
                    )
                if time.monotonic() > deadline:
                    raise httpx.ReadTimeout(
                        f"the answer took longer than {self.spec.timeout}", request=request
                    )
                chunks.append(chunk)
        except httpx.DecodingError as exc:
            raise TerminalError(
                f"connection {self.name!r}: {method} {self.shown(str(request.url))} answered with a body "
                f"its Content-Encoding {response.headers.get('Content-Encoding')!r} does not decode: "
                f"{secrets.redact(str(exc))}"
            ) from None
        finally:
            response.close()
        response._content = b"".join(chunks)  # what `response.read()` would set
        return response

    def _retry_after(self, response: httpx.Response, attempt: int) -> float | None:
        """Seconds to wait before trying again: the server's Retry-After (seconds or a date),
        else the backoff; None when the server asks for longer than `max_retry_wait`."""
        backoff = FIRST_BACKOFF * 2**attempt
        header = response.headers.get("Retry-After")
        if header is None:
            return backoff
        header = header.strip()
        if header.isascii() and header.isdigit():  # `isdigit` alone takes `²`, which float() does not
            wait = float(header)
        else:
            try:
                when = email.utils.parsedate_to_datetime(header)
            except (TypeError, ValueError):
                return backoff
            wait = max(0.0, when.timestamp() - time.time())
        return None if wait > seconds(self.spec.max_retry_wait) else wait

    def _wait_for_slot(self) -> None:
        if not self.interval:
            return
        now = time.monotonic()
        if now < self.next_slot:
            time.sleep(self.next_slot - now)
            now = self.next_slot
        self.next_slot = now + self.interval

    def _token(self) -> str:
        """An OAuth2 access token (client credentials), asked for again shortly before it expires."""
        import httpx

        auth = self.spec.auth
        assert isinstance(auth, OAuth2Auth)
        if self.token is not None and time.monotonic() < self.token_expires:
            return self.token
        try:
            secret = secrets.resolve(auth.client_secret, self.base_dir)
        except secrets.SecretError as exc:
            raise TerminalError(f"connection {self.name!r}: {exc}") from None
        form = {"grant_type": "client_credentials", "client_id": auth.client_id, "client_secret": secret}
        if auth.scope:
            form["scope"] = auth.scope
        try:
            response = self._send("POST", auth.token_url, data=form, headers={"Accept": "application/json"})
        except httpx.TransportError as exc:
            raise TransientError(
                f"connection {self.name!r}: no answer from the token endpoint {auth.token_url} "
                f"({type(exc).__name__})"
            ) from None
        if response.status_code >= 500 or response.status_code == 429:
            raise TransientError(
                f"connection {self.name!r}: the token endpoint answered {response.status_code}"
            )
        try:
            answer = response.json() if response.status_code == 200 else {}
            token = str(answer["access_token"])
        except (ValueError, KeyError, TypeError):
            raise TerminalError(
                f"connection {self.name!r}: the token endpoint {auth.token_url} gave no access token "
                f"({response.status_code}): {body_start(response)}"
            ) from None
        secrets.remember(token)
        lifetime = answer.get("expires_in")
        # a number of seconds, finite and positive; else (none, a string, NaN, -5, true) an hour:
        # a token taken as expired at once would be asked for again before every request
        ok = isinstance(lifetime, int | float) and not isinstance(lifetime, bool)
        lifetime = float(lifetime) if ok and 0 < lifetime < float("inf") else 3600.0
        self.token, self.token_expires = token, time.monotonic() + max(lifetime - 30.0, lifetime / 2)
        return token

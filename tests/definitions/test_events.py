"""`runner validate` on a job's events, notifications and log level, and on the `smtp`
connection kind: each wrong combination is a located problem, nothing is half-accepted."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from runner import services
from runner.cli.app import app
from runner.errors import DefinitionsInvalid, Problem
from tests.conftest import TASK, TWO_SQLITE

MORE = """
---
apiVersion: runner/v1
kind: Connection
metadata: {name: mem}
spec: {type: memory, store: shop}
---
apiVersion: runner/v1
kind: Connection
metadata: {name: mail}
spec:
  type: smtp
  host: 127.0.0.1
  port: 2525
  sender: runner@example.com
  username: runner
  password: ${env:SMTP_PASSWORD}
  starttls: true
"""


def problems(project) -> list[str]:
    with pytest.raises(DefinitionsInvalid) as info:
        services.validate(project.ws)
    return [_short(p) for p in info.value.problems]


def _short(p: Problem) -> str:
    return f"{p.location.file.split('/project/')[-1]}:{p.location.line}: {p.location.field}: {p.message}"


def _job(project, extra: str, source: str = "src", target: str = "dst") -> None:
    project.write("connections.d/all.yaml", TWO_SQLITE + MORE)
    project.job("copy", source, target, TASK, extra=extra)


def test_the_fields_validate_and_describe_shows_them(project):
    _job(
        project,
        """  log_level: warning
  events:
    before: [{connection: target, sql: "DELETE FROM b"}, {command: [./check.sh, --quick], timeout: 2m}]
    after: [{command: [./done.sh], when: failed}]
  notify:
    - email: {connection: mail, to: [ops@example.com], subject: "{{ job }}: {{ status }}"}
    - {webhook: {url: "http://127.0.0.1:9/hook", headers: {X-Token: "${env:HOOK}"}}, when: always}
""",
    )
    services.apply(project.ws)
    info = services.describe(project.ws, "Job", "copy")
    spec = info["document"]["spec"]
    assert spec["log_level"] == "warning" and spec["events"]["before"][1]["command"] == [
        "./check.sh",
        "--quick",
    ]
    assert spec["notify"][1]["webhook"]["headers"] == {
        "X-Token": "${env:HOOK}"
    }  # the reference, never a value
    assert info["around"] == {
        "log_level": "warning",
        "events": [
            "before: sql on target",
            "before: command ./check.sh",
            "after (failed): command ./done.sh",
        ],
        "notify": ["email to ops@example.com via mail (failure)", "webhook http://127.0.0.1:9/hook (always)"],
    }
    text = CliRunner().invoke(app, ["--dir", str(project.root), "describe", "job", "copy"]).stdout
    assert (
        "  log level:   warning\n"
        "  event:       before: sql on target\n"
        "  event:       before: command ./check.sh\n"
        "  event:       after (failed): command ./done.sh\n"
        "  notify:      email to ops@example.com via mail (failure)\n"
        "  notify:      webhook http://127.0.0.1:9/hook (always)\n"
    ) in text


def test_an_sql_event_on_a_kind_that_cannot_run_statements_is_refused_where_it_says_so(project):
    _job(project, "  events:\n    after:\n      - {connection: source, sql: DELETE FROM a}\n", source="mem")
    assert problems(project) == [
        "jobs.d/copy.yaml:9: spec.events.after[0].connection: the source connection 'mem' is of type "
        "'memory', which cannot run SQL statements"
    ]


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ("{sql: DELETE FROM a}", "an 'sql' event needs 'connection: source' or 'connection: target'"),
        ("{command: [x], sql: DELETE FROM a, connection: target}", "give exactly one of 'sql' or 'command'"),
        ("{}", "give exactly one of 'sql' or 'command'"),
        (
            "{command: [x], connection: target}",
            "'connection' is for an 'sql' event; a command runs on this machine",
        ),
        (
            "{sql: x, connection: target, timeout: 5}",
            "'timeout' is for a command; an SQL event is bounded by the database's own",
        ),
        ("{command: []}", "List should have at least 1 item after validation, not 0"),
        ("{command: [x], timeout: 0}", "must be more than 0 seconds"),
    ],
)
def test_an_event_is_an_sql_or_a_command(project, event, message):
    _job(project, f"  events:\n    before:\n      - {event}\n")
    (problem,) = problems(project)
    assert problem.startswith("jobs.d/copy.yaml:9: spec.events.before[0]") and problem.endswith(message)


def test_a_before_event_has_no_when_and_the_level_is_one_of_three(project):
    _job(project, "  log_level: verbose\n  events:\n    before: [{command: [x], when: failed}]\n")
    assert problems(project) == [
        "jobs.d/copy.yaml:7: spec.log_level: Input should be 'debug', 'info' or 'warning'",
        "jobs.d/copy.yaml:9: spec.events.before[0].when: unknown field 'when'",
    ]


def test_an_smtp_connection_is_no_source_or_target(project):
    _job(project, "", source="mail", target="mail")
    assert problems(project) == [
        "jobs.d/copy.yaml:5: spec.source: connection 'mail' is of type 'smtp', which cannot be a job's "
        "source",
        "jobs.d/copy.yaml:6: spec.target: connection 'mail' is of type 'smtp', which cannot be a job's "
        "target",
    ]


def test_notify_names_an_smtp_connection_that_exists(project):
    _job(
        project,
        """  notify:
    - email: {connection: nope, to: [a@example.com]}
    - email: {connection: dst, to: [a@example.com]}
    - email: {connection: mail, to: [not-an-address], subject: "{{ job "}
    - {webhook: {url: "ftp://x"}}
    - {email: {connection: mail, to: [a@example.com]}, webhook: {url: "http://x"}}
    - {webhook: {url: "http://x", headers: {A: "${vault:x}"}}, when: sometimes}
""",
    )
    found = problems(project)
    assert sorted(found) == sorted(
        [
            "jobs.d/copy.yaml:8: spec.notify[0].email.connection: connection 'nope' does not exist",
            "jobs.d/copy.yaml:9: spec.notify[1].email.connection: connection 'dst' is of type 'sqlite', "
            "which cannot send email",
            "jobs.d/copy.yaml:10: spec.notify[2].email.to[0]: String should match pattern "
            "'^[^@\\s]+@[^@\\s]+$'",
            "jobs.d/copy.yaml:10: spec.notify[2].email.subject: invalid template (line 1 of the script): "
            "unexpected end of template, expected 'end of print statement'.",
            "jobs.d/copy.yaml:11: spec.notify[3].webhook.url: 'ftp://x' is not an http(s) URL: write "
            "http://… or https://…, or a secret reference such as ${env:SLACK_WEBHOOK}",
            "jobs.d/copy.yaml:12: spec.notify[4]: give exactly one of 'email' or 'webhook'",
            "jobs.d/copy.yaml:13: spec.notify[5].webhook.headers: unknown secret source 'vault' in "
            "'${vault:x}'; use ${env:NAME} or ${file:path}",
            "jobs.d/copy.yaml:13: spec.notify[5].when: Input should be 'failure' or 'always'",
        ]
    )


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ("password: hunter2", "spec.password", "the password is written out"),
        ("password: ${env:P}", "spec", "give 'username' and 'password' together"),
        (
            "username: u\n  password: ${env:P}\n  starttls: true\n  tls: true",
            "spec",
            "choose one of 'starttls'",
        ),
        ("ca_file: ca.pem", "spec", "ca_file is for a TLS connection, and this one speaks none"),
        ("username: u\n  password: ${env:P}", "spec", "signing in to h without TLS would send the password"),
        ("port: 0", "spec.port", "Input should be greater than or equal to 1"),
        ("url: smtp://x", "spec.url", "unknown field 'url'"),
    ],
)
def test_an_smtp_connection_references_its_password(project, fields, field, message):
    project.write(
        "connections.d/mail.yaml",
        "apiVersion: runner/v1\nkind: Connection\nmetadata: {name: mail}\n"
        f"spec:\n  type: smtp\n  host: h\n  sender: a@example.com\n  {fields}\n",
    )
    with pytest.raises(DefinitionsInvalid) as info:
        services.validate(project.ws)
    (p,) = info.value.problems
    assert p.location.field == field and p.message.startswith(message)
    assert "hunter2" not in str(p)


def test_a_webhook_header_reads_secret_files_only_where_connections_may(project):
    _job(
        project,
        """  notify:
    - webhook: {url: "https://x", headers: {A: "${file:secrets/hook}", B: "Bearer ${file:../../etc/passwd}"}}
""",
    )
    (problem,) = problems(project)
    assert problem.startswith(
        "jobs.d/copy.yaml:8: spec.notify[0].webhook.headers.B: secret file '../../etc/passwd' lies outside"
    )


def test_a_webhook_url_with_a_user_and_password_is_refused(project):
    # urllib cannot sign in with them (it takes them for the host), and the URL is logged as is
    _job(
        project,
        """  notify:
    - webhook: {url: "https://hook:hunter2@hooks.example.com/runner"}
""",
    )
    (problem,) = problems(project)
    assert problem.startswith(
        "jobs.d/copy.yaml:8: spec.notify[0].webhook.url: a webhook URL takes no user or password"
    )
    assert "hunter2" not in problem


def test_a_webhook_sends_secrets_only_over_https_or_to_this_machine(project):
    # as an http connection, a broker or SMTP: a secret never crosses the network in the clear
    _job(
        project,
        """  notify:
    - webhook: {url: "http://hooks.example.com/x", headers: {Authorization: "Bearer ${env:HOOK_TOKEN}"}}
    - webhook: {url: "http://hooks.example.com/services/${env:SLACK_PATH}"}
    - webhook: {url: "https://hooks.example.com/x", headers: {Authorization: "Bearer ${env:HOOK_TOKEN}"}}
    - webhook: {url: "http://127.0.0.1:8080/x", headers: {Authorization: "Bearer ${env:HOOK_TOKEN}"}}
    - webhook: {url: "http://localhost/${env:SLACK_PATH}"}
    - webhook: {url: "http://hooks.example.com/x", headers: {X-Team: data}}
    - webhook: {url: "http://${env:HOOK_HOST}/x", headers: {Authorization: "Bearer ${env:HOOK_TOKEN}"}}
""",
    )
    assert problems(project) == [
        "jobs.d/copy.yaml:8: spec.notify[0].webhook: the webhook would send the secret in header "
        "'Authorization' to hooks.example.com over http://, in the clear: use https://; only a server "
        "on this machine (localhost) may take it plain",
        "jobs.d/copy.yaml:9: spec.notify[1].webhook: the webhook would send the secret in its URL to "
        "hooks.example.com over http://, in the clear: use https://; only a server on this machine "
        "(localhost) may take it plain",
    ]


def test_a_secret_reference_in_a_command_is_refused(project):
    # commands get their arguments as written and none of the runner's environment: the
    # reference would have reached the command as the text '${env:HOOK_TOKEN}'
    _job(
        project,
        """  events:
    before:
      - command: [./hook.sh, --token, "${env:HOOK_TOKEN}"]
""",
    )
    (problem,) = problems(project)
    assert problem.startswith(
        "jobs.d/copy.yaml:9: spec.events.before[0].command: a command's arguments are passed as written: "
        "'${env:HOOK_TOKEN}' would reach it as that text"
    )


def test_a_webhook_credential_header_written_out_is_refused(project):
    # as a literal SMTP password is: it would be kept in git, the state store and `describe`
    _job(
        project,
        """  notify:
    - webhook: {url: "https://h.example.com/x", headers: {X-Source: runner, Authorization: "Bearer abc123"}}
    - webhook: {url: "https://h.example.com/y", headers: {X-Api-Key: "${file:secrets/k}", X-Hook-Token: t0k}}
""",
    )
    assert problems(project) == [
        "jobs.d/copy.yaml:8: spec.notify[0].webhook.headers: header 'Authorization' carries a credential "
        'written out: reference it instead, as in "Bearer ${env:HOOK_TOKEN}" or ${file:secrets/hook}',
        "jobs.d/copy.yaml:9: spec.notify[1].webhook.headers: header 'X-Hook-Token' carries a credential "
        'written out: reference it instead, as in "Bearer ${env:HOOK_TOKEN}" or ${file:secrets/hook}',
    ]

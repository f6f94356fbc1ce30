"""Every kind of bad input is reported as `path:line:col: field: message`, all at once."""

from __future__ import annotations

import pytest

from runner import services
from runner.errors import DefinitionsInvalid, Problem
from tests.conftest import TWO_SQLITE as GOOD_CONNECTIONS


def problems(project) -> list[Problem]:
    with pytest.raises(DefinitionsInvalid) as info:
        services.validate(project.ws)
    return info.value.problems


def lines(project) -> list[str]:
    return [str(p) for p in problems(project)]


def test_valid_folder_loads_every_document(project):
    project.write("connections.d/all.yaml", GOOD_CONNECTIONS)
    project.job("copy", "src", "dst", "- {name: t, read: {table: a}, write: {table: b}}")
    defs = services.validate(project.ws)
    assert sorted(d.ref for d in defs) == ["default/copy", "default/dst", "default/src"]


def test_yaml_syntax_error_has_line_and_column(project):
    project.write("jobs.d/bad.yaml", "apiVersion: runner/v1\nkind: Job\nmetadata: {name: x\nspec: {}\n")
    (p,) = problems(project)
    assert p.location.file.endswith("jobs.d/bad.yaml")
    assert p.location.line == 4 and p.location.col >= 1
    assert p.message.startswith("YAML syntax error")


def test_duplicate_key_is_rejected_not_last_one_wins(project):
    project.write("connections.d/all.yaml", GOOD_CONNECTIONS)
    project.write(
        "jobs.d/dup.yaml",
        """
        apiVersion: runner/v1
        kind: Job
        metadata: {name: dup}
        spec:
          source: src
          target: dst
          source: dst
          tasks: [{name: t, read: {table: a}, write: {table: b}}]
        """,
    )
    (line,) = lines(project)
    assert line.endswith(
        "jobs.d/dup.yaml:7:3: spec.source: duplicate key 'source' (first at line 5) "
        "(hint: a mapping may name each key once; PyYAML would silently keep the last one)"
    )


def test_unknown_field_suggests_the_close_one(project):
    project.write("connections.d/all.yaml", GOOD_CONNECTIONS)
    project.job(
        "copy",
        "src",
        "dst",
        """
        - name: t
          read: {table: a}
          write: {table: b, kyes: [id]}
        """,
    )
    (p,) = problems(project)
    assert (p.location.line, p.location.col, p.location.field) == (10, 25, "spec.tasks[0].write.kyes")
    assert p.message == "unknown field 'kyes'"
    assert p.hint == "did you mean 'keys'?"


def test_a_key_yaml_reads_as_null_is_told_to_be_quoted(project):
    """`csv: {null: "NULL"}` is a mapping whose key is None in YAML: the hint says to quote it."""
    project.write("connections.d/all.yaml", GOOD_CONNECTIONS)
    project.write(
        "connections.d/drop.yaml",
        "apiVersion: runner/v1\nkind: Connection\nmetadata: {name: drop}\nspec: {type: files, path: drop}\n",
    )
    project.job(
        "load",
        "drop",
        "dst",
        """
        - name: t
          read: {files: "*.csv", format: csv, csv: {null: "NULL"}, columns: {id: bigint}}
          write: {table: b, keys: [id]}
        """,
    )
    (p,) = problems(project)
    assert p.location.line == 9 and p.location.field.startswith("spec.tasks[0].read.csv")
    assert p.message == "a key here is not text"
    assert '"null": "NULL"' in p.hint


def test_typo_in_top_level_field_did_you_mean(project):
    project.write("connections.d/all.yaml", GOOD_CONNECTIONS)
    project.write(
        "jobs.d/typo.yaml",
        """
        apiVersion: runner/v1
        kind: Job
        metadata: {name: typo}
        spec:
          source: src
          target: dst
          shedule: {cron: "* * * * *"}
          tasks: [{name: t, read: {table: a}, write: {table: b}}]
        """,
    )
    (p,) = problems(project)
    assert str(p).endswith(
        "typo.yaml:7:3: spec.shedule: unknown field 'shedule' (hint: did you mean 'schedule'?)"
    )


def test_wrong_type_names_the_field(project):
    project.write("connections.d/all.yaml", GOOD_CONNECTIONS)
    project.job(
        "copy", "src", "dst", "- {name: t, read: {table: a}, write: {table: b}}", extra="  batch_size: lots\n"
    )
    (p,) = problems(project)
    assert (p.location.line, p.location.field) == (7, "spec.batch_size")
    assert "valid integer" in p.message


def test_unknown_api_version_and_kind(project):
    project.write("jobs.d/v2.yaml", "apiVersion: runner/v2\nkind: Job\nmetadata: {name: a}\nspec: {}\n")
    project.write(
        "jobs.d/kind.yaml", "apiVersion: runner/v1\nkind: Pipeline\nmetadata: {name: b}\nspec: {}\n"
    )
    found = lines(project)
    assert any(
        s.endswith("kind.yaml:2:1: kind: unknown kind 'Pipeline'; expected 'Connection' or 'Job'")
        for s in found
    ), found
    assert any(
        s.endswith("v2.yaml:1:1: apiVersion: unknown apiVersion 'runner/v2'; expected 'runner/v1'")
        for s in found
    ), found


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        # five fields, one out of range: named, not told it lacks fields
        (
            '{cron: "61 * * * *"}',
            "invalid cron expression '61 * * * *': the minute field '61' is not valid (it takes 0-59",
        ),
        (
            '{cron: "0 9 * * 8"}',
            "invalid cron expression '0 9 * * 8': the weekday field '8' is not valid (it takes 0-7",
        ),
        (
            '{cron: "0 0 * * * x"}',
            "invalid cron expression '0 0 * * * x': the seconds field 'x' is not valid",
        ),
        ('{cron: "* * *"}', "invalid cron expression '* * *'; expected 5 fields"),
        ('{cron: "*/5 * * * *", timezone: Mars/Olympus}', "unknown time zone 'Mars/Olympus'"),
    ],
)
def test_invalid_cron_or_timezone(project, schedule, message):
    project.write("connections.d/all.yaml", GOOD_CONNECTIONS)
    project.job(
        "copy",
        "src",
        "dst",
        "- {name: t, read: {table: a}, write: {table: b}}",
        extra=f"  schedule: {schedule}\n",
    )
    (p,) = problems(project)
    assert p.location.line == 7 and p.location.field.startswith("spec.schedule")
    assert p.message.startswith(message)


def test_cron_with_seconds_is_valid(project):
    project.write("connections.d/all.yaml", GOOD_CONNECTIONS)
    project.job(
        "copy",
        "src",
        "dst",
        "- {name: t, read: {table: a}, write: {table: b}}",
        extra='  schedule: {cron: "*/5 * * * * */10", timezone: Europe/Berlin}\n',
    )
    assert len(services.validate(project.ws)) == 3


def test_dangling_connection_reference(project):
    project.write("connections.d/all.yaml", GOOD_CONNECTIONS)
    project.job("copy", "src", "nowhere", "- {name: t, read: {table: a}, write: {table: b}}")
    (p,) = problems(project)
    assert str(p).endswith(
        "copy.yaml:6:3: spec.target: connection 'nowhere' does not exist "
        "(hint: define it in connections.d/ (looked in namespace 'default'))"
    )


def test_duplicate_names_point_at_both(project):
    project.write("connections.d/all.yaml", GOOD_CONNECTIONS)
    project.connection("src", "sqlite", "sqlite:///other.db")
    (p,) = problems(project)
    assert p.location.file.endswith("connections.d/src.yaml") and p.location.field == "metadata.name"
    assert "duplicate Connection 'default/src'; first defined at" in p.message
    assert "connections.d/all.yaml:1" in p.message


def test_same_name_in_other_namespace_is_fine_and_subfolder_is_namespace(project):
    project.write("connections.d/all.yaml", GOOD_CONNECTIONS)
    project.connection("src", "sqlite", "sqlite:///finance.db", folder="finance/")
    project.job("copy", "src", "dst", "- {name: t, read: {table: a}, write: {table: b}}", folder="finance/")
    defs = {d.ref: d for d in services.validate(project.ws)}
    assert "finance/src" in defs and "default/src" in defs
    assert defs["finance/copy"].namespace == "finance"


def test_namespace_contradicting_folder(project):
    project.write("connections.d/all.yaml", GOOD_CONNECTIONS)
    project.write(
        "jobs.d/team/x.yaml",
        """
        apiVersion: runner/v1
        kind: Job
        metadata: {name: x, namespace: other}
        spec: {source: src, target: dst, tasks: [{name: t, read: {table: a}, write: {table: b}}]}
        """,
    )
    (p,) = problems(project)
    assert p.location.field == "metadata.namespace" and "contradicts the folder 'team'" in p.message


def test_literal_password_is_rejected_without_echoing_it(project):
    project.connection("pg", "postgresql", "postgresql://sync:hunter2@127.0.0.1/shop")
    (p,) = problems(project)
    assert p.location.field == "spec.url" and p.location.line == 4
    assert p.message == "the URL holds a literal password"
    assert p.hint.startswith("reference the secret instead, e.g. postgresql://user:${env:SHOP_PASSWORD}@")
    assert "hunter2" not in str(p)


def test_unparsable_url_is_rejected_without_echoing_it(project):
    project.connection("pg", "postgresql", "postgresql://sync:hunter2@db.example:54x2/shop")
    project.connection("pg2", "postgresql", "postgresql://sync:${env:PW}@db.example:${env:PORT}/shop")
    found = problems(project)
    assert len(found) == 2
    for p in found:
        assert p.location.field == "spec.url" and p.message.startswith("the URL cannot be parsed")
        assert "hunter2" not in str(p)


def test_password_reference_is_accepted(project):
    project.connection("pg", "postgresql", "postgresql://sync:${env:SHOP_PW}@127.0.0.1/shop")
    project.connection("pg2", "postgresql", "postgresql://sync:${file:secrets/pw}@127.0.0.1/shop")
    assert len(services.validate(project.ws)) == 2


def test_malformed_secret_reference(project):
    project.connection("pg", "postgresql", "postgresql://sync:${vault:x}@127.0.0.1/shop")
    (p,) = problems(project)
    assert "unknown secret source 'vault'" in p.message


def test_a_shell_style_reference_is_told_the_env_form(project):
    """`${SHOP_PASSWORD}` (as a shell writes it) is told to be `${env:SHOP_PASSWORD}`, not that
    it is 'unterminated or malformed'."""
    project.connection("pg", "postgresql", "postgresql://sync:${SHOP_PASSWORD}@127.0.0.1/shop")
    (p,) = problems(project)
    assert str(p).endswith(
        "pg.yaml:4:26: spec.url: '${SHOP_PASSWORD}' names no secret source; write ${env:SHOP_PASSWORD} "
        "(or ${file:path})"
    )


def test_unknown_connection_type_lists_known(project):
    project.connection("x", "oracle", "oracle://h/db")
    (p,) = problems(project)
    assert p.location.field == "spec.type" and p.message == "unknown connection type 'oracle'"
    assert p.hint == (
        "known types: files, http, mariadb, memory, mqtt, nats, postgresql, rabbitmq, redis, smtp, sqlite"
    )


def test_read_needs_exactly_one_of_table_or_query(project):
    project.write("connections.d/all.yaml", GOOD_CONNECTIONS)
    project.job("copy", "src", "dst", "- {name: t, read: {table: a, query: SELECT 1}, write: {table: b}}")
    (p,) = problems(project)
    assert p.location.field == "spec.tasks[0].read" and "exactly one of 'table' or 'query'" in p.message


def test_missing_required_field(project):
    project.write("connections.d/all.yaml", GOOD_CONNECTIONS)
    project.write(
        "jobs.d/m.yaml",
        """
        apiVersion: runner/v1
        kind: Job
        metadata: {name: m}
        spec:
          source: src
          tasks: [{name: t, read: {table: a}, write: {table: b}}]
        """,
    )
    (p,) = problems(project)  # without a target the job is a reader, whose tasks write no table
    assert (p.location.line, p.location.field) == (6, "spec.tasks[0].write")
    assert "a job without a target is a reader" in p.message and "give spec.target" in p.message


def test_all_errors_are_reported_not_only_the_first(project):
    project.write("connections.d/all.yaml", GOOD_CONNECTIONS)
    project.write(
        "jobs.d/a.yaml", "apiVersion: runner/v1\nkind: Job\nmetadata: {name: a}\nspec: {source: src}\n"
    )
    project.write(
        "jobs.d/b.yaml", "apiVersion: runner/v1\nkind: Job\nmetadata: {name: b, extra: 1}\nspec: {}\n"
    )
    project.write("jobs.d/c.yaml", "key: [unclosed\n")
    found = lines(project)
    files = {s.split(":")[0].rsplit("/", 1)[-1] for s in found}
    assert files == {"a.yaml", "b.yaml", "c.yaml"}
    assert len(found) >= 4


def test_bad_names_and_task_names(project):
    project.write("connections.d/all.yaml", GOOD_CONNECTIONS)
    project.job(
        "Bad_Name!",
        "src",
        "dst",
        """
        - {name: t, read: {table: a}, write: {table: b}}
        - {name: t, read: {table: c}, write: {table: d}}
        """,
    )
    found = lines(project)
    assert any("metadata.name" in s and "should match pattern" in s for s in found), found
    assert any("spec.tasks" in s and "two tasks are named 't'" in s for s in found), found


def test_no_definition_folders_is_an_error(tmp_path):
    ws = services.Workspace(tmp_path)
    with pytest.raises(DefinitionsInvalid) as info:
        services.validate(ws)
    assert "no jobs.d/ or connections.d/ folder here" in str(info.value.problems[0])


def test_non_mapping_document(project):
    project.write("jobs.d/list.yaml", "- a\n- b\n")
    (p,) = problems(project)
    assert p.message.startswith("a definition must be a mapping")


def test_aliases_are_walked_once_and_a_recursive_one_is_an_error(project):
    project.write("connections.d/all.yaml", GOOD_CONNECTIONS)
    project.write(
        "jobs.d/alias.yaml",
        """
        apiVersion: runner/v1
        kind: Job
        metadata: &m {name: alias, labels: *m}
        spec: {source: src, target: dst, tasks: [{name: t, read: {table: a}, write: {table: b}}]}
        """,
    )
    (p,) = problems(project)
    assert p.location.field.startswith("metadata.labels")


def test_connection_type_of_the_wrong_type(project):
    project.write(
        "connections.d/c.yaml",
        "apiVersion: runner/v1\nkind: Connection\nmetadata: {name: c}\n"
        'spec: {type: [sqlite], url: "sqlite:///x.db"}\n',
    )
    (p,) = problems(project)
    assert p.location.field == "spec.type" and p.message == "unknown connection type \"['sqlite']\""


def test_cron_that_never_fires(project):
    project.write("connections.d/all.yaml", GOOD_CONNECTIONS)
    project.job(
        "copy",
        "src",
        "dst",
        "- {name: t, read: {table: a}, write: {table: b}}",
        extra='  schedule: {cron: "0 0 31 2 *"}\n',
    )
    (p,) = problems(project)
    assert p.message == "cron expression '0 0 31 2 *' never fires (no such date)"


def test_duplicate_key_in_a_connection_gives_no_false_dangling_errors(project):
    project.write(
        "connections.d/dup.yaml",
        """
        apiVersion: runner/v1
        kind: Connection
        metadata: {name: src}
        spec: {type: sqlite, url: "sqlite:///a.db", url: "sqlite:///b.db"}
        """,
    )
    project.connection("dst", "sqlite", "sqlite:///dst.db")
    project.job("copy", "src", "dst", "- {name: t, read: {table: a}, write: {table: b}}")
    (p,) = problems(project)
    assert p.message.startswith("duplicate key 'url'")


def test_duplicate_name_is_reported_even_when_one_is_invalid(project):
    project.write("connections.d/all.yaml", GOOD_CONNECTIONS)
    project.write(
        "connections.d/again.yaml",
        "apiVersion: runner/v1\nkind: Connection\nmetadata: {name: src}\n"
        'spec: {type: sqlite, url: "sqlite:///x.db", bogus: 1}\n',
    )
    found = lines(project)
    assert any("duplicate Connection 'default/src'" in s for s in found), found
    assert any("unknown field 'bogus'" in s for s in found), found


def test_duplicate_task_name_points_at_the_second_task(project):
    project.write("connections.d/all.yaml", GOOD_CONNECTIONS)
    project.job(
        "copy",
        "src",
        "dst",
        """
        - {name: t, read: {table: a}, write: {table: b}}
        - {name: t, read: {table: c}, write: {table: d}}
        """,
    )
    (p,) = problems(project)
    assert (p.location.line, p.location.field, p.message) == (
        9,
        "spec.tasks[1].name",
        "two tasks are named 't'",
    )


def test_empty_table_name(project):
    project.write("connections.d/all.yaml", GOOD_CONNECTIONS)
    project.job("copy", "src", "dst", '- {name: t, read: {table: ""}, write: {table: b}}')
    (p,) = problems(project)
    assert p.location.field == "spec.tasks[0].read.table" and "at least 1 character" in p.message


def test_stored_file_is_relative_to_the_definitions_folder(project, monkeypatch, tmp_path):
    project.write("connections.d/all.yaml", GOOD_CONNECTIONS)
    for cwd in (tmp_path, project.root / "jobs.d"):
        monkeypatch.chdir(cwd)
        assert {d.file for d in services.validate(project.ws)} == {"connections.d/all.yaml"}


def test_duplicate_key_and_unknown_field_in_one_document_are_both_reported(project):
    project.write("connections.d/all.yaml", GOOD_CONNECTIONS)
    project.write(
        "jobs.d/dup.yaml",
        """
        apiVersion: runner/v1
        kind: Job
        metadata: {name: dup}
        spec:
          source: src
          target: dst
          source: src
          shedule: {cron: "0 * * * *"}
          tasks: [{name: t, read: {table: a}, write: {table: b}}]
        """,
    )
    found = lines(project)
    assert len(found) == 2, found
    assert found[0].endswith(
        "jobs.d/dup.yaml:7:3: spec.source: duplicate key 'source' (first at line 5) "
        "(hint: a mapping may name each key once; PyYAML would silently keep the last one)"
    )
    assert found[1].endswith(
        "jobs.d/dup.yaml:8:3: spec.shedule: unknown field 'shedule' (hint: did you mean 'schedule'?)"
    )
    with pytest.raises(DefinitionsInvalid):
        services.apply(project.ws)
    assert services.get(project.ws, "Job") == []


def test_sub_folder_that_is_not_a_namespace_is_refused_not_printed(project):
    project.write("connections.d/all.yaml", GOOD_CONNECTIONS)
    project.job("copy", "src", "dst", TASK_LINE, folder="ok\nfinance/ create Job x/forged\n")
    (p,) = problems(project)
    assert p.location.file.endswith("jobs.d") and "is not a valid namespace" in p.message
    assert "\n" not in str(p) and "'ok\\nfinance" in p.message


def test_file_name_with_a_control_character_is_refused(project):
    project.write("connections.d/all.yaml", GOOD_CONNECTIONS)
    project.job("copy\n+ create", "src", "dst", TASK_LINE)
    (p,) = problems(project)
    assert "control character" in p.message and "\n" not in str(p)


def test_symlink_out_of_the_folder_is_not_followed(project, tmp_path):
    outside = tmp_path / "shadow"
    outside.write_text("root:$6$secrethash:19000:0:99999:7:::\n", encoding="utf-8")
    project.write("connections.d/all.yaml", GOOD_CONNECTIONS)
    (project.root / "jobs.d" / "evil.yaml").symlink_to(outside)
    (p,) = problems(project)
    assert p.location.file.endswith("jobs.d/evil.yaml")
    assert "symlink to a file outside the definitions folder" in p.message
    assert "secrethash" not in str(p)


def test_symlink_inside_the_folder_is_read(project):
    project.write("connections.d/all.yaml", GOOD_CONNECTIONS)
    real = project.job("copy", "src", "dst", TASK_LINE, folder="../shared/")
    (project.root / "jobs.d" / "copy.yaml").symlink_to(real)
    assert sorted(d.ref for d in services.validate(project.ws)) == [
        "default/copy",
        "default/dst",
        "default/src",
    ]


@pytest.mark.parametrize("query", ["sslpassword=hunter2", "sslmode=require&SSLPassword=hunter2"])
def test_literal_password_in_a_query_parameter_is_rejected(project, query):
    project.connection("pg", "postgresql", f"postgresql://sync@127.0.0.1/shop?{query}")
    (p,) = problems(project)
    assert p.location.field == "spec.url" and "password" in p.message.lower()
    assert "hunter2" not in str(p)


TASK_LINE = "- {name: t, read: {table: a}, write: {table: b}}"


def test_an_unreadable_file_is_the_one_problem_not_every_reference_to_it(project):
    """A tab in the connections file (a common slip) loses its connections; the jobs naming
    them, a trigger naming a job in another broken file and a files task checked as a table's
    are not reported too: the syntax errors alone, with where and why."""
    project.write(
        "connections.d/all.yaml",
        "apiVersion: runner/v1\nkind: Connection\nmetadata: {name: src}\nspec:\n"
        '\ttype: sqlite\n  url: "sqlite:///src.db"\n---\n'
        "apiVersion: runner/v1\nkind: Connection\nmetadata: {name: lake}\nspec: {type: files, path: lake}\n",
    )
    project.job("export", "src", "lake", "- {name: t, read: {table: a}, write: {format: csv, file: a.csv}}")
    project.write("jobs.d/first.yaml", "apiVersion: runner/v1\nkind: Job\nmetadata: {name: first\n")
    project.job(
        "second",
        "src",
        "lake",
        "- {name: t, read: {table: b}, write: {format: csv, file: b.csv}}",
        extra="  after: [{job: first}]\n",
    )
    found = problems(project)
    assert [(p.location.file.split("/")[-2:], p.location.line) for p in found] == [
        (["connections.d", "all.yaml"], 5),
        (["jobs.d", "first.yaml"], 4),
    ], [str(p) for p in found]
    assert found[0].hint == "YAML does not allow tabs for indentation: indent with spaces"
    assert found[1].hint == ""  # not a tab: no hint about tabs
    with pytest.raises(DefinitionsInvalid):
        services.apply(project.ws)
    assert project.ws.reader().objects.all() == []  # nothing applied


def test_a_dangling_reference_is_still_reported_beside_a_readable_file_with_a_field_problem(project):
    """Only a file not read whole hides references: a wrong field elsewhere does not."""
    project.write("connections.d/all.yaml", GOOD_CONNECTIONS)
    project.job("copy", "src", "nowhere", "- {name: t, read: {table: a}, write: {table: b}}")
    project.job(
        "other", "src", "dst", "- {name: t, read: {table: a}, write: {table: b}}", extra="  bogus: 1\n"
    )
    found = lines(project)
    assert any("connection 'nowhere' does not exist" in s for s in found), found
    assert any("unknown field 'bogus'" in s for s in found), found


def test_a_value_where_a_mapping_goes_names_its_fields_not_a_class(project):
    """`schedule: "*/5 * * * *"` (the cron alone) is told which fields a schedule has, not
    that it is no 'instance of Schedule'."""
    project.write("connections.d/all.yaml", GOOD_CONNECTIONS)
    project.job(
        "copy",
        "src",
        "dst",
        "- {name: t, read: {table: a}, write: {table: b}}",
        extra='  schedule: "*/5 * * * *"\n',
    )
    (p,) = problems(project)
    assert str(p).endswith(
        "copy.yaml:7:3: spec.schedule: Input should be a mapping of fields (hint: its fields: cron, timezone)"
    )

"""Invariant 3: secret values never reach the state store, plans, history, output or errors."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from runner.cli.app import app

SECRET = "Zq9-very-secret-4711"
DB_SECRET = "runner_secret_db_8842"


def test_secret_values_are_never_written(project, pg_url, monkeypatch, tmp_path):
    monkeypatch.chdir(project.root)
    monkeypatch.setenv("SHOP_PW", SECRET)
    monkeypatch.setenv("MISSING_DB", DB_SECRET)
    (project.root / "secrets").mkdir()
    (project.root / "secrets" / "pw").write_text(SECRET + "\n")
    pg = sa.make_url(pg_url)
    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE items (id int, name text)")
        conn.exec_driver_sql("INSERT INTO items VALUES (1, 'a'), (2, 'b')")
    engine.dispose()
    base = f"postgresql://postgres:{{}}@127.0.0.1:{pg.port or 5432}"
    project.connection("shop", "postgresql", base.format("${env:SHOP_PW}") + f"/{pg.database}")
    project.connection("shop-file", "postgresql", base.format("${file:secrets/pw}") + f"/{pg.database}")
    # a database named by a secret that does not exist: the driver's error echoes the name
    project.connection("broken", "postgresql", base.format("${env:SHOP_PW}") + "/${env:MISSING_DB}")
    project.connection("dst", "sqlite", "sqlite:///dst.db")
    project.job("good", "shop", "dst", "- {name: t, read: {table: items}, write: {table: items}}")
    project.job("good-file", "shop-file", "dst", "- {name: t, read: {table: items}, write: {table: items2}}")
    project.job("bad", "broken", "dst", "- {name: t, read: {table: items}, write: {table: items}}")

    cli = CliRunner()
    outputs = []
    for args in (
        ["validate"],
        ["plan", "-out", str(tmp_path / "p.plan")],
        ["apply", str(tmp_path / "p.plan")],
        ["get", "connections", "--format", "json"],
        ["describe", "connection", "shop"],
        ["run", "good"],
        ["run", "good-file"],
        ["run", "bad"],
        ["history", "bad", "--format", "json"],
    ):
        result = cli.invoke(app, ["--dir", str(project.root), *args])
        outputs.append(result.stdout + result.stderr)
    assert "succeeded" in outputs[5] and "succeeded" in outputs[6]
    assert "failed" in outputs[7] and "***" in outputs[7]  # the driver's message, redacted
    assert 'database "***" does not exist' in outputs[7]
    for text in outputs:
        assert SECRET not in text and DB_SECRET not in text

    written = [p for p in project.root.rglob("*") if p.is_file() and "secrets" not in p.parts]
    written.append(tmp_path / "p.plan")
    assert any(p.suffix == ".json" for p in written)  # history files are among them
    for path in written:
        data = path.read_bytes()
        assert SECRET.encode() not in data, path
        assert DB_SECRET.encode() not in data, path


def test_missing_env_secret_fails_the_run_without_a_value(project, monkeypatch):
    monkeypatch.delenv("NOT_SET_PW", raising=False)
    project.connection("src", "postgresql", "postgresql://u:${env:NOT_SET_PW}@127.0.0.1/db")
    project.connection("dst", "sqlite", "sqlite:///dst.db")
    project.job("j", "src", "dst", "- {name: t, read: {table: a}, write: {table: b}}")
    from runner import services

    services.apply(project.ws)
    record = services.run(project.ws, "j")
    assert record["status"] == "failed"
    assert "environment variable NOT_SET_PW is not set" in record["error"]


@pytest.mark.parametrize(
    "url",
    ["postgresql://u:plain@h/db", "postgresql://u:pre${env:X}@h/db", "postgresql://u@h/db?password=plain"],
)
def test_literal_passwords_are_found(url):
    from runner.definitions.secrets import literal_password

    assert literal_password(url)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u:${env:X}@h/db",
        "postgresql://u@h/db",
        "sqlite:///x.db",
        "postgresql://u@h/db?password=${file:pw}",
    ],
)
def test_references_are_not_literal_passwords(url):
    from runner.definitions.secrets import literal_password

    assert literal_password(url) is None


def test_password_with_url_special_characters_needs_no_encoding(monkeypatch, tmp_path):
    from runner.definitions.secrets import resolve_url

    monkeypatch.setenv("PW", "p@ss/w:rd#?")
    url = resolve_url("postgresql://user:${env:PW}@127.0.0.1:5432/db", tmp_path)
    assert url.password == "p@ss/w:rd#?" and url.host == "127.0.0.1" and url.database == "db"


@pytest.mark.parametrize(
    "reference",
    ["${file:../outside/pw}", "${file:OUTSIDE/pw}", "${file:~/pw}", "${file:secrets/link}"],
)
def test_secret_files_outside_the_allowed_folders_are_refused(project, tmp_path, monkeypatch, reference):
    """`${file:}` reads only below the definitions folder (and RUNNER_SECRET_DIRS): `..`,
    absolute paths, `~` and symlinks out are refused by validate with file:line, and by a run."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "pw").write_text(SECRET)
    monkeypatch.setenv("HOME", str(outside))
    (project.root / "secrets").mkdir()
    (project.root / "secrets" / "link").symlink_to(outside / "pw")
    reference = reference.replace("OUTSIDE", str(outside))
    path = project.connection("src", "postgresql", f"postgresql://u:{reference}@127.0.0.1/db")
    cli = CliRunner()
    result = cli.invoke(app, ["--dir", str(project.root), "validate"])
    assert result.exit_code == 1
    text = result.stdout + result.stderr
    assert f"{path.name}:4:" in text and "spec.url" in text, text
    assert "outside the folders secrets may be read from" in text and "RUNNER_SECRET_DIRS" in text
    assert SECRET not in text

    from runner.definitions.secrets import SecretError, resolve

    with pytest.raises(SecretError, match="outside the folders"):  # a run checks again
        resolve(reference, project.root)


def test_secret_files_in_an_operator_folder_are_read(project, tmp_path, monkeypatch):
    mount = tmp_path / "mount"
    mount.mkdir()
    (mount / "pw").write_text(SECRET + "\n")
    (project.root / "secrets").mkdir()
    (project.root / "secrets" / "pw").write_text(SECRET + "\n")
    project.connection("a", "postgresql", f"postgresql://u:${{file:{mount}/pw}}@127.0.0.1/db")
    project.connection("b", "postgresql", "postgresql://u:${file:secrets/../secrets/pw}@127.0.0.1/db")
    from runner import services
    from runner.definitions.secrets import resolve

    monkeypatch.setenv("RUNNER_SECRET_DIRS", f"{tmp_path / 'elsewhere'}:{mount}")
    assert len(services.validate(project.ws)) == 2
    assert resolve(f"${{file:{mount}/pw}}", project.root) == SECRET
    assert resolve("${file:secrets/pw}", project.root) == SECRET


def test_long_and_spaced_secret_names_are_redacted_as_the_server_echoes_them(project, pg_url, monkeypatch):
    """PostgreSQL cuts a user or database name to 63 bytes (at a character boundary) before it
    echoes it, and runner joins an error's lines: neither form may get past redaction."""
    monkeypatch.chdir(project.root)
    long_user = "uu" + "ü" * 34  # 70 bytes: PostgreSQL echoes the first 62 (63 would split a ü)
    long_db = "runner_secret_" + "d" * 56  # 70 bytes
    spaced_db = "runner secret\n  database"  # echoed with its whitespace collapsed
    monkeypatch.setenv("LONG_USER", long_user)
    monkeypatch.setenv("LONG_DB", long_db)
    monkeypatch.setenv("SPACED_DB", spaced_db)
    port = sa.make_url(pg_url).port or 5432
    project.connection("u", "postgresql", f"postgresql://${{env:LONG_USER}}@127.0.0.1:{port}/postgres")
    project.connection("d", "postgresql", f"postgresql://postgres@127.0.0.1:{port}/${{env:LONG_DB}}")
    project.connection("s", "postgresql", f"postgresql://postgres@127.0.0.1:{port}/${{env:SPACED_DB}}")
    project.connection("dst", "sqlite", "sqlite:///dst.db")
    for name in ("u", "d", "s"):
        project.job(f"j{name}", name, "dst", "- {name: t, read: {table: items}, write: {table: items}}")
    cli = CliRunner()
    outputs = [cli.invoke(app, ["--dir", str(project.root), "apply"]).stdout]
    for name in ("u", "d", "s"):
        for args in (["run", f"j{name}"], ["history", f"j{name}", "--format", "json"], ["logs", f"j{name}"]):
            result = cli.invoke(app, ["--dir", str(project.root), *args])
            outputs.append(result.stdout + result.stderr)
    assert "does not exist" in outputs[1] and "***" in outputs[1], outputs[1]
    forms = [
        long_user,
        long_user.encode()[:62].decode(),
        long_db,
        long_db[:63],
        spaced_db,
        "runner secret database",
    ]
    texts = outputs + [p.read_text(errors="replace") for p in project.root.rglob("*.json*") if p.is_file()]
    assert len(texts) > len(outputs)  # history and log files are among them
    for text in texts:
        for form in forms:
            assert form not in text, (form, text)


def test_echoed_forms_leave_short_fragments_alone():
    from runner.definitions.secrets import echoed_forms

    assert echoed_forms(" a ") == {" a ", "%20a%20"}  # "a" alone would blank out every a
    assert 'x\\"y z' in echoed_forms('x"y z')  # as JSON history files write it

"""Validation reads a connection URL's password and query without SQLAlchemy
(`secrets._url_parts`): it must read every URL as `make_url`, which opens the connection, does."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import make_url

from runner.definitions import secrets

URLS = [
    "sqlite:///rel/path.db",
    "sqlite:////abs/path.db",
    "sqlite://",
    "postgresql://u:${env:PW}@h:5432/db",
    "postgresql://u:p%40ss@h/db",
    "postgresql://u:@h/db",
    "postgresql://u@h/db?sslmode=require&password=x",
    "postgresql://u@h/db?password=&sslpassword=y&a=1&a=2",
    "postgresql+psycopg://u:${file:secrets/pw}@[::1]:5432/db?application_name=r",
    "mariadb+pymysql://root@127.0.0.1:3306/test?charset=utf8mb4&PWD=z",
    "mysql://u:pw@h:notaport/db",
    "mysql://u:pw@h:/db",
    "mysql://u:pw@h: 12/db",
    "no scheme here",
    "://missing",
    "postgresql://u:p@h/db?x=1\nsecond-line",
    "postgresql://u:a:b@c@h/db",
]


def _sqlalchemy(url: str) -> tuple[str | None, list[tuple[str, str]]] | None:
    try:
        parsed = make_url(url)
    except Exception:  # noqa: BLE001 - what SQLAlchemy refuses, validation must refuse
        return None
    query = [(k, v) for k, vs in parsed.query.items() for v in (vs if isinstance(vs, tuple) else (vs,))]
    return parsed.password, query


@pytest.mark.parametrize("url", URLS)
def test_the_url_is_read_as_sqlalchemy_reads_it(url):
    expected = _sqlalchemy(url)
    if expected is None:
        with pytest.raises(ValueError, match="cannot be parsed") as info:
            secrets._url_parts(url)
        assert url not in str(info.value)
        return
    password, query = secrets._url_parts(url)
    assert password == expected[0]
    assert sorted(query) == sorted(expected[1])


@pytest.mark.parametrize(
    ("url", "where"),
    [
        ("postgresql://u:${env:PW}@h/db", None),
        ("postgresql://u:secret@h/db", "password"),
        ("postgresql://u@h/db?sslpassword=x", "query parameter 'sslpassword'"),
        ("postgresql://u@h/db?pwd=${env:X}", None),
        ("mariadb://u@h/db?passwd=abc${env:X}", "query parameter 'passwd'"),
        ("sqlite:///x.db", None),
    ],
)
def test_a_literal_password_is_found_where_it_is(url, where):
    assert secrets.literal_password(url) == where

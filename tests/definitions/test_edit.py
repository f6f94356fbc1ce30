"""Definition files edited in place: only the document changed is rewritten, with its
comments, quotes, flow style and indentation; tasks move and go with their comment lines."""

from __future__ import annotations

from runner.definitions.edit import DefinitionFile, layout

FIRST = """\
# top of the file
apiVersion: runner/v1
kind: Job
metadata: {name: a}   # the first job
spec:
    source: "src"
    target: dst
    tasks:
      - name: t1   # first
        read: {table: a}
        write: {table: b}
      # before t2
      - name: t2
        read:
            query: |
                SELECT 1
        write: {table: "b2"}
"""
SECOND = """\
# the second document, left as it is
apiVersion: runner/v1
kind: Job
metadata: {name: b}
spec: {source: src, target: dst, tasks: [{name: x, read: {table: x}, write: {table: y}}]}
"""
TEXT = FIRST + "---\n" + SECOND


def namespace(meta):
    return meta.get("namespace") or "default"


def test_the_layout_is_read_from_the_document():
    assert layout(FIRST) == (4, 2)
    assert layout("a:\n  b:\n  - 1\n") == (2, 0)
    assert layout("a: 1\n") == (2, 2)  # nothing nested: the README's style


def test_an_unchanged_round_trip_and_a_field_changed_keep_everything_else():
    file = DefinitionFile(TEXT)
    index = file.find("Job", "a", namespace, "default")
    assert index == 0 and file.find("Job", "b", namespace, "default") == 1
    file.edit(index, lambda data: None)
    assert file.text() == TEXT
    file.edit(index, lambda data: data["spec"].__setitem__("target", "warehouse"))
    assert file.text() == TEXT.replace("target: dst\n    tasks", "target: warehouse\n    tasks")
    assert file.text().endswith("---\n" + SECOND)


def test_tasks_move_with_the_comment_lines_above_them():
    file = DefinitionFile(TEXT)

    def swap(lines, spans):
        blocks = [lines[s:e] for s, e in spans]
        lines[spans[0][0] : spans[-1][1]] = [line for block in reversed(blocks) for line in block]

    file.tasks(0, swap)
    first, rest = file.text().split("      - name: t1", 1)
    assert first.endswith(
        "    tasks:\n      # before t2\n      - name: t2\n        read:\n            query: |\n"
        '                SELECT 1\n        write: {table: "b2"}\n'
    )
    assert rest.startswith("   # first\n        read: {table: a}\n        write: {table: b}\n---\n")


def test_a_document_removed_and_appended():
    file = DefinitionFile(TEXT)
    file.remove(0)
    assert file.text() == SECOND
    file.remove(0)
    assert file.text() is None  # nothing left: the file goes
    file.append(
        {"apiVersion": "runner/v1", "kind": "Job", "metadata": {"name": "c"}, "spec": {"source": "s"}}
    )
    assert file.text() == "apiVersion: runner/v1\nkind: Job\nmetadata:\n  name: c\nspec:\n  source: s\n"


def test_a_file_with_crlf_line_ends_keeps_them():
    text = TEXT.replace("\n", "\r\n")
    file = DefinitionFile(text)
    assert file.find("Job", "b", namespace, "default") == 1
    file.edit(0, lambda data: data["spec"].__setitem__("target", "warehouse"))
    assert file.text() == text.replace("target: dst\r\n    tasks", "target: warehouse\r\n    tasks")

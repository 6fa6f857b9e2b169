"""CoNLL-style token files -> Examples with tokens and IOB2 tags (token classification).

One token per line, its columns split on whitespace (or on ``delimiter``); the token column and
the tag column are chosen by name among ``column_names`` (default: the first and the last
column). With ``column_names`` the line is split from the right into that many fields, so a token
holding the separator stays whole (ANERcorp: ``"الصالحية ونايفة O"``). Sentences end at a blank
line, at a document marker line (``-DOCSTART-``, dropped), at one of ``sentence_end`` tokens (kept
as the sentence's last token), or when ``max_sentence_tokens`` is reached (a counted cut). Tags in
IOB1, IOB2 or BIOES (``tag_scheme``; ``auto`` tells BIOES from IOB2) become IOB2 with the
schema's type names; an ``I-`` without a ``B-`` is repaired into ``B-`` and counted, and so is a
dropped empty token. ``lines`` (1-based, inclusive) reads only part of a file.

A bad tag or a line with a token but no tag is a DataError naming the file and the line (with
``drop_invalid``, the sentence is dropped and counted).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from socialens.core.errors import DataError
from socialens.core.types import Example, LabelSchema
from socialens.data.archives import display_name
from socialens.data.targets import TagProblem, check_tag
from socialens.data.text_io import ReadResult, read_text
from socialens.tasks.tags import normalise_tags

DOCUMENT_MARKER = "-DOCSTART-"


def parse_line_range(text: str) -> tuple[int, int | None]:
    """``"1-125305"`` -> (1, 125305); ``"125306-"`` -> (125306, None); a ValueError otherwise."""
    start, sep, end = str(text).strip().partition("-")
    if not sep or not start.strip().isdigit() or (end.strip() and not end.strip().isdigit()):
        raise ValueError(f"lines {text!r}: expected 'FIRST-LAST' or 'FIRST-' (1-based line numbers)")
    first, last = int(start), int(end) if end.strip() else None
    if first < 1 or (last is not None and last < first):
        raise ValueError(f"lines {text!r}: expected 1 <= FIRST <= LAST")
    return first, last


def split_fields(line: str, delimiter: str | None, n_columns: int | None) -> list[str]:
    """A token line's fields, stripped. With ``n_columns`` the line is split from the right into
    at most that many fields; on whitespace, a line that starts with whitespace has an empty first
    field (ANERcorp's ``" O"``: an empty token, not a one-field line)."""
    if delimiter is None:
        body = line.strip()
        lead_empty = bool(body) and line[0].isspace()
        if n_columns is None:
            fields = body.split()
        else:
            fields = body.rsplit(None, max(0, n_columns - 1 - lead_empty))
        return [""] + fields if lead_empty else fields
    fields = line.rsplit(delimiter, n_columns - 1) if n_columns else line.split(delimiter)
    return [field.strip() for field in fields]


class _Sentence:
    def __init__(self, start: int):
        self.start = start  # line number of the first token
        self.tokens: list[str] = []
        self.tags: list[str] = []
        self.lines: list[int] = []
        self.bad: tuple[str, str] | None = None  # (reason, message) of its first bad line


def read_conll(
    path: str | Path,
    *,
    schema: LabelSchema,
    token_column: str | None = None,
    tag_column: str | None = None,
    column_names: Sequence[str] | None = None,
    delimiter: str | None = None,
    tag_scheme: str = "auto",
    document_marker: str | None = DOCUMENT_MARKER,
    sentence_end: Sequence[str] = (),
    max_sentence_tokens: int | None = None,
    lines: tuple[int, int | None] | None = None,
    encoding: str = "utf-8",
    drop_invalid: bool = False,
    id_prefix: str = "sentence",
    constant_metadata: dict[str, Any] | None = None,
    member: str | None = None,
    labelled: bool = True,
):
    """Read a CoNLL file into a ReadResult (examples: one per sentence, ``tokens`` set, ``label``
    the IOB2 tags; ``repaired``: counts per repair). ``labelled=False`` reads the tokens only."""
    path = Path(path)
    where = display_name(path, member)
    if member is None and not path.is_file():
        raise DataError(f"{path}: file not found" + (" (it is a folder)" if path.is_dir() else ""))
    text, _ = read_text(path, encoding, False, member)
    names = list(column_names) if column_names else None
    n_columns = len(names) if names else None

    def position(column: str | None, default: int, what: str) -> int:
        if column is None or names is None:  # unnamed columns: the token first, the tag last
            return default
        if column not in names:
            if column in ("text", "label"):  # the columns block's defaults: first / last column
                return default
            raise DataError(
                f"{where}: {what} column '{column}' is not one of column_names ({', '.join(names)})"
            )
        return names.index(column)

    token_at = position(token_column, 0, "token")
    tag_at = position(tag_column, -1, "tag")
    result = ReadResult(examples=[], file=where)
    repaired: Counter = Counter()
    all_lines = text.split("\n")
    if all_lines and all_lines[-1] == "":
        all_lines.pop()
    first, last = lines or (1, None)
    if lines is not None and first > len(all_lines):
        raise DataError(
            f"{where}: lines {first}-{last or ''}: the file has {len(all_lines):,} lines; expected a range inside it"
        )
    ends = set(sentence_end)
    tag_name = names[tag_at] if names else "tag"
    sentence: _Sentence | None = None
    read_any = False

    def reject(reason: str, message: str) -> None:
        result.reject(reason, message, drop_invalid=drop_invalid)

    def close() -> None:
        nonlocal sentence
        current, sentence = sentence, None
        if current is None or (not current.tokens and current.bad is None):
            return
        if current.bad is not None:
            reject(*current.bad)
            return
        label = None
        if labelled:
            checked = []
            for tag, number in zip(current.tags, current.lines, strict=True):
                try:
                    checked.append(check_tag(tag, schema, tag_scheme, tag_name))
                except TagProblem as problem:
                    reject(problem.reason, f"{where}:{number}: {problem.what}")
                    return
            label, fixed = normalise_tags(checked, tag_scheme)
            repaired["orphan_i_tag"] += fixed
        number = len(result.examples) + result.n_dropped + 1
        result.examples.append(
            Example(
                id=f"{id_prefix}-{number}",
                text=" ".join(current.tokens),
                label=label,
                metadata=dict(constant_metadata or {}),
                tokens=current.tokens,
            )
        )

    stop = len(all_lines) if last is None else min(last, len(all_lines))
    for number in range(first, stop + 1):
        line = all_lines[number - 1].rstrip("\r")
        if number == 1:
            line = line.lstrip("\ufeff")
        if not line.strip():
            close()
            continue
        fields = split_fields(line, delimiter, n_columns)
        if document_marker is not None and fields and fields[0] == document_marker:
            close()
            continue
        read_any = True
        if sentence is None:
            sentence = _Sentence(number)
        if sentence.bad is not None:
            continue  # the rest of a sentence being dropped
        wanted = (n_columns or 2) if labelled else 1
        if len(fields) < wanted:
            what = "a token but no tag" if len(fields) == 1 else f"{len(fields)} fields, expected {wanted}"
            message = f"{where}:{number}: {what}; expected one token per line with its tag ({_layout(names, delimiter)})"
            if not drop_invalid:
                raise DataError(message)
            sentence.bad = ("missing_tag", message)
            continue
        token = fields[token_at]
        if not token:
            repaired["empty_token"] += 1
            continue
        sentence.tokens.append(token)
        sentence.tags.append(fields[tag_at] if labelled else "O")
        sentence.lines.append(number)
        if token in ends:
            close()
        elif max_sentence_tokens is not None and len(sentence.tokens) >= max_sentence_tokens:
            repaired["long_sentence_cut"] += 1
            close()
    close()
    if not read_any:
        span = f" (lines {first}-{last or ''})" if lines is not None else ""
        raise DataError(
            f"{where}: empty file{span}; expected one token per line with its tag, sentences separated by blank lines"
        )
    if not result.examples:
        raise DataError(
            f"{where}: empty dataset (all {result.n_dropped} sentences were invalid); expected at least one example"
        )
    result.schema = schema
    result.repaired = Counter({kind: n for kind, n in repaired.items() if n})
    return result


def _layout(names: list[str] | None, delimiter: str | None) -> str:
    sep = "whitespace" if delimiter is None else ("tab" if delimiter == "\t" else repr(delimiter))
    columns = f"columns {', '.join(names)}" if names else "token first, tag last"
    return f"{columns}, {sep}-separated"

"""What every reader shares below ``readers``: a file's text decoded (or one archive member's),
and the result of reading one file (examples, rows dropped, repairs counted)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from socialens.core.errors import DataError
from socialens.core.types import Example, LabelSchema
from socialens.data.archives import display_name, read_member
from socialens.data.targets import REPAIRS


@dataclass
class ReadResult:
    """Examples read from one file, the rows dropped per reason and the label schema used."""

    examples: list[Example]
    dropped: Counter = field(default_factory=Counter)
    file: str = ""
    schema: LabelSchema | None = None
    messages: dict[str, list[str]] = field(default_factory=dict)  # first few messages per reason
    repaired: Counter = field(default_factory=Counter)  # repairs made and counted, per kind

    @property
    def n_dropped(self) -> int:
        return sum(self.dropped.values())

    def reject(self, reason: str, message: str, *, drop_invalid: bool) -> None:
        """A bad row: a DataError with ``message``, or (``drop_invalid``) counted under ``reason``
        with the first three messages kept for the report."""
        if not drop_invalid:
            raise DataError(message)
        self.dropped[reason] += 1
        kept = self.messages.setdefault(reason, [])
        if len(kept) < 3:
            kept.append(message)

    def report(self) -> str:
        """Human-readable summary of what was read and dropped (for ``socialens data check``)."""
        lines = [f"{self.file}: {len(self.examples)} examples read, {self.n_dropped} rows dropped"]
        for reason, count in sorted(self.dropped.items()):
            lines.append(f"  {reason}: {count}")
            lines.extend(f"    e.g. {msg}" for msg in self.messages.get(reason, []))
        for kind, count in sorted(self.repaired.items()):
            lines.append(f"  repaired: {count} ({REPAIRS.get(kind, kind)})")
        return "\n".join(lines)


def read_text(path: Path, encoding: str, drop_invalid: bool, member: str | None = None) -> tuple[str, bool]:
    """Read and decode a whole file (or one ``member`` of a zip or tar archive). Returns (text,
    lossy): with drop_invalid, undecodable bytes become surrogate escapes and the rows holding them
    are dropped later as non_utf8."""
    name = display_name(path, member)
    if member is not None:
        data = read_member(path, member)
    elif not path.is_file():
        raise DataError(f"{path}: file not found" + (" (it is a folder)" if path.is_dir() else ""))
    else:
        data = path.read_bytes()
    codec = "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding
    try:
        return data.decode(codec), False
    except UnicodeDecodeError as exc:
        if not drop_invalid:
            line = data[: exc.start].count(b"\n") + 1
            raise DataError(
                f"{name}:{line}: byte 0x{data[exc.start]:02x} is not valid {encoding}; "
                f"expected {encoding} text (convert the file or set the encoding option)"
            ) from None
        return data.decode(codec, errors="surrogateescape"), True
    except LookupError:
        raise DataError(
            f"{name}: unknown encoding '{encoding}'; expected a Python codec name such as utf-8"
        ) from None

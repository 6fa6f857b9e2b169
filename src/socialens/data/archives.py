"""One member of a zip or tar archive, read into memory (shared-task data often ships as a .zip).

Nothing is ever extracted to disk. A member is named by its path inside the archive; names that are
absolute or climb out with ``..`` are refused, and so are tar members that are not regular files
(links, devices), so a shared dataset YAML cannot make the reader follow a path of its choosing.
A compressed file that is not an archive (``data.tsv.gz``) is recognised too, so that its bytes
are never decoded as text.
"""

from __future__ import annotations

import tarfile
import zipfile
from pathlib import Path, PurePosixPath

from socialens.core.errors import DataError

ZIP, TAR = "zip archive", "tar archive"
_COMPRESSED = {b"\x1f\x8b": "gzip", b"BZh": "bzip2", b"\xfd7zXZ\x00": "xz"}
_LISTED = 10  # members named in a message


def archive_kind(path: str | Path) -> str | None:
    """``"zip archive"``, ``"tar archive"`` (plain or compressed), ``"<codec>-compressed file"``
    for a compressed file that holds no tar archive, or None for anything else."""
    path = Path(path)
    if not path.is_file():
        return None
    with path.open("rb") as handle:
        head = handle.read(512 + 8)
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")) and zipfile.is_zipfile(path):
        return ZIP
    if head[257:262] == b"ustar":
        return TAR
    codec = next((name for magic, name in _COMPRESSED.items() if head.startswith(magic)), None)
    if codec is None:
        return None
    try:
        is_tar = tarfile.is_tarfile(path)
    except (OSError, EOFError, tarfile.TarError):
        is_tar = False
    return TAR if is_tar else f"{codec}-compressed file"


def display_name(path: str | Path, member: str | None) -> str:
    """How messages name a file: ``data.zip[train.tsv]`` for a member, else the path."""
    return f"{path}[{member}]" if member else str(path)


def safe_member_name(name: str) -> bool:
    """A relative path without ``..`` parts: what a member may be called to be listed or read."""
    if not name or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return False
    return ".." not in PurePosixPath(name.replace("\\", "/")).parts


def members(path: str | Path) -> list[str]:
    """The readable members (regular files with safe names), in archive order."""
    path = Path(path)
    kind = archive_kind(path)
    try:
        if kind == ZIP:
            with zipfile.ZipFile(path) as archive:
                names = [info.filename for info in archive.infolist() if not info.is_dir()]
        elif kind == TAR:
            with tarfile.open(path) as archive:
                names = [info.name for info in archive.getmembers() if info.isreg()]
        else:
            return []
    except (OSError, EOFError, zipfile.BadZipFile, tarfile.TarError) as exc:
        raise DataError(f"{path}: cannot read the {kind} ({type(exc).__name__}: {exc})") from None
    return [name for name in names if safe_member_name(name)]


def _listing(names: list[str]) -> str:
    if not names:
        return "no readable members"
    shown = ", ".join(names[:_LISTED])
    more = f" and {len(names) - _LISTED} more" if len(names) > _LISTED else ""
    return f"members {shown}{more}"


def archive_message(path: str | Path, kind: str, streamed: bool = False) -> str:
    """The one-line error for an archive (or a compressed file) read without naming a member;
    ``streamed``: for a reader that streams plain files only (``predict``), which cannot name one."""
    if kind not in (ZIP, TAR):
        return f"{path}: this is a {kind}, not text; decompress it first"
    if streamed:
        return f"{path}: this is a {kind} with {_listing(members(path))}; unzip it and name the file"
    return (
        f"{path}: this is a {kind} with {_listing(members(path))}; name a member "
        "(member: in the dataset YAML, --member on the command line) or unzip it"
    )


def read_member(path: str | Path, member: str) -> bytes:
    """The bytes of one member of a zip or tar archive (DataError for anything else)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found" + (" (it is a folder)" if path.is_dir() else ""))
    kind = archive_kind(path)
    if kind not in (ZIP, TAR):
        raise DataError(f"{path}: member '{member}' given, but this is not a zip or tar archive")
    if not safe_member_name(member):
        raise DataError(
            f"{display_name(path, member)}: refused member name; expected a relative path inside the "
            "archive, without '..'"
        )
    available = members(path)
    if member not in available:
        raise DataError(f"{path}: no member '{member}' in this {kind}; it has {_listing(available)}")
    try:
        if kind == ZIP:
            with zipfile.ZipFile(path) as archive:
                return archive.read(member)
        with tarfile.open(path) as archive:
            handle = archive.extractfile(archive.getmember(member))
            if handle is None:  # not a regular file; members() lists only regular files
                raise DataError(f"{display_name(path, member)}: not a regular file")
            with handle:
                return handle.read()
    except (OSError, EOFError, RuntimeError, zipfile.BadZipFile, tarfile.TarError) as exc:
        # RuntimeError: an encrypted zip member ("password required")
        raise DataError(
            f"{display_name(path, member)}: cannot read the member ({type(exc).__name__}: {exc})"
        ) from None

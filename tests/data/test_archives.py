"""Reading one member of a zip or tar archive in memory; archives read without a member say so."""

import gzip
import io
import tarfile
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from socialens.core.errors import DataError
from socialens.data.archives import TAR, ZIP, archive_kind, members, read_member, safe_member_name
from socialens.data.readers import read_examples

TRAIN = "id\ttweet\tlabel\n1\tyou are great\tNOT_OFF\n2\tyou are awful\tOFF\n"
TEST = "id\ttweet\tlabel\n9\tfine day\tNOT_OFF\n"


def make_zip(tmp_path: Path, name: str = "olid.zip") -> Path:
    path = tmp_path / name
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("olid/train.tsv", TRAIN)
        archive.writestr("olid/test.tsv", TEST)
        archive.writestr("README.txt", "OLID sample\n")
    return path


def make_tar(tmp_path: Path, name: str = "olid.tar.gz", extra: list[tarfile.TarInfo] = ()) -> Path:
    path = tmp_path / name
    with tarfile.open(path, "w:gz") as archive:
        for member, text in (("olid/train.tsv", TRAIN), ("olid/test.tsv", TEST)):
            data = text.encode()
            info = tarfile.TarInfo(member)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        for info in extra:
            archive.addfile(info)
    return path


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


def test_kinds(tmp_path):
    assert archive_kind(make_zip(tmp_path)) == ZIP
    assert archive_kind(make_tar(tmp_path)) == TAR
    assert archive_kind(make_tar(tmp_path, "plain.tar")) == TAR  # uncompressed (ustar magic)
    gz = tmp_path / "train.tsv.gz"
    gz.write_bytes(gzip.compress(TRAIN.encode()))
    assert archive_kind(gz) == "gzip-compressed file"
    text = tmp_path / "train.tsv"
    text.write_text(TRAIN)
    assert archive_kind(text) is None
    assert archive_kind(tmp_path) is None  # a folder


def test_zip_member_is_read_with_its_name_in_every_location(tmp_path):
    path = make_zip(tmp_path)
    result = read_examples(path, member="olid/train.tsv", text="tweet", label="label", id="id")
    assert [(ex.id, ex.text, ex.label) for ex in result.examples] == [
        ("1", "you are great", "NOT_OFF"),
        ("2", "you are awful", "OFF"),
    ]
    assert result.file == f"{path}[olid/train.tsv]"
    with pytest.raises(DataError) as exc:  # a row error names the archive, the member and the line
        read_examples(path, member="olid/train.tsv", text="tweet", label="label", schema=["NOT_OFF"])
    assert one_line(exc).startswith(f"{path}[olid/train.tsv]:3: unknown label")


def test_tar_gz_member_and_parquet_and_jsonl_members(tmp_path):
    path = make_tar(tmp_path)
    result = read_examples(path, member="olid/test.tsv", text="tweet", label="label")
    assert [ex.text for ex in result.examples] == ["fine day"]
    buffer = io.BytesIO()
    pd.DataFrame({"text": ["a", "b"], "label": ["x", "y"]}).to_parquet(buffer)
    bundle = tmp_path / "bundle.zip"
    with zipfile.ZipFile(bundle, "w") as archive:
        archive.writestr("d.parquet", buffer.getvalue())
        archive.writestr("d.jsonl", '{"text": "c", "label": "x"}\n')
    assert [ex.text for ex in read_examples(bundle, member="d.parquet", label="label").examples] == ["a", "b"]
    assert [ex.label for ex in read_examples(bundle, member="d.jsonl", label="label").examples] == ["x"]


def test_archive_without_a_member_lists_its_members(tmp_path):
    path = make_zip(tmp_path)
    for fmt in (None, "tsv"):  # with the format given, it used to be a utf-8 decoding error
        with pytest.raises(DataError) as exc:
            read_examples(path, format=fmt, text="tweet", label="label")
        assert one_line(exc) == (
            f"{path}: this is a zip archive with members olid/train.tsv, olid/test.tsv, README.txt; "
            "name a member (member: in the dataset YAML, --member on the command line) or unzip it"
        )
    with pytest.raises(DataError, match=r"olid\.tar\.gz: this is a tar archive with members olid/train"):
        read_examples(make_tar(tmp_path), format="tsv")
    gz = tmp_path / "train.tsv.gz"
    gz.write_bytes(gzip.compress(TRAIN.encode()))
    with pytest.raises(DataError) as exc:
        read_examples(gz, format="tsv")
    assert one_line(exc) == f"{gz}: this is a gzip-compressed file, not text; decompress it first"


def test_unknown_member_and_member_of_a_plain_file(tmp_path):
    path = make_zip(tmp_path)
    with pytest.raises(DataError) as exc:
        read_examples(path, member="train.tsv", text="tweet")
    assert one_line(exc) == (
        f"{path}: no member 'train.tsv' in this zip archive; "
        "it has members olid/train.tsv, olid/test.tsv, README.txt"
    )
    plain = tmp_path / "train.tsv"
    plain.write_text(TRAIN)
    with pytest.raises(DataError, match="member 'x.tsv' given, but this is not a zip or tar archive"):
        read_examples(plain, member="x.tsv", text="tweet")


@pytest.mark.parametrize("name", ["../secret.tsv", "/etc/passwd", "olid/../../x.tsv", "C:\\x.tsv", ""])
def test_member_names_that_leave_the_archive_are_refused(name):
    assert not safe_member_name(name)


def test_traversal_members_are_neither_listed_nor_read(tmp_path):
    path = tmp_path / "evil.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("../../outside.tsv", TRAIN)
        archive.writestr("ok.tsv", TRAIN)
    assert members(path) == ["ok.tsv"]
    with pytest.raises(DataError) as exc:
        read_member(path, "../../outside.tsv")
    assert one_line(exc) == (
        f"{path}[../../outside.tsv]: refused member name; expected a relative path inside the archive, "
        "without '..'"
    )
    assert not (tmp_path.parent / "outside.tsv").exists()  # nothing is ever extracted


def test_tar_links_are_not_followed(tmp_path):
    (tmp_path / "secret.txt").write_text("id\ttweet\tlabel\n1\tsecret\tOFF\n")
    link = tarfile.TarInfo("olid/link.tsv")
    link.type, link.linkname = tarfile.SYMTYPE, str(tmp_path / "secret.txt")
    hard = tarfile.TarInfo("olid/hard.tsv")
    hard.type, hard.linkname = tarfile.LNKTYPE, "olid/train.tsv"
    path = make_tar(tmp_path, extra=[link, hard])
    assert members(path) == ["olid/train.tsv", "olid/test.tsv"]
    with pytest.raises(DataError, match=r"no member 'olid/link\.tsv' in this tar archive"):
        read_member(path, "olid/link.tsv")
    with pytest.raises(DataError, match=r"no member 'olid/hard\.tsv'"):
        read_member(path, "olid/hard.tsv")

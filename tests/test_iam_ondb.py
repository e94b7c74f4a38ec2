import shutil
import tarfile

import numpy as np
import pytest

from conftest import line_xml, shared_data
from writemate.data import iam_ondb


def test_reads_archives_and_pairs_lines(iam_dir):
    lines, report = iam_ondb.read(iam_dir)
    assert report.stroke_files == 24
    assert report.lines == len(lines) == 18
    assert report.without_transcription == 6
    first = lines[0]
    assert first.id.endswith("-01") and first.text.startswith("Line 1 of form")
    assert all(s.shape[1] == 2 for s in first.strokes)


def test_reads_unpacked_folders(iam_dir, tmp_path):
    for name in ("lineStrokes-all.tar.gz", "ascii-all.tar.gz"):
        with tarfile.open(iam_dir / name) as tar:
            tar.extractall(tmp_path, filter="data")
    lines, _ = iam_ondb.read(tmp_path)
    packed, _ = iam_ondb.read(iam_dir)
    assert [line.id for line in lines] == [line.id for line in packed]


def test_missing_archive_is_a_clear_error(iam_dir, tmp_path):
    shutil.copy(iam_dir / "ascii-all.tar.gz", tmp_path)
    with pytest.raises(iam_ondb.DatasetError, match="missing lineStrokes-all.tar.gz"):
        iam_ondb.read(tmp_path)
    with pytest.raises(iam_ondb.DatasetError, match="no such file"):
        iam_ondb.read(tmp_path / "nope")


def test_damaged_archive_is_a_clear_error(iam_dir, tmp_path):
    shutil.copy(iam_dir / "ascii-all.tar.gz", tmp_path)
    (tmp_path / "lineStrokes-all.tar.gz").write_bytes(b"not a tar file at all")
    with pytest.raises(iam_ondb.DatasetError, match="not a readable tar archive"):
        iam_ondb.read(tmp_path)


def test_transcription_parsing_and_detokenising():
    text = "OCR:\n\nignored\n\nCSR:\n\nA MOVE to stop Mr . Gaitskell\n\nfrom nominating , he  said\n"
    assert iam_ondb.parse_transcription(text) == ["A MOVE to stop Mr . Gaitskell", "from nominating , he said"]
    assert iam_ondb.detokenise("Mr . Foot , it is n't so ; he 's here") == "Mr. Foot, it isn't so; he's here"


def test_text_groups_and_split_are_deterministic():
    assert iam_ondb.text_group("a01-000u-01") == "a01-000"
    assert iam_ondb.text_group("a01-000x-03") == "a01-000"
    ids = [f"a{i:02d}-{j:03d}{w}-{n:02d}" for i in range(20) for j in range(20) for w in "uxz" for n in (1, 2)]
    val = {iam_ondb.text_group(i) for i in ids if iam_ondb.is_validation(i)}
    train = {iam_ondb.text_group(i) for i in ids if not iam_ondb.is_validation(i)}
    assert not val & train  # no text shared between the two
    assert 0.02 < len(val) / (len(val) + len(train)) < 0.09


def test_corrupt_points_are_rejected_and_counted(tmp_path):
    good = np.array([[0, 0], [10, 0], [20, 0], [30, 0]])
    spiky = np.array([[0, 0], [10, 0], [3000, 3000], [20, 0], [30, 0]])
    strokes = iam_ondb.parse_line_xml(line_xml([spiky, good + 100]))
    cleaned, report = iam_ondb.ink.reject_corrupt(strokes, iam_ondb.MAX_STEP)
    assert report.spikes_removed == 1
    assert sum(len(s) for s in cleaned) == 8


def test_prepare_caches(iam_dir, tmp_path):
    first = iam_ondb.prepare(iam_dir, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 1
    again = iam_ondb.prepare(iam_dir, cache_dir=tmp_path)
    assert again.ids == first.ids and again.texts == first.texts
    for a, b in zip(first.offsets, again.offsets):
        np.testing.assert_array_equal(a, b)
    assert first.texts[0].endswith("form 0,")  # detokenised
    assert again.report["lines"] == 18


def test_shared_copy_counts():
    root = shared_data("iam-ondb")
    prepared = iam_ondb.prepare(root)
    assert len(prepared.ids) > 10000
    val = prepared.subset(True)
    train = prepared.subset(False)
    assert 0.03 < len(val.ids) / len(prepared.ids) < 0.08
    assert not {iam_ondb.text_group(i) for i in val.ids} & {iam_ondb.text_group(i) for i in train.ids}

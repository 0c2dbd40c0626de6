"""The data contract's CSV writers and readers: formula-like cells are neutralised on disk and round-trip."""
import numpy as np
import pandas as pd
import pytest

from neardup.contract import (MANIFEST, MANIFEST_COLUMNS, SKIPPED_COLUMNS, TRUTH, FetchResult, UserError, empty_frame,
                              escape_cells, read_groups, read_manifest, read_table, unescape_cells, write_fetch_result,
                              write_table)

IDS = ["=1+1.jpg", "-x.jpg", "@a.jpg", "+b.jpg", "\tt.jpg", "\rr.jpg", "'=quoted.jpg", "'s.jpg", "plain.jpg",
       "=HYPERLINK(\"http://x\",\"y\").jpg", "a,b\nc.jpg", "-1"]
LABELS = ["-1", "=cmd", "+2.5e3", "-", "", "x", "@SUM(A1)", "0", "-0.5", "1e-3", "+x", "-inf"]


def manifest():
    n = len(IDS)
    known = {"id": IDS, "path": [f"/data/{i}" for i in IDS], "label": LABELS, "label_name": LABELS[::-1],
             "set": ["train"] * n, "sha256": [f"{k:064x}" for k in range(n)], "width": range(1, n + 1),
             "height": [-k for k in range(n)], "format": "JPEG"}
    return pd.DataFrame({c: known.get(c, "") for c in MANIFEST_COLUMNS})


def test_formula_cells_get_a_quote_on_disk_and_round_trip(tmp_path):
    table = manifest()
    truth = pd.DataFrame({"id": IDS[:3], "original": IDS[3:6], "transform": ["-jpeg", "=x", "crop"]})
    write_fetch_result(FetchResult(table, empty_frame(SKIPPED_COLUMNS), truth), tmp_path)
    back = read_table(tmp_path / MANIFEST)
    assert back.equals(table.astype(str))  # every text cell as it was, numbers as their text
    assert read_table(tmp_path / TRUTH).equals(truth)
    lines = (tmp_path / MANIFEST).read_text().splitlines()
    assert lines[1].startswith("\"'=1+1.jpg\",") and lines[2].startswith("\"'-x.jpg\",")  # quoted: a CR below
    write_table(table.drop(index=5), tmp_path / "t.csv")  # without the CR cell: minimal quoting
    text = (tmp_path / "t.csv").read_text()
    for cell in ("'=1+1.jpg", "'-x.jpg", "'@a.jpg", "'+b.jpg", "'\tt.jpg", "''=quoted.jpg", "'=cmd", "'@SUM(A1)",
                 "'+x", "'-inf", "'-"):
        assert f"\n{cell}," in text or f",{cell}," in text, cell
    for cell in ("'s.jpg", "-1", "+2.5e3", "-0.5", "1e-3"):  # no formula: as they are
        assert f",{cell}," in text or f"\n{cell}," in text, cell
    assert "'-1" not in text and ",-1," in text and "\n-1," in text  # the label -1 and the id -1
    assert read_table(tmp_path / "t.csv").equals(table.drop(index=5).astype(str).reset_index(drop=True))


def test_only_text_columns_are_escaped(tmp_path):
    table = pd.DataFrame({"eps": [0.1, -0.2], "group": [-1, 3], "id": ["-a", "b"], "distance": [-0.5, np.nan],
                          "mixed": [-7, "=x"]})
    out = escape_cells(table)
    assert out["eps"].tolist() == [0.1, -0.2] and out["group"].tolist() == [-1, 3]
    assert out["id"].tolist() == ["'-a", "b"] and out["mixed"].tolist() == [-7, "'=x"]
    assert table["id"].tolist() == ["-a", "b"]  # the caller's table is left alone
    assert escape_cells(table[["eps", "group"]]) is not None and unescape_cells(out)["id"].tolist() == ["-a", "b"]
    write_table(table.drop(columns="mixed"), tmp_path / "groups.csv")
    assert (tmp_path / "groups.csv").read_text().splitlines()[1] == "0.1,-1,'-a,-0.5"
    groups = read_groups(tmp_path / "groups.csv")
    assert groups["id"].tolist() == ["-a", "b"] and groups["group"].tolist() == [-1, 3]


def test_an_empty_manifest_is_a_user_error(tmp_path):
    write_fetch_result(FetchResult(empty_frame(MANIFEST_COLUMNS), empty_frame(SKIPPED_COLUMNS)), tmp_path)
    assert len(read_table(tmp_path / MANIFEST)) == 0
    with pytest.raises(UserError, match=r"manifest.csv lists no images, .*skipped.csv.*fetch.source and fetch.input"):
        read_manifest(tmp_path / MANIFEST)
    write_fetch_result(FetchResult(manifest(), empty_frame(SKIPPED_COLUMNS)), tmp_path)
    assert read_manifest(tmp_path / MANIFEST)["id"].tolist() == IDS

"""`bioreview score` on prediction files: coverage printed and stored, bad input a one-line error with exit 1."""

import json

from bioreview_assets.cli.main import main
from bioreview_assets.sample.generator import generate_sample_splits


def _val_ids():
    return [row["id"] for row in generate_sample_splits()["val"]]


def _score(tmp_path, capsys, rows: str, *extra: str):
    path = tmp_path / "preds.jsonl"
    path.write_text(rows, encoding="utf-8")
    code = main(["score", "--predictions", str(path), "--split", "val", "--matcher", "lexical", "--bootstrap", "0",
                 *extra])
    out, err = capsys.readouterr()
    return code, out, err, str(path)


def test_coverage_is_printed_warned_and_stored_with_the_score(tmp_path, capsys):
    ids = _val_ids()
    rows = "".join(json.dumps({"article_id": i, "concerns": ["The sample size is too small."]}) + "\n"
                   for i in ids[:10])
    rows += json.dumps({"article_id": "nowhere:1", "concerns": ["x"]}) + "\n"
    code, out, err, path = _score(tmp_path, capsys, rows, "--out", str(tmp_path / "result.json"))
    assert code == 0
    printed = json.loads(out)
    assert printed["coverage"]["covered_articles"] == 10 and printed["coverage"]["missing_articles"] == 20
    assert printed["coverage"]["unknown_examples"] == [{"id": "nowhere:1", "line": 11}]
    assert f"warning: {path}: 1 predictions are for ids not in the val split" in err
    assert f"warning: {path}: 20 of 30 val articles have no prediction" in err
    stored = json.loads((tmp_path / "result.json").read_text())
    assert stored["coverage"] == printed["coverage"] and stored["f1"] == printed["f1"]
    assert printed["system"] == "preds" and printed["split"] == "val" and printed["matcher"] == "lexical"
    assert stored["metrics"]["f1_micro"] == stored["f1"]


def test_malformed_rows_are_an_error_naming_file_and_line(tmp_path, capsys):
    ids = _val_ids()
    rows = json.dumps({"article_id": ids[0], "concerns": "a string"}) + "\n" + json.dumps([ids[1]]) + "\n"
    code, out, err, path = _score(tmp_path, capsys, rows)
    assert code == 1 and out == ""
    assert err.startswith(f"bioreview score: error: {path}: 2 malformed rows")
    assert "line 1: \"concerns\" must be a list" in err and "line 2: the row is an array" in err
    assert "Traceback" not in err


def test_empty_file_unknown_or_integer_ids_are_errors_not_f1_zero(tmp_path, capsys):
    for rows, expected in [
        ("", "no predictions"),
        (json.dumps({"article_id": "nowhere:1", "concerns": ["x"]}) + "\n", "none of its 1 article ids is in the val"),
        (json.dumps({"article_id": 17, "concerns": ["x"]}) + "\n", '"article_id" must be a string, got a number 17'),
    ]:
        code, _, err, path = _score(tmp_path, capsys, rows)
        assert code == 1 and f"{path}: " in err and expected in err, err


def test_sql_refuses_writes_and_outside_files_with_a_one_line_error(storage_root, capsys):
    """Issue 34: `bioreview sql` is read-only; a refused statement is an error line (exit 1), not a traceback."""
    import polars as pl

    from bioreview_assets.store.artifacts import ArtifactStore

    ArtifactStore().write_parquet(pl.DataFrame({"system": ["a"], "f1": [0.5]}), "scores", "a", "val",
                                  "scores.parquet")
    for sql, said in ((f"COPY (SELECT 1) TO '{storage_root}/x.csv'", "COPY statements are refused"),
                      ("SELECT * FROM read_csv('/etc/passwd')", "Permission Error")):
        assert main(["sql", sql]) == 1
        err = capsys.readouterr().err
        assert err.startswith("bioreview sql: error: ") and said in err and "Traceback" not in err
    assert not (storage_root / "x.csv").exists()
    assert main(["sql", "SELECT f1 FROM scores"]) == 0 and "0.5" in capsys.readouterr().out

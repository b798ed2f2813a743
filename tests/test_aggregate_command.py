"""``manage.py aggregate`` and the CSV encoding behind it."""

import csv
import io
from pathlib import Path

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from annotation.aggregation_io import AnswersError, encode_answers, factorize, read_answers_csv
from annotation.dawid_skene import HierarchicalDawidSkene

CROWD = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "crowd"
CROWD_SETS = sorted(path.name for path in CROWD.iterdir() if (path / "answer.csv").exists()) if CROWD.is_dir() else []

ANSWERS = """question,worker,answer
007,ann,cat
007,bob,cat
007,cy,dog
q2,ann,dog
q2,bob,dog
q2,cy,dog
q3,ann,bird
q3,bob,cat
q3,cy,bird
"""


def write(tmp_path, text, name="answers.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def run(*args):
    out, err = io.StringIO(), io.StringIO()
    call_command("aggregate", *map(str, args), stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def read_rows(text):
    return list(csv.DictReader(io.StringIO(text)))


@pytest.mark.parametrize("method", ["mv", "ds", "hds"])
def test_writes_item_label_confidence(tmp_path, method):
    output = tmp_path / "out.csv"
    _, err = run(write(tmp_path, ANSWERS), "--method", method, "--output", output)
    rows = read_rows(output.read_text(encoding="utf-8"))
    assert list(rows[0]) == ["item", "label", "confidence"]
    assert [(row["item"], row["label"]) for row in rows] == [("007", "cat"), ("q2", "dog"), ("q3", "bird")]
    confidence = [float(row["confidence"]) for row in rows]
    assert all(0 < value <= 1 for value in confidence)
    if method == "mv":
        assert confidence == pytest.approx([2 / 3, 1.0, 2 / 3], abs=1e-6)
    assert f"{method}: 9 answers, 3 items, 3 annotators, 3 labels" in err


def test_stdout_is_the_default_and_dash_means_stdout(tmp_path):
    answers = write(tmp_path, ANSWERS)
    default, _ = run(answers)
    dash, _ = run(answers, "--output", "-")
    assert default == dash
    assert read_rows(default)[0]["item"] == "007"  # ids stay strings: leading zeros kept


def test_default_method_is_the_hierarchical_aggregator_of_the_loop(tmp_path):
    answers = write(tmp_path, ANSWERS)
    default, err = run(answers)
    explicit, _ = run(answers, "--method", "hds")
    assert default == explicit and err.startswith("hds: 9 answers") and "temperature" in err
    encoded, _ = read_answers_csv(answers)
    model = HierarchicalDawidSkene().fit(encoded.items, encoded.workers, encoded.labels, **encoded.counts)
    rows = read_rows(default)
    assert [row["label"] for row in rows] == encoded.label_names[model.predict()].tolist()
    assert [float(row["confidence"]) for row in rows] == pytest.approx(model.confidence(), abs=1e-6)


def test_custom_columns_by_name_and_by_position(tmp_path):
    text = "task,who,label,extra\n" + "\n".join(
        f"{item},{worker},{label},x" for item, worker, label in [("a", "w1", "2"), ("a", "w2", "2"), ("b", "w1", "10")]
    )
    answers = write(tmp_path, text)
    by_name, _ = run(answers, "--item-col", "task", "--worker-col", "who", "--label-col", "label", "--method", "mv")
    by_position, _ = run(answers, "--item-col", "0", "--worker-col", "1", "--label-col", "2", "--method", "mv")
    assert by_name == by_position
    assert [(row["item"], row["label"]) for row in read_rows(by_name)] == [("a", "2"), ("b", "10")]


def test_truth_file_prints_accuracy(tmp_path):
    truth = write(tmp_path, "question,truth\n007,cat\nq2,dog\nq3,cat\n", name="truth.csv")
    _, err = run(write(tmp_path, ANSWERS), "--method", "mv", "--truth", truth)
    assert "accuracy on gold: 0.6667 (3 items)" in err


def test_missing_file(tmp_path):
    with pytest.raises(CommandError, match="no such file"):
        run(tmp_path / "nope.csv")


def test_missing_column_names_it_and_lists_the_columns(tmp_path):
    answers = write(tmp_path, "task,worker,answer\na,w,1\n")
    with pytest.raises(CommandError) as raised:
        run(answers)
    message = str(raised.value)
    assert "'question' not found" in message and "'task', 'worker', 'answer'" in message


@pytest.mark.parametrize("text", ["", "\n\n", "question,worker,answer\n", "question,worker,answer\n,,\n"])
def test_empty_file(tmp_path, text):
    with pytest.raises(CommandError, match="empty file|no answers"):
        run(write(tmp_path, text))


def test_not_utf8(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("question,worker,answer\ncaf\xe9,w,1\n".encode("latin-1"))
    with pytest.raises(CommandError, match="not a readable UTF-8 CSV"):
        run(path)


def test_rows_with_empty_cells_are_skipped_and_counted(tmp_path):
    _, err = run(write(tmp_path, ANSWERS + "q4,ann,\nq4,,dog\n"), "--method", "mv")
    assert "skipped 2 rows" in err


def test_unwritable_output(tmp_path):
    with pytest.raises(CommandError, match="cannot write"):
        run(write(tmp_path, ANSWERS), "--output", tmp_path / "missing-dir" / "out.csv")


def test_factorize_orders():
    codes, names = factorize(["b", "a", "b", "c"])
    assert names.tolist() == ["b", "a", "c"] and codes.tolist() == [0, 1, 0, 2]
    codes, names = factorize(["10", "2", "1", "2"], order="natural")
    assert names.tolist() == ["1", "2", "10"] and codes.tolist() == [2, 1, 0, 1]
    _, names = factorize(["b", "10", "a"], order="natural")
    assert names.tolist() == ["10", "a", "b"]  # not all numeric: string order


def test_encode_answers_and_counts():
    encoded = encode_answers(["x", "y", "x"], ["w", "w", "v"], ["1", "0", "1"])
    assert encoded.counts == {"n_items": 2, "n_workers": 2, "n_classes": 2}
    assert encoded.labels.tolist() == [1, 0, 1] and len(encoded) == 3
    with pytest.raises(ValueError):
        encode_answers(["x"], ["w"], [])


def test_read_answers_csv_strips_whitespace_and_bom(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_text("\ufeffquestion , worker,answer\n a ,w, 1\n", encoding="utf-8")
    encoded, skipped = read_answers_csv(path)
    assert encoded.item_names.tolist() == ["a"] and encoded.label_names.tolist() == ["1"] and skipped == 0
    with pytest.raises(AnswersError):
        read_answers_csv(tmp_path / "absent.csv")


@pytest.mark.skipif(not CROWD_SETS, reason="shared crowd datasets not present")
@pytest.mark.parametrize("name", CROWD_SETS)
@pytest.mark.parametrize("method", ["mv", "ds", "hds"])
def test_real_crowd_datasets(tmp_path, name, method):
    folder = CROWD / name
    output = tmp_path / "out.csv"
    _, err = run(
        folder / "answer.csv",
        *("--item-col", "0", "--worker-col", "1", "--label-col", "2"),
        *("--method", method, "--output", output, "--truth", folder / "truth.csv"),
    )
    rows = read_rows(output.read_text(encoding="utf-8"))
    encoded, _ = read_answers_csv(folder / "answer.csv", item_col="0", worker_col="1", label_col="2")
    assert len(rows) == encoded.counts["n_items"]
    assert {row["label"] for row in rows} <= set(encoded.label_names.tolist())
    confidence = np.array([float(row["confidence"]) for row in rows])
    assert ((confidence > 0) & (confidence <= 1)).all()
    accuracy = float(err.split("accuracy on gold: ")[1].split()[0])
    assert accuracy > 0.5  # every set is far above chance with either method

"""The simulator: dataset files, simulated annotators, the in-process worker, and ``manage.py simulate``
end to end in its own process (throwaway database, real services and tasks)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from acquisition.datasets import DatasetError, load_dataset
from loop.simulator import InProcessWorker, SimulatedAnnotator

ROOT = Path(__file__).resolve().parent.parent

TEMPLATES = {
    "refund": "please refund order {i} money back",
    "card_lost": "my card {i} was lost block it",
    "opening_hours": "when do branches open on day {i}",
    "transfer": "how do I send a transfer {i} abroad",
}


def write_dataset(folder: Path, n_train=60, n_test=20, *, column="category"):
    import csv

    folder.mkdir(parents=True, exist_ok=True)
    for name, n in (("train.csv", n_train), ("test.csv", n_test)):
        with open(folder / name, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", column])
            for i in range(n):
                label = list(TEMPLATES)[i % len(TEMPLATES)]
                offset = 0 if name == "train.csv" else 10_000
                writer.writerow([TEMPLATES[label].format(i=i + offset), label])
    return folder


def test_dataset_folder_and_single_file(tmp_path):
    data = load_dataset(write_dataset(tmp_path / "intents", column="label"))
    assert data.name == "intents" and len(data.train) == 60 and len(data.test) == 20
    assert data.categories == sorted(TEMPLATES) and data.train.labels.dtype == np.int64
    single = tmp_path / "one.csv"
    single.write_text('text,category,split\nhello,a,train\n"multi\nline",b,train\nbye,a,test\n', encoding="utf-8")
    data = load_dataset(single)
    assert data.train.texts == ["hello", "multi\nline"] and data.test.labels.tolist() == [0]


@pytest.mark.parametrize(
    "content, message",
    [
        ("text,category\nhello,a\nbye,b\n", "the train and test splits must both have rows"),
        ("words,category,split\nhello,a,train\n", "no 'text' column"),
        ("text,kind,split\nhello,a,train\n", "no 'category' or 'label' column"),
        ("text,category,split\nhello,a,dev\n", r"unknown split values \['dev'\]"),
        ("text,category,split\n,a,train\nx,b,test\n", "line 2: empty text"),
        ("text,category,split\nhello,a,train\nbye,a,test\n", "at least two classes"),
    ],
)
def test_bad_datasets_say_what_is_wrong(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DatasetError, match=message):
        load_dataset(path)


def test_a_csv_without_a_split_column_holds_out_a_stratified_share():
    """The shipped demo slice (no split column: it is all one pool) loads as a dataset: a seeded 20%
    of each class is the test split, the rest the pool."""
    path = ROOT / "annotation" / "demo" / "banking77_sample.csv"
    data = load_dataset(path)
    assert data.name == "banking77_sample" and len(data.categories) == 77
    assert len(data.train) + len(data.test) == 2002 and len(data.test) == 77 * 5  # 26 per class: 5 test
    assert np.bincount(data.test.labels, minlength=77).tolist() == [5] * 77
    assert not set(data.train.texts) & set(data.test.texts)
    again = load_dataset(path)
    assert again.test.texts == data.test.texts  # the same split every time


def test_missing_test_split_is_named(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "train.csv").write_text("text,category\nx,a\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"missing \['test.csv'\]"):
        load_dataset(tmp_path / "d")


def test_simulated_annotators_err_at_their_rate_and_never_answer_the_truth_when_wrong():
    annotator = SimulatedAnnotator(user=None, accuracy=0.8, n_classes=5, rng=np.random.default_rng(0))
    truth = np.random.default_rng(1).integers(0, 5, 20_000)
    answers = np.array([annotator.answer(int(t)) for t in truth])
    assert abs((answers == truth).mean() - 0.8) < 0.01
    wrong = answers[answers != truth]
    assert set(np.unique(wrong)) == set(range(5))  # errors spread over the other classes
    perfect = SimulatedAnnotator(user=None, accuracy=1.0, n_classes=5, rng=np.random.default_rng(0))
    assert all(perfect.answer(int(t)) == t for t in truth[:100])


def test_in_process_worker_runs_sent_tasks_in_order_and_restores_sending():
    from celery import shared_task
    from celery.app.task import Task

    ran = []

    @shared_task(name="tests.simulate.record")
    def record(value, then=None):
        ran.append(value)
        if then is not None:
            record.delay(then)

    original = Task.apply_async
    with InProcessWorker() as worker:
        record.delay(1, then=3)
        record.apply_async((2,), countdown=60)
        assert ran == []  # sent, not run
        assert worker.run_until_idle() == 3
    assert ran == [1, 2, 3] and worker.executed["tests.simulate.record"] == 3
    assert Task.apply_async is original


@pytest.mark.worker
def test_simulate_command_writes_learning_curves(tmp_path):
    dataset = write_dataset(tmp_path / "intents", n_train=120, n_test=40)
    out = tmp_path / "curves.json"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "quorum.settings",
        "DEBUG": "1",
        "QUORUM_DATA_DIR": str(tmp_path / "data"),
        "LOG_LEVEL": "WARNING",
    }
    env.pop("DATABASE_URL", None)  # the embedded default: a throwaway in-memory SQLite database
    env.pop("CELERY_BROKER_URL", None)
    result = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "simulate",
            "--dataset",
            str(dataset),
            "--strategy",
            "random,margin",
            "--encoder",
            "hashing:32",
            "--annotators",
            "2",
            "--annotator-accuracy",
            "0.9",
            "--labels-per-item",
            "2",
            "--batch",
            "10",
            "--budget",
            "40",
            "--seeds",
            "2",
            "--out",
            str(out),
            "--plot",
            str(tmp_path / "curves.svg"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(out.read_text())
    assert report["config"]["strategies"] == ["random", "margin"] and report["config"]["seeds"] == [0, 1]
    assert len(report["runs"]) == 4
    for run in report["runs"]:
        labels = [point["labels"] for point in run["points"]]
        assert labels == sorted(set(labels)) and 30 <= labels[-1] <= 40 and labels[0] >= 10
        assert all(0.0 <= point["accuracy"] <= 1.0 for point in run["points"])
        # two answers per labelled item (items still in review add answers but no label)
        assert all(point["annotations"] >= 2 * point["labels"] for point in run["points"])
        assert run["points"][-1]["annotations"] == 80
        assert run["tasks"]["acquisition.tasks.training_job_run"] == len(run["points"]) >= 3
        assert run["tasks"]["annotation.tasks.project_aggregate_task"] >= 4
    assert set(report["mean"]) == {"random", "margin"}
    assert report["target"]["accuracy"] is not None
    assert "labels to reach random@" in result.stdout
    margin_row = next(
        line for line in result.stdout.splitlines() if line.startswith("margin ") and "checkpoint" in line
    )
    assert ">= at every checkpoint" in margin_row or "below at checkpoints @" in margin_row
    assert "[margin seed 1]" in result.stdout  # progress while it runs
    svg = (tmp_path / "curves.svg").read_text()
    assert svg.count('data-chart="line"') == 2 and 'data-series="margin"' in svg
    # the throwaway database is gone: nothing was written into the configured one
    assert not (tmp_path / "data" / "quorum.sqlite3").exists()


def test_simulate_refuses_bad_arguments(tmp_path):
    from django.core.management import call_command
    from django.core.management.base import CommandError

    dataset = write_dataset(tmp_path / "d")
    with pytest.raises(CommandError, match="unknown"):
        call_command("simulate", dataset=str(dataset), strategy="magic")
    with pytest.raises(CommandError, match="labels-per-item"):
        call_command("simulate", dataset=str(dataset), strategy="random", annotators=1, labels_per_item=2)
    with pytest.raises(CommandError, match="no such file"):
        call_command("simulate", dataset=str(tmp_path / "nope"), strategy="random")


# ------------------------------------------------------------------------------ the printed summary
def _run(line, seed, points, strategy=None):
    return {
        "strategy": strategy or line.removesuffix("+ssl"),
        "line": line,
        "seed": seed,
        "points": [{"labels": n, "accuracy": a, "macro_f1": a / 2} for n, a in points],
    }


def test_labels_to_reach_interpolates_the_first_crossing():
    from loop.management.commands.simulate import labels_to_reach

    curve = [{"labels": n, "accuracy": a} for n, a in [(100, 0.5), (200, 0.7), (300, 0.65), (400, 0.9)]]
    # the first crossing of 0.6 lies between 100 and 200: numpy's interpolation of labels on accuracy
    assert labels_to_reach(curve, 0.6) == pytest.approx(float(np.interp(0.6, [0.5, 0.7], [100, 200])))
    assert labels_to_reach(curve, 0.8) == pytest.approx(float(np.interp(0.8, [0.65, 0.9], [300, 400])))
    assert labels_to_reach(curve, 0.7) == 200.0  # reached exactly at a point
    assert labels_to_reach(curve, 0.4) == 100.0  # the first point already reaches it
    assert labels_to_reach(curve, 0.95) is None


def test_compare_reports_labels_to_target_per_seed_and_checkpoints_below_the_reference():
    from loop.management.commands.simulate import compare, format_summary

    random_points = [
        [(200, 0.50), (500, 0.70), (1000, 0.80), (2000, 0.90)],
        [(200, 0.54), (500, 0.72), (1000, 0.82), (2000, 0.86)],
    ]
    msal_points = [[(200, 0.60), (500, 0.85), (1000, 0.91)], [(200, 0.40), (500, 0.86), (800, 0.89), (1000, 0.93)]]
    runs = [_run("random+ssl", s, p) for s, p in enumerate(random_points)]
    runs += [_run("msal+ssl", s, p) for s, p in enumerate(msal_points)]
    report = compare(runs, reference="random+ssl")
    target = report["target"]
    assert target["line"] == "random+ssl" and target["labels"] == 2000
    assert target["accuracy"] == pytest.approx(0.88)  # mean of 0.90 and 0.86
    msal = report["lines"]["msal+ssl"]
    # seed 0 crosses 0.88 between 500 (0.85) and 1000 (0.91); seed 1 between 500 (0.86) and 800 (0.89)
    seed0 = float(np.interp(0.88, [0.85, 0.91], [500, 1000]))
    seed1 = float(np.interp(0.88, [0.86, 0.89], [500, 800]))
    assert msal["labels_to_target_per_seed"] == pytest.approx([seed0, seed1])
    assert msal["labels_to_target_seed_mean"] == pytest.approx((seed0 + seed1) / 2)
    # the mean curve: 0.855 at 500, (0.85 + 0.89) / 2 = 0.87 at 800, 0.92 at 1000
    assert msal["labels_to_target"] == pytest.approx(float(np.interp(0.88, [0.87, 0.92], [800, 1000])))
    # at 200 msal's mean (0.50) is under random's (0.52): the one checkpoint below; 2000 not reached
    assert msal["below_reference_at"] == [200] and msal["never_below_reference"] is False
    assert msal["accuracy_at"] == pytest.approx({"200": 0.50, "500": 0.855, "800": 0.87, "1000": 0.92})
    assert report["lines"]["random+ssl"]["labels_to_target"] == 2000.0
    text = format_summary({"lines": report["lines"], "checkpoints": report["checkpoints"], "target": target})
    assert "labels to reach random+ssl@2,000 accuracy (0.8800)" in text
    row = next(line for line in text.splitlines() if line.startswith("msal+ssl") and "below" in line)
    assert f"{round(seed0):,}" in row and f"{round(seed1):,}" in row and "below at checkpoints @200" in row
    # a line that never reaches the target says so, seed by seed
    runs.append(_run("margin+ssl", 0, [(200, 0.55), (500, 0.75)]))
    report = compare(runs, reference="random+ssl")
    assert report["lines"]["margin+ssl"]["labels_to_target"] is None
    assert report["lines"]["margin+ssl"]["labels_to_target_seed_mean"] is None
    assert report["lines"]["margin+ssl"]["never_below_reference"] is True


def test_merge_reports_joins_runs_made_apart(tmp_path):
    from django.core.management import call_command

    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps({"config": {}, "dataset": {}, "runs": [_run("random", 0, [(500, 0.6), (2000, 0.8)])]}))
    b.write_text(json.dumps({"config": {}, "dataset": {}, "runs": [_run("msal", 0, [(500, 0.7), (1000, 0.9)])]}))
    from io import StringIO

    out = StringIO()
    call_command("simulate", merge=[str(a), str(b)], stdout=out)
    text = out.getvalue()
    expected = float(np.interp(0.8, [0.7, 0.9], [500, 1000]))
    assert "labels to reach random@2,000 accuracy (0.8000)" in text
    msal_row = next(line for line in text.splitlines() if line.startswith("msal ") and "checkpoint" in line)
    assert f"{round(expected):,}" in msal_row and ">= at every checkpoint" in msal_row


def test_line_names_follow_the_head():
    from django.core.management.base import CommandError

    from loop.management.commands.simulate import _heads, line_name

    assert [line_name("msal", h) for h in _heads("on,off")] == ["msal+ssl", "msal"]
    assert [line_name("random", h) for h in _heads(None)] == ["random"]
    with pytest.raises(CommandError, match="on, off or on,off"):
        _heads("maybe")

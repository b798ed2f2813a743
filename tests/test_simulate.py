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
    assert "labels to reach random's accuracy" in result.stdout
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

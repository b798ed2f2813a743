"""``manage.py simulate`` on a dataset of tag sets: a multi-label project per run, annotators who miss
and add tags, curves of subset accuracy, micro- and macro-F1, and the comparison on macro-F1."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from loop.tag_simulation import SimulatedTagger

ROOT = Path(__file__).resolve().parent.parent

TEMPLATES = {
    ("refund",): "please refund order {i} money back",
    ("card",): "my card {i} was lost block it",
    ("refund", "complaint"): "refund order {i} now, awful slow service",
    ("complaint",): "service {i} was rude and slow",
    (): "when do branches open on day {i}",
}


def write_tag_dataset(folder: Path, n_train=150, n_test=50) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, n, offset in (("train.csv", n_train, 0), ("test.csv", n_test, 10_000)):
        with open(folder / name, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", "labels"])
            for i in range(n):
                tags, template = list(TEMPLATES.items())[i % len(TEMPLATES)]
                writer.writerow([template.format(i=i + offset), "|".join(tags)])
    (folder / "labels.txt").write_text("refund\ncard\ncomplaint\n", encoding="utf-8")
    return folder


def test_simulated_taggers_miss_and_add_tags_at_their_rates():
    truth = np.zeros(20, dtype=np.int64)
    truth[:4] = 1
    tagger = SimulatedTagger(user=None, miss_rate=0.25, add_rate=0.5, n_labels=20, rng=np.random.default_rng(0))
    answers = [set(tagger.answer(truth)) for _ in range(4000)]
    missed = np.mean([len({0, 1, 2, 3} - a) for a in answers]) / 4
    added = np.mean([len(a - {0, 1, 2, 3}) for a in answers])
    assert abs(missed - 0.25) < 0.02 and abs(added - 0.5) < 0.05
    perfect = SimulatedTagger(user=None, miss_rate=0.0, add_rate=0.0, n_labels=20, rng=np.random.default_rng(1))
    assert perfect.answer(truth) == [0, 1, 2, 3]


def test_simulate_runs_multi_label_projects_and_compares_on_macro_f1(tmp_path):
    dataset = write_tag_dataset(tmp_path / "tickets")
    out = tmp_path / "curves.json"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "quorum.settings",
        "DEBUG": "1",
        "QUORUM_DATA_DIR": str(tmp_path / "data"),
        "LOG_LEVEL": "WARNING",
    }
    env.pop("DATABASE_URL", None)
    env.pop("CELERY_BROKER_URL", None)
    command = [
        sys.executable,
        "manage.py",
        "simulate",
        "--dataset",
        str(dataset),
        "--encoder",
        "hashing:32",
        "--annotators",
        "2",
        "--labels-per-item",
        "2",
        "--tag-miss-rate",
        "0.1",
        "--tag-add-rate",
        "0.1",
        "--batch",
        "10",
        "--budget",
        "40",
        "--seeds",
        "1",
        "--out",
        str(out),
    ]
    result = subprocess.run(
        [*command, "--strategy", "random,mmc"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(out.read_text())
    assert report["dataset"]["multi_label"] is True and report["metric"] == "macro_f1"
    for run in report["runs"]:
        assert run["points"], run
        for point in run["points"]:
            assert {"accuracy", "macro_f1", "micro_f1", "hamming_loss"} <= set(point)
            assert 0.0 <= point["macro_f1"] <= 1.0
    assert report["target"]["metric"] == "macro_f1"
    assert "test macro-F1, mean over seeds" in result.stdout
    assert "labels to reach random@" in result.stdout and "macro-F1" in result.stdout
    # a single-label-only strategy is refused for tag sets, naming the choices
    refused = subprocess.run(
        [*command, "--strategy", "bald"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert refused.returncode != 0 and "not offered for multi_label" in refused.stderr

"""Labelled datasets for the simulator and benchmarks: single-label classes and multi-label tag sets."""

import numpy as np
import pytest

from acquisition.datasets import DatasetError, load_dataset


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_a_labels_column_reads_as_tag_sets_in_the_order_of_labels_txt(tmp_path):
    write(tmp_path / "train.csv", 'text,labels\n"refund, now",refund|complaint\nhours?,\nlost card,card\n')
    write(tmp_path / "test.csv", "text,labels\nmoney back,refund\n")
    write(tmp_path / "labels.txt", "refund\ncard\ncomplaint\n")
    data = load_dataset(tmp_path)
    assert data.multi_label and data.categories == ["refund", "card", "complaint"]
    assert data.train.labels.tolist() == [[1, 0, 1], [0, 0, 0], [0, 1, 0]]  # an empty cell is the empty set
    assert data.test.labels.tolist() == [[1, 0, 0]]
    assert data.train.texts[0] == "refund, now"


def test_tag_sets_without_a_names_file_are_sorted_and_unknown_names_are_refused(tmp_path):
    write(tmp_path / "train.csv", "text,labels\na,b|a\nb,c\n")
    write(tmp_path / "test.csv", "text,labels\nc,a\n")
    data = load_dataset(tmp_path)
    assert data.categories == ["a", "b", "c"]
    assert np.array_equal(data.train.labels, [[1, 1, 0], [0, 0, 1]])
    write(tmp_path / "labels.txt", "a\nb\n")
    with pytest.raises(DatasetError, match="not listed"):
        load_dataset(tmp_path)


def test_single_label_and_tag_set_splits_do_not_mix(tmp_path):
    write(tmp_path / "train.csv", "text,labels\na,x|y\n")
    write(tmp_path / "test.csv", "text,label\nb,x\n")
    with pytest.raises(DatasetError, match="both"):
        load_dataset(tmp_path)


def test_single_label_datasets_are_unchanged(tmp_path):
    write(tmp_path / "train.csv", "text,label\na,x\nb,y\n")
    write(tmp_path / "test.csv", "text,label\nc,y\n")
    data = load_dataset(tmp_path)
    assert not data.multi_label and data.train.labels.tolist() == [0, 1]

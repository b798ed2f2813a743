"""Aggregate crowd answers from a CSV into one label per item: ``item,label,confidence``."""

from __future__ import annotations

import csv

import numpy as np
from django.core.management.base import BaseCommand, CommandError

from annotation.aggregation_io import AnswersError, read_answers_csv, read_truth_csv
from annotation.dawid_skene import DawidSkene, HierarchicalDawidSkene, MajorityVote

#: hds: hierarchical (empirical-Bayes) Dawid-Skene, the loop's aggregator; ds: classic Dawid-Skene EM
#: (free confusion matrices); mv: majority vote.
METHODS = {"hds": HierarchicalDawidSkene, "ds": DawidSkene, "mv": MajorityVote}


class Command(BaseCommand):
    help = (
        "Aggregate crowd answers (one CSV row per item, annotator and label) into one label per item with "
        "hierarchical Dawid-Skene (hds, default: confusion matrices shrunk to the pool and to one-coin by "
        "empirical Bayes, calibrated posteriors), classic Dawid-Skene EM (ds) or majority vote (mv). Writes "
        "item,label,confidence where confidence is the posterior probability of the chosen label. Columns are "
        "found by header name, or by 0-based position given as digits. Ids and labels are kept as strings."
    )

    def add_arguments(self, parser):
        parser.add_argument("answers", help="CSV of answers with a header row")
        parser.add_argument("--method", choices=sorted(METHODS), default="hds", help="aggregator (default: hds)")
        parser.add_argument("--item-col", default="question", help="item column (default: question)")
        parser.add_argument("--worker-col", default="worker", help="annotator column (default: worker)")
        parser.add_argument("--label-col", default="answer", help="label column (default: answer)")
        parser.add_argument("--output", "-o", default="-", help="output CSV path, or - for stdout (default: -)")
        parser.add_argument("--max-iter", type=int, default=100, help="hds and ds: maximum EM iterations")
        parser.add_argument(
            "--truth",
            help="optional CSV of gold labels (item, label: its first two columns); prints accuracy on it to stderr",
        )

    def handle(self, *args, answers, method, item_col, worker_col, label_col, output, max_iter, truth, **options):
        try:
            encoded, skipped = read_answers_csv(answers, item_col=item_col, worker_col=worker_col, label_col=label_col)
            gold = read_truth_csv(truth) if truth else None
        except AnswersError as error:
            raise CommandError(str(error)) from error
        if max_iter < 0:
            raise CommandError("--max-iter must be non-negative")

        model = MajorityVote() if method == "mv" else METHODS[method](max_iter=max_iter)
        model.fit(encoded.items, encoded.workers, encoded.labels, **encoded.counts)
        chosen, confidence = model.predict(), model.confidence()

        rows = zip(encoded.item_names, encoded.label_names[chosen], confidence, strict=True)
        if output == "-":
            self._write(self.stdout, rows)
        else:
            try:
                with open(output, "w", newline="", encoding="utf-8") as handle:
                    self._write(handle, rows)
            except OSError as error:
                raise CommandError(f"cannot write {output}: {error.strerror}") from error

        summary = (
            f"{method}: {len(encoded)} answers, {encoded.counts['n_items']} items, "
            f"{encoded.counts['n_workers']} annotators, {encoded.counts['n_classes']} labels"
        )
        if method != "mv":
            summary += f"; {model.n_iter_} EM iterations" + ("" if model.converged_ else " (max-iter reached)")
        if method == "hds":
            summary += f"; temperature {model.temperature_:.3f}"
        if skipped:
            summary += f"; skipped {skipped} rows with an empty item, annotator or label"
        self._note(summary)
        if gold is not None:
            self._note(self._accuracy(encoded, chosen, gold))

    def _note(self, text: str) -> None:
        """A progress line on stderr (plain, not styled as an error)."""
        self.stderr.write(text, style_func=lambda message: message)

    @staticmethod
    def _write(stream, rows):
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(["item", "label", "confidence"])
        writer.writerows((item, label, f"{conf:.6f}") for item, label, conf in rows)

    @staticmethod
    def _accuracy(encoded, chosen, gold: dict[str, str]) -> str:
        predicted = dict(zip(encoded.item_names.tolist(), encoded.label_names[chosen].tolist(), strict=True))
        scored = [predicted[item] == label for item, label in gold.items() if item in predicted]
        if not scored:
            return "accuracy on gold: no gold item among the answers"
        return f"accuracy on gold: {np.mean(scored):.4f} ({len(scored)} items)"

r"""Label aggregation: hierarchical Dawid-Skene (the default), classic Dawid-Skene EM, majority vote.

Pure NumPy + ``scipy.sparse`` (no Django). Input is long format, as annotations leave the
database: three integer arrays ``items``, ``workers``, ``labels`` of equal length (see
:mod:`annotation.agreement`). Unlike the agreement measures, aggregation counts every annotation as
given: an annotator who answered an item twice contributes two answers (as crowd-kit does).

The model (Dawid & Skene, "Maximum Likelihood Estimation of Observer Error-Rates Using the EM
Algorithm", Applied Statistics 28(1), 1979): item i has a latent true class :math:`z_i` with prior
:math:`\theta_j = P(z_i = j)`; annotator r, shown an item of class j, answers k with probability
:math:`\pi_r^{jk}` (row j of r's confusion matrix sums to 1). Answers are independent given
:math:`z_i`. With :math:`n_{irk}` the number of times r answered k on item i:

E-step (log space, normalised with log-sum-exp):

.. math::
    \log T_{ij} = \log\theta_j + \sum_{r,k} n_{irk}\log\pi_r^{jk} - \log\sum_{j'}(\cdot)

M-step (MAP with Dirichlet pseudo-counts, see ``smoothing`` and ``shrinkage``):

.. math::
    \pi_r^{jk} \propto \sum_i T_{ij}\, n_{irk} + \alpha + s\,\bar\pi^{jk},\qquad
    \theta_j \propto \sum_i T_{ij} + \alpha_\theta

where :math:`\bar\pi` is the pooled confusion matrix of all annotators together; the E-step then
uses :math:`(1-\varepsilon)\pi_r + \varepsilon/C` (``answer_noise``). Both steps are a
sparse-matrix product with the (items x (annotator, answer)) count matrix :math:`n`, so one EM
iteration costs O(annotations x classes) with no Python loop over annotations.

:class:`MajorityVote` has the same API (posteriors = vote shares) and is Dawid-Skene's starting
point. Both are scikit-learn estimators (``sklearn.base.BaseEstimator``: ``get_params`` /
``set_params`` / ``clone``) with crowd-kit's fit signature ``fit(items, workers, labels, ...)``; after
a fit ``classes_ = np.arange(n_classes_)`` names the posterior columns. With ``smoothing=0,
answer_noise=0, prior_smoothing=0`` :class:`DawidSkene` computes what crowd-kit's ``DawidSkene``
computes, to 1e-13 for the same number of iterations.

An aggregator that adapts its complexity: :class:`HierarchicalDawidSkene`
--------------------------------------------------------------------------

Why. Real projects have many classes (20-200), two or three annotators and a few hundred answers
each. A free C x C confusion matrix per annotator (5,929 numbers at 77 classes) cannot be
estimated from that: classic EM over-fits it and then trusts its own fit (estimated accuracies of
0.44-0.51 for annotators at 0.88-0.96, unanimous items overridden). The remedy in the literature is
to put priors on the confusion matrices and share them between annotators: Raykar et al.
("Learning from crowds", JMLR 11, 2010) give Dawid-Skene Beta/Dirichlet priors; Kim & Ghahramani
("Bayesian classifier combination", AISTATS 2012, IBCC) fit them by variational Bayes; Passonneau &
Carpenter ("The benefits of a model of annotation", TACL 2, 2014) and Paun et al. ("Comparing
Bayesian models of annotation", TACL 6, 2018) compare pooled, unpooled and partially pooled
(hierarchical) Dawid-Skene and find partial pooling the most robust, especially with few answers
per annotator; crowd-kit's ``OneCoinDawidSkene`` is the fully constrained end (one accuracy per
annotator, errors spread evenly), which wins on some public sets and loses on others.

What. Each confusion row is an accuracy and an error distribution over the other classes,
:math:`\pi_r^{jj} = a_{rj}`, :math:`\pi_r^{jk} = (1-a_{rj})\,e_r^{jk}`, and each piece is shrunk
towards a simpler model, rung by rung:

- one-coin: the pool accuracy :math:`\bar a`; each annotator's skill :math:`a_r` and each class's
  difficulty :math:`\bar a_j` are Beta-shrunk towards it (strengths :math:`\kappa_w, \kappa_c`);
- class-conditional: :math:`a_{rj} \sim \mathrm{Beta}(\kappa_{rc} m_{rj}, \kappa_{rc}(1-m_{rj}))` with
  :math:`\operatorname{logit} m_{rj} = \operatorname{logit} a_r + \operatorname{logit}\bar a_j -
  \operatorname{logit}\bar a` (skill plus difficulty);
- full confusion: :math:`e_r^{j\cdot} \sim \mathrm{Dir}(\beta_r \bar e^{j\cdot})`, the pool's error
  pattern, itself :math:`\sim \mathrm{Dir}(\beta_0 u)` around errors spread evenly (``u``).

How much each rung is believed is not a constant: every strength is chosen from the data by
empirical Bayes (type-II maximum likelihood), maximising the beta-binomial / Dirichlet-multinomial
marginal likelihood of the expected counts of the current E-step over a log grid (4 points a
decade, 0.1 to 10x the largest row), keeping the largest strength within 0.5 nat of the best (the
one-standard-error rule, Hastie et al., ESL 2nd ed. section 7.10: the simplest model the data do
not reject). With a handful of answers per row the evidence is flat and the rows stay at the rung
above (one-coin at 77 classes and 2 labels per item); with thousands the strengths fall and each
annotator gets their own confusion matrix (``tests/test_hierarchical_ds.py`` recovers a biased
annotator's confusion). The class-conditional rung has one strength per annotator, not one for
all: a constant spammer (always "0": perfect on class 0, useless on the others) is plainly
class-dependent, and a shared strength would free every annotator's per-class accuracies because
of them, over-fitting the weak ones; per annotator, the evidence frees only the rows that need it.
The class priors are shrunk the same way, towards uniform, with a Dirichlet strength chosen by
the Dirichlet-multinomial evidence of the class counts (at least ``prior_smoothing`` per class):
150 items over 77 classes say little about which class is commoner, and a noisy prior would
otherwise decide every tie. The strengths are chosen at the first M-step, at iterations 2, 8 and 32
and when the likelihood settles; between those, EM runs with them fixed. Each choice climbs the
grid from the previous choice's evidence maximum to this evidence's maximum and walks right to the
one-SE point, every annotator's row at once for the per-annotator strengths (the evidence is
unimodal in log s in practice; the full-grid choice is identical on the shared crowd sets, the
sweeps and the tests' random rows) -- three or four log-gamma sums instead of the whole grid.

Start. EM starts from a vote weighted by each annotator's one-coin skill estimated without any
model fit, from how often they agree with each other (:func:`agreement_skills`: the chance-corrected
pairwise agreement matrix is rank one under the one-coin model). With two labels per item every
disagreement is a 1-1 tie, majority-vote posteriors split it evenly, and EM started there stays in
the fully pooled fixed point where all annotators look alike; the agreement matrix still says who
agrees with whom, and how often, so the start already trusts the better annotator.

E-step. The posterior of item i uses the variational weights :math:`\exp E[\log\pi]` (digamma
of the Beta / Dirichlet posterior parameters, as IBCC), which discount rows seen a few times;
class priors likewise (``prior_smoothing`` = a uniform Dirichlet). Gold labels clamp their items'
posteriors at every E-step, so they teach every level of the hierarchy. Deterministic (majority
vote start, no randomness); O(answers x classes) per iteration with two sparse products, as the
classic class.

Cost. A million answers' EM iteration is memory-bound, so the count matrix is built once, one
entry per answer in item order (:func:`_count_matrix`): the E-step multiplies it as CSR, the M-step
as its transpose read as CSC (walking the items in order and adding into the small (annotator,
answer) x class result, instead of gathering scattered items' posteriors). Inside EM the
posteriors are single precision (their rounding, 1e-7, is far below the sampling noise of anything
an M-step estimates) and the softmax works on (classes, items) rows without the max shift (the
log weights are negative; only items whose every class underflows are shifted); the evidence,
temperature and posteriors returned are double. The strength searches cost the same whatever the
number of answers (annotators x classes x classes log-gamma terms), which is what makes the model
choice on a subset (below) cheap but not free.

Calibration. Correlated answers (hard items that fool everyone alike) make any conditional-
independence model over-confident. After convergence the item log-posteriors are divided by a
temperature (temperature scaling, Guo et al., "On Calibration of Modern Neural Networks", ICML
2017; it never changes a label): :math:`\tau` maximises the held-out likelihood of the gold labels
of at least ``MIN_CALIBRATION_GOLD`` gold items (each predicted from its answers with the clamp
lifted) or, without them, of every answer on an item with two or more answers predicted from that
item's other answers (``max_calibration_answers`` of them, evenly spread). Answers only measure how
well the model predicts answers: on the crowd sets they leave the expected calibration error
against gold at 0.02-0.24, while the loop's gold and review decisions bring it to 0.02-0.13
(``bench/aggregation.py``, table 2), which is why gold wins when there is enough of it.

Which model, in the end. Evidence for a rung is not evidence that it helps to decide labels:
where annotators' errors depend on the item more than on the class (ZenCrowd: hard entities fool
most workers, and they are mostly of one class), per-class accuracies are strongly supported by the
answers yet turn 3-2 majorities over, and one-coin is right. So after EM the fit is checked on held-
out answers: every answer on an item with two or more is predicted from the item's other answers
(its label is the arg-max of the item's evidence without it), by the fitted model and by the one-
coin model (the class rungs pinned to complete pooling, refitted from the same posteriors); the
class-conditional model is kept only if its share of right predictions is higher by more than one
standard error of the paired difference (the one-SE rule once more: cross-validated model choice,
Hastie et al., ESL section 7.10; the held-out answer's own weight is in the fit, a leak that favours
the richer model, so the rule leans the safe way). With two labels per item both models predict the
other answer alike and one-coin stays. On more than ``max_selection_answers`` answers the choice is
made on every k-th item, and the chosen model alone is fitted on all of them, its searches starting
from the subset's strengths. That subset's EM stops at ten times ``tol``: it only has to rank two
models, and its last iterations move the held-out comparison by far less than its standard error;
when the comparison lands within two standard errors of the one-SE line the subset is refitted at
``tol`` and the choice made again.

Measured (``bench/aggregation.py``, tables 1 and 3): on the five real sets the choice keeps one-coin
on MS, ZenCrowd and Dog and the class-conditional model on sentiment and Relevance; the mean accuracy
is above majority vote's and crowd-kit DS's, and no set or sweep configuration falls below majority
vote by more than twice the paired standard error. The model choice costs a second EM (on a subset
above ``max_selection_answers``), which is why the fit is slower than classic DS (table 6).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.optimize import minimize_scalar
from scipy.special import digamma, gammaln
from sklearn.base import BaseEstimator, clone
from sklearn.utils.validation import check_is_fitted

from annotation.agreement import as_annotations

__all__ = ["DawidSkene", "HierarchicalDawidSkene", "MajorityVote"]

_EPS = 1e-10  # floor of probabilities before a log, as crowd-kit


def _count_matrix(data, dtype=np.float64) -> sp.csr_matrix:
    """The (n_items, n_workers * n_classes) sparse matrix of answer counts n[i, r*C + k].

    One stored entry per answer (a repeated answer is two entries of 1, which every product sums),
    built directly in CSR order: no sorting of columns, no summing of duplicates. Its transpose
    ``matrix.T`` is the same arrays read as CSC, which is what the M-steps multiply with: a CSC
    product walks the items in order and adds into the small (W*C, C) result, where the CSR
    transpose would gather the posteriors of scattered items (several times slower at a million
    answers). ``dtype``: of the stored ones (float32 halves what the products read; a float32
    matrix times float64 numbers is still computed, exactly, in float64).
    """
    n_items, C = data.n_items, data.n_classes
    shape = (n_items, data.n_workers * C)
    index = np.int32 if max(data.items.size, shape[1], n_items) < 2**31 - 1 else np.int64
    columns = np.multiply(data.workers, C, out=np.empty(data.items.size, dtype=index), casting="unsafe")
    np.add(columns, data.labels, out=columns, casting="unsafe")
    if data.items.size > 1 and (data.items[1:] < data.items[:-1]).any():
        columns = columns[np.argsort(data.items, kind="stable")]
    indptr = np.zeros(n_items + 1, dtype=index)
    np.cumsum(np.bincount(data.items, minlength=n_items), out=indptr[1:])
    return sp.csr_matrix((np.ones(columns.size, dtype=dtype), columns, indptr), shape=shape, copy=False)


def _vote_shares(data) -> np.ndarray:
    """(n_items, C) vote shares; uniform for an item nobody labelled."""
    votes = np.bincount(data.items * data.n_classes + data.labels, minlength=data.n_items * data.n_classes)
    votes = votes.reshape(data.n_items, data.n_classes).astype(np.float64)
    totals = votes.sum(axis=1, keepdims=True)
    return np.divide(votes, totals, out=np.full_like(votes, 1.0 / data.n_classes), where=totals > 0)


def _true_label_array(true_labels, n_items: int, n_classes: int) -> np.ndarray | None:
    if true_labels is None:
        return None
    gold = np.asarray(true_labels)
    if gold.shape != (n_items,) or not np.issubdtype(gold.dtype, np.integer):
        raise ValueError(f"true_labels must be an integer array of shape ({n_items},), -1 where unknown")
    if gold.max(initial=-1) >= n_classes or gold.min(initial=0) < -1:
        raise ValueError("true_labels must be class indices or -1")
    return gold


def _clamp(posteriors: np.ndarray, gold: np.ndarray | None) -> np.ndarray:
    """Replace the posteriors of gold items by the one-hot gold label."""
    if gold is not None:
        known = np.flatnonzero(gold >= 0)
        posteriors[known] = 0.0
        posteriors[known, gold[known]] = 1.0
    return posteriors


class _Aggregator(BaseEstimator):
    """Shared prediction API over the learned ``posteriors_`` and ``labels_``."""

    posteriors_: np.ndarray
    labels_: np.ndarray

    def predict_proba(self) -> np.ndarray:
        """The (n_items, n_classes) posterior probabilities of the fitted data."""
        self._check_fitted()
        return self.posteriors_

    def predict(self) -> np.ndarray:
        """The chosen class of every item (see the class's tie rule)."""
        self._check_fitted()
        return self.labels_

    def confidence(self) -> np.ndarray:
        """Posterior probability of the chosen class of every item."""
        self._check_fitted()
        return self.posteriors_[np.arange(self.labels_.size), self.labels_]

    def fit_predict(self, items, workers, labels, **kwargs) -> np.ndarray:
        return self.fit(items, workers, labels, **kwargs).predict()

    def fit_predict_proba(self, items, workers, labels, **kwargs) -> np.ndarray:
        return self.fit(items, workers, labels, **kwargs).predict_proba()

    def _check_fitted(self):
        check_is_fitted(self, "posteriors_")  # NotFittedError, an AttributeError

    def _skills_against(self, data, reference: np.ndarray) -> np.ndarray:
        """Share of each annotator's answers equal to ``reference[item]`` (nan without answers)."""
        hits = np.bincount(data.workers, weights=(data.labels == reference[data.items]), minlength=data.n_workers)
        answers = np.bincount(data.workers, minlength=data.n_workers)
        with np.errstate(invalid="ignore", divide="ignore"):
            return hits / answers


class MajorityVote(_Aggregator):
    r"""Majority vote with vote-share posteriors: :math:`T_{ij} = n_{ij} / \sum_{j'} n_{ij'}`.

    Every answer counts once (duplicates included); an item nobody labelled gets the uniform
    distribution.

    Tie rule (``tie_break``):

    ``"skill"`` (default)
        Among the tied classes, the one whose voters have the better track record wins: each
        annotator's skill is :math:`s_r = (a_r + 1) / (m_r + 2)`, with :math:`m_r` the annotator's
        answers on items *without* a tie and :math:`a_r` how many of them equal the majority label;
        a tied class scores the sum of its voters' skills. Votes still decide everything else, and
        a remaining tie goes to the lowest class index. On the shared crowd sets this lifts
        majority-vote accuracy by 0.2 to 8 points over an arbitrary rule (ties are frequent with
        2 to 5 answers per item).
    ``"lowest"``
        The lowest class index among the tied (a fixed, data-blind rule).

    Learned attributes: ``posteriors_`` (n_items, C); ``labels_`` (n_items,) chosen classes;
    ``priors_`` (C,) mean vote share over the labelled items; ``skills_`` (n_workers,) share of
    each annotator's answers equal to the chosen label (nan for an annotator without answers);
    ``n_iter_ = 0``; ``classes_ = np.arange(n_classes_)``.
    """

    def __init__(self, *, tie_break: str = "skill"):
        self.tie_break = tie_break

    def fit(self, items, workers, labels, *, n_items=None, n_workers=None, n_classes=None, true_labels=None):
        """Count votes. ``true_labels`` (n_items,), -1 where unknown, fixes the gold items' labels."""
        if self.tie_break not in ("skill", "lowest"):
            raise ValueError(f"tie_break must be 'skill' or 'lowest', not {self.tie_break!r}")
        data = as_annotations(items, workers, labels, n_items=n_items, n_workers=n_workers, n_classes=n_classes)
        if data.n_classes == 0:
            raise ValueError("no classes: pass n_classes when there are no annotations")
        gold = _true_label_array(true_labels, data.n_items, data.n_classes)
        self.n_items_, self.n_workers_, self.n_classes_ = data.n_items, data.n_workers, data.n_classes
        self.posteriors_ = _clamp(_vote_shares(data), gold)
        self.labels_ = self._choose(data, self.posteriors_)
        labelled = np.bincount(data.items, minlength=data.n_items) > 0
        if gold is not None:
            labelled |= gold >= 0
        self.priors_ = (
            self.posteriors_[labelled].mean(axis=0) if labelled.any() else np.full(data.n_classes, 1.0 / data.n_classes)
        )
        self.skills_ = self._skills_against(data, self.labels_)
        self.n_iter_ = 0
        self.classes_ = np.arange(data.n_classes)
        return self

    def _choose(self, data, shares: np.ndarray) -> np.ndarray:
        first = np.argmax(shares, axis=1)
        if self.tie_break == "lowest":
            return first
        tied = np.isclose(shares, shares.max(axis=1, keepdims=True), rtol=0, atol=1e-12)
        clear = tied.sum(axis=1) == 1
        if clear.all():
            return first
        on_clear = clear[data.items]
        agree = on_clear & (data.labels == first[data.items])
        hits = np.bincount(data.workers, weights=agree, minlength=data.n_workers)
        answers = np.bincount(data.workers, weights=on_clear, minlength=data.n_workers)
        skill = (hits + 1.0) / (answers + 2.0)
        score = np.bincount(
            data.items * data.n_classes + data.labels,
            weights=skill[data.workers],
            minlength=data.n_items * data.n_classes,
        ).reshape(data.n_items, data.n_classes)
        return np.argmax(np.where(tied, score, -1.0), axis=1)


class DawidSkene(_Aggregator):
    r"""Dawid-Skene EM over per-annotator confusion matrices (formulas in the module docstring).

    Parameters
    ----------
    max_iter : int, default 100
        Maximum number of EM iterations (E-step + M-step).
    tol : float, default 1e-5
        Stop when the log-likelihood per annotation changes by less than ``tol`` between two
        iterations.
    smoothing : float, default 0.01
        Additive pseudo-count :math:`\alpha` on every cell of every confusion matrix. Keeps the
        logs finite when a cell has no mass (an annotator who never gave label k); small values
        leave the maximum-likelihood estimate nearly unchanged. ``smoothing=0, answer_noise=0,
        prior_smoothing=0`` is crowd-kit's ``DawidSkene`` (which floors cells at 1e-10): the same
        number of iterations gives the same posteriors (``tests/test_dawid_skene.py`` and the
        benchmark check it).
    answer_noise : float, default 0.05
        Share :math:`\varepsilon` of answers treated as random guesses, whoever gave them: the
        E-step uses :math:`(1-\varepsilon)\,\pi_r + \varepsilon / C`. This bounds the weight of
        any single answer (at most :math:`\log\frac{1-\varepsilon+\varepsilon/C}{\varepsilon/C}`
        nats, 3.7 for two classes) so that a group of prolific annotators who err together cannot
        be trusted without limit; it is what keeps Dawid-Skene closer to majority vote on data
        whose errors are correlated (see ``bench/aggregation.py``). 0 disables it.
    shrinkage : float, default 0.0
        Strength s of a Dirichlet prior centred on the pooled confusion matrix :math:`\bar\pi`
        (all annotators' soft counts together, re-estimated at every M-step): an annotator with
        few answers gets roughly the crowd's confusion matrix, one with many answers their own.
        This is the remedy for annotators who label only a handful of items, whose free
        confusion matrices otherwise over-fit. 0 disables it.
    prior_smoothing : float, default 1.0
        Pseudo-count :math:`\alpha_\theta` added to every class when estimating the priors
        (0: crowd-kit's mean posterior). A class nobody used keeps a small prior.

    Learned attributes
    ------------------
    posteriors_ : (n_items, C) posterior :math:`T_{ij}` of the last E-step. An item nobody
        labelled gets the priors.
    labels_ : (n_items,) arg-max of ``posteriors_``.
    confusion_ : (n_workers, C, C) with ``confusion_[r, j, k]`` = :math:`\pi_r^{jk}` (after the
        ``answer_noise`` mix, i.e. the matrices the posteriors use); rows sum to 1. An annotator
        without answers has uniform rows.
    priors_ : (C,) class priors :math:`\theta_j`.
    skills_ : (n_workers,) probability that annotator r answers an item correctly,
        :math:`\sum_j \theta_j \pi_r^{jj}` (the prior-weighted diagonal of the confusion matrix).
    n_iter_ : number of EM iterations run.
    log_likelihood_ : marginal log-likelihood :math:`\sum_i \log\sum_j \theta_j \prod \pi` of the
        answers at the final parameters' E-step.
    converged_ : whether ``tol`` was reached before ``max_iter``.
    classes_ : ``np.arange(C)``, the classes of the posterior columns.

    Deterministic: majority-vote initialisation (vote shares as the first posteriors, then an
    M-step), no randomness, so there is no ``random_state``. Ties in :meth:`predict` go to the
    lowest class index (``np.argmax``; crowd-kit's ``idxmax`` over sorted labels does the same).
    Exact posterior ties are rare once EM has run: equal vote shares are told apart by the
    annotators' confusion matrices.

    Edge cases: an item with one answer gets the posterior of that answer under the annotator's
    confusion matrix and the priors. An annotator with a single answer (or one label used
    throughout) is estimated, as in the original model and crowd-kit, to give that label whatever
    the truth: their answers carry no information, and an item only they labelled gets the
    priors; ``shrinkage > 0`` pulls such annotators towards the crowd, so that their answer counts
    like an average annotator's. A class nobody used (no answer, no gold label) gets prior and
    posteriors 0 and is never predicted. Gold labels (``true_labels``) clamp those items'
    posteriors to one-hot at every E-step, which calibrates the confusion matrices.
    """

    def __init__(
        self,
        *,
        max_iter: int = 100,
        tol: float = 1e-5,
        smoothing: float = 0.01,
        answer_noise: float = 0.05,
        shrinkage: float = 0.0,
        prior_smoothing: float = 1.0,
    ):
        self.max_iter = max_iter
        self.tol = tol
        self.smoothing = smoothing
        self.answer_noise = answer_noise
        self.shrinkage = shrinkage
        self.prior_smoothing = prior_smoothing

    # -- EM steps -------------------------------------------------------------------------------

    def _m_step(self, counts_t: sp.csc_matrix, posteriors: np.ndarray, labelled, used: np.ndarray, active: np.ndarray):
        """Priors and confusion matrices from the posteriors. Returns (log θ, log π as (W*C, C)).

        ``labelled``: the items that count for the priors (a mask, or ``slice(None)`` for all).
        ``active``: the classes some answer or gold label uses; the others get prior 0, since the
        answers say nothing about them and an empty class would otherwise soak up uncertain items.

        ``used[r, k]``: annotator r gave answer k at least once. A cell of a used answer is floored
        at 1e-10 (as crowd-kit), so a true class on which r has no mass yet spreads over r's own
        answers; cells of answers r never gave get only the pseudo-counts.
        """
        n_workers, n_classes = used.shape
        soft = np.asarray(counts_t @ posteriors)  # [(r, k), j] = sum_i n_irk T_ij
        soft = soft.reshape(n_workers, n_classes, n_classes).transpose(0, 2, 1)  # [r, j, k]
        pseudo = np.full((1, n_classes, n_classes), float(self.smoothing))
        if self.shrinkage > 0:
            pooled = soft.sum(axis=0)
            pooled_rows = pooled.sum(axis=1, keepdims=True)
            pooled = np.divide(pooled, pooled_rows, out=np.full_like(pooled, 1.0 / n_classes), where=pooled_rows > 0)
            pseudo = pseudo + self.shrinkage * pooled[None]
        cells = soft + pseudo
        cells = np.where(used[:, None, :], np.maximum(cells, _EPS), cells)
        rows = cells.sum(axis=2, keepdims=True)
        confusion = np.divide(cells, rows, out=np.full_like(cells, 1.0 / n_classes), where=rows > 0)
        if self.answer_noise > 0:
            confusion = (1.0 - self.answer_noise) * confusion + self.answer_noise / n_classes

        class_mass = np.where(active, posteriors[labelled].sum(axis=0) + self.prior_smoothing, 0.0)
        priors = np.where(active, np.maximum(class_mass / max(class_mass.sum(), _EPS), _EPS), 0.0)
        if priors.sum() == 0:
            priors = active / active.sum()
        self.confusion_, self.priors_ = confusion, priors / priors.sum()
        # log π laid out as [(r, k), j] so that the E-step is one sparse product; cells of answers
        # never given are never read (the count matrix has no entry there), so their floor is moot.
        log_confusion = np.log(np.maximum(confusion, 1e-300)).transpose(0, 2, 1)
        with np.errstate(divide="ignore"):
            log_priors = np.log(self.priors_)  # -inf for a class nobody used: posterior exactly 0
        return log_priors, log_confusion.reshape(n_workers * n_classes, n_classes)

    @staticmethod
    def _e_step(counts: sp.csr_matrix, log_priors: np.ndarray, log_confusion: np.ndarray):
        """Posteriors and the marginal log-likelihood."""
        joint = np.asarray(counts @ log_confusion)
        joint += log_priors
        posteriors, norms = _softmax_rows(joint, inplace=True)
        return posteriors, float(norms.sum())

    # -- public API -----------------------------------------------------------------------------

    def fit(self, items, workers, labels, *, n_items=None, n_workers=None, n_classes=None, true_labels=None):
        """Run EM on long-format answers.

        ``n_items`` / ``n_workers`` / ``n_classes`` default to ``max index + 1``; pass them to
        keep rows for unlabelled items, idle annotators or classes nobody used. ``true_labels``:
        optional (n_items,) integer array of gold classes, -1 where unknown.
        """
        numbers = (self.max_iter, self.tol, self.smoothing, self.answer_noise, self.shrinkage, self.prior_smoothing)
        if min(numbers) < 0 or self.answer_noise >= 1:
            raise ValueError(f"{self!r}: parameters must be non-negative and answer_noise below 1")
        data = as_annotations(items, workers, labels, n_items=n_items, n_workers=n_workers, n_classes=n_classes)
        if data.n_classes == 0:
            raise ValueError("no classes: pass n_classes when there are no annotations")
        gold = _true_label_array(true_labels, data.n_items, data.n_classes)
        self.n_items_, self.n_workers_, self.n_classes_ = data.n_items, data.n_workers, data.n_classes
        counts = _count_matrix(data)
        counts_t = counts.T  # CSC: see _count_matrix
        labelled = np.diff(counts.indptr) > 0
        given = np.bincount(data.workers * data.n_classes + data.labels, minlength=data.n_workers * data.n_classes)
        used = (given > 0).reshape(data.n_workers, data.n_classes)
        active = used.any(axis=0)
        if gold is not None:
            labelled |= gold >= 0
            active[gold[gold >= 0]] = True
        if not active.any():
            active[:] = True
        if labelled.all():
            labelled = slice(None)  # no copy of the posteriors at every M-step
        n_answers = max(data.items.size, 1)

        posteriors = _clamp(_vote_shares(data), gold)
        log_priors, log_confusion = self._m_step(counts_t, posteriors, labelled, used, active)
        previous = -np.inf
        self.converged_ = False
        self.n_iter_ = 0
        self.log_likelihood_ = float("nan")
        for _ in range(self.max_iter):
            posteriors, log_likelihood = self._e_step(counts, log_priors, log_confusion)
            posteriors = _clamp(posteriors, gold)
            log_priors, log_confusion = self._m_step(counts_t, posteriors, labelled, used, active)
            self.n_iter_ += 1
            self.log_likelihood_ = log_likelihood
            if abs(log_likelihood - previous) / n_answers < self.tol:
                self.converged_ = True
                break
            previous = log_likelihood
        self.posteriors_ = posteriors
        self.labels_ = np.argmax(posteriors, axis=1)
        diagonal = np.diagonal(self.confusion_, axis1=1, axis2=2)  # (W, C): π_r^{jj}
        self.skills_ = diagonal @ self.priors_
        self.classes_ = np.arange(data.n_classes)
        return self


# -- hierarchical (empirical-Bayes) Dawid-Skene ---------------------------------------------------

_STRENGTH_STEP = 0.25  # grid of prior strengths: four per decade (a factor 1.78 between neighbours)
_ONE_SE = 0.5  # nats: a one-parameter log-likelihood's one-standard-error support interval
_TEMPERATURE_BOUNDS = (0.05, 3.0)
#: Strength that pins a rung to the one above it (complete pooling) in the one-coin fit.
_PINNED = 1e12
#: Largest |class accuracy - annotator accuracy| under which the class rungs count as pooled.
_SPREAD_TOLERANCE = 1e-3
#: What a fit leaves behind that the model choice keeps or restores.
_FIT_STATE = ("confusion_", "_log_weights", "priors_", "n_iter_", "converged_", "log_likelihood_")
#: The model choice on a subset runs EM to this many times ``tol`` (see _choose_on_subset).
_PROBE_LOOSENING = 10.0
#: Gold items with answers from which the temperature is fitted on them alone (as routing.MIN_OVERLAP_ITEMS).
MIN_CALIBRATION_GOLD = 20


def _strength_grid(largest_row: float) -> np.ndarray:
    """Candidate prior strengths, 0.1 up to ten times the largest row (complete pooling), 4 a decade."""
    top = np.log10(max(1e3, 10.0 * largest_row))
    return 10.0 ** np.arange(-1.0, top + 1e-9, _STRENGTH_STEP)


def _simplest_within_one_se(grid: np.ndarray, scores: np.ndarray) -> float:
    """The largest strength (the simplest model) whose evidence is within ``_ONE_SE`` of the best."""
    return float(grid[np.flatnonzero(scores >= scores.max() - _ONE_SE)[-1]])


def _choose_strength(score, grid: np.ndarray, start: float | None, peak: bool = False):
    r"""The one-standard-error choice over ``grid`` of the evidence ``score(s)``.

    ``start=None``: every grid point is scored (:func:`_simplest_within_one_se`). Otherwise (EM's
    searches, warm-started from the previous strength) the evidence, unimodal in
    :math:`\log s` for these conjugate models in practice, is climbed on the grid from the grid
    point nearest ``start`` to its maximum, then walked right while within ``_ONE_SE`` of it: the
    same choice from a handful of evaluations instead of the whole grid. ``peak``: return
    ``(choice, the grid point of the evidence's maximum)``, the best start of the next climb.
    """
    if start is None:
        scores = np.array([score(s) for s in grid])
        choice = _simplest_within_one_se(grid, scores)
        return (choice, float(grid[np.argmax(scores)])) if peak else choice
    cache: dict[int, float] = {}

    def at(g: int) -> float:
        if g not in cache:
            cache[g] = score(grid[g])
        return cache[g]

    g = int(np.clip(np.rint((np.log10(start) - np.log10(grid[0])) / _STRENGTH_STEP), 0, grid.size - 1))
    while True:
        if g + 1 < grid.size and at(g + 1) > at(g):
            g += 1
        elif g > 0 and at(g - 1) > at(g):
            g -= 1
        else:
            break
    best, top = at(g), g
    while g + 1 < grid.size and at(g + 1) >= best - _ONE_SE:
        g += 1
    return (float(grid[g]), float(grid[top])) if peak else float(grid[g])


def _beta_binomial_strength(
    hits: np.ndarray, misses: np.ndarray, mean: np.ndarray, start: float | None = None, *, peak: bool = False
):
    r"""Empirical-Bayes strength s of the Beta(s m_d, s(1-m_d)) priors of rows d (hits, misses).

    Maximises the beta-binomial evidence :math:`\sum_d \log B(h_d + s m_d, m_d' + s(1-m_d)) -
    \log B(s m_d, s(1-m_d))` over the grid, then takes the simplest model within one standard error
    (see :class:`HierarchicalDawidSkene`; ``start``, ``peak``: warm start, :func:`_choose_strength`).
    ``None`` when no row has data.
    """
    hits, misses = np.broadcast_arrays(np.asarray(hits, float), np.asarray(misses, float))
    mean = np.broadcast_to(np.clip(mean, 1e-6, 1 - 1e-6), hits.shape)
    total = hits + misses
    use = total > 1e-9
    if not use.any():
        return None
    h, f, n, m = hits[use], misses[use], total[use], mean[use]

    def score(s: float) -> float:
        a, b = s * m, s * (1.0 - m)
        return float((gammaln(h + a) - gammaln(a) + gammaln(f + b) - gammaln(b) - gammaln(n + s) + gammaln(s)).sum())

    return _choose_strength(score, _strength_grid(float(n.max())), start, peak)


def _dirichlet_multinomial_strength(
    counts: np.ndarray,
    mean: np.ndarray,
    start: float | None = None,
    *,
    group: np.ndarray | None = None,
    peak: bool = False,
):
    r"""Empirical-Bayes strength s of the Dirichlet(s m_d) priors of count rows d (cells where m = 0
    carry no count and are left out); same rule as :func:`_beta_binomial_strength`.

    ``group``: row d's mean is ``mean[group[d]]`` (a few shared means, as every annotator's error
    rows around the pool's pattern); the :math:`\log\Gamma(s m)` terms are then summed once per
    distinct mean, times the rows that share it.
    """
    total = counts.sum(axis=1)
    use = total > 1e-9
    if not use.any():
        return None
    counts, total = counts[use], total[use]
    if group is None:
        mean = mean[use]
        cells = mean > 0
        c, m = counts[cells], mean[cells]
        shared, rows_per_mean = m, 1.0
    else:
        group = group[use]
        cells = mean[group] > 0
        c, m = counts[cells], mean[group][cells]
        rows_per_mean = np.broadcast_to(np.bincount(group, minlength=mean.shape[0])[:, None], mean.shape)
        rows_per_mean = rows_per_mean[mean > 0]
        shared = mean[mean > 0]
    n_rows = float(total.size)

    def score(s: float) -> float:
        return float(
            gammaln(c + s * m).sum()
            - (rows_per_mean * gammaln(s * shared)).sum()
            + n_rows * gammaln(s)
            - gammaln(total + s).sum()
        )

    return _choose_strength(score, _strength_grid(float(total.max())), start, peak)


def _beta_binomial_strength_per_row(
    hits: np.ndarray,
    misses: np.ndarray,
    mean: np.ndarray,
    previous: np.ndarray,
    *,
    warm: bool = True,
    start: np.ndarray | None = None,
    peak: bool = False,
):
    r"""One empirical-Bayes strength per row (annotator) of the (rows, C) Beta priors: the evidence
    :math:`\sum_j \log B(h_{rj} + s m_{rj}, f_{rj} + s(1-m_{rj})) - \log B(s m_{rj}, s(1-m_{rj}))` of
    each row, then the one-SE rule per row. A row without data keeps ``previous``.

    ``warm`` (EM's searches): every row climbs the grid from the grid point nearest its ``start``
    (default ``previous``), all rows at once, as :func:`_choose_strength` does for one strength (a
    few evaluations per row instead of the whole grid; the same choice where the evidence is
    unimodal in :math:`\log s`). ``warm=False``: the whole grid for every row. ``peak``: return
    ``(choices, each row's evidence maximum)``, the best starts of the next climb.
    """
    mean = np.clip(mean, 1e-6, 1 - 1e-6)
    total = hits + misses
    grid = _strength_grid(float(total.max(initial=1.0)))
    keep = np.asarray(previous, dtype=np.float64).copy()
    tops = keep.copy() if start is None else np.asarray(start, dtype=np.float64).copy()
    rows = np.flatnonzero(total.sum(axis=1) > 1e-9)
    if rows.size == 0:
        return (keep, tops) if peak else keep
    h, f, n, m = hits[rows], misses[rows], total[rows], mean[rows]

    def score(sel: np.ndarray, g) -> np.ndarray:  # evidence of rows ``sel`` at grid points ``g``
        s = grid[g][..., None]
        ms = m[sel][..., None, :] if np.ndim(g) == 2 else m[sel]
        hs, fs, ns = (x[sel][..., None, :] if np.ndim(g) == 2 else x[sel] for x in (h, f, n))
        a, b = s * ms, s * (1.0 - ms)
        terms = gammaln(hs + a) - gammaln(a) + gammaln(fs + b) - gammaln(b) - gammaln(ns + s) + gammaln(s)
        return np.where(ns > 1e-9, terms, 0.0).sum(axis=-1)

    last = grid.size - 1
    if not warm:
        every_point = np.broadcast_to(np.arange(grid.size), (rows.size, grid.size))
        scores = score(np.arange(rows.size), every_point)  # (rows, grid)
        within = scores >= scores.max(axis=1, keepdims=True) - _ONE_SE
        keep[rows] = grid[last - np.argmax(within[:, ::-1], axis=1)]
        tops[rows] = grid[np.argmax(scores, axis=1)]
        return (keep, tops) if peak else keep
    begin = np.log10(np.maximum(tops[rows], 1e-300))
    g = np.clip(np.rint((begin - np.log10(grid[0])) / _STRENGTH_STEP), 0, last).astype(np.int64)
    every = np.arange(rows.size)
    here = score(every, g)
    right = np.full(rows.size, -np.inf)  # the evidence one grid point right of g, once known
    inside = g < last
    right[inside] = score(every[inside], g[inside] + 1)
    step = np.where(right > here, 1, 0)
    left = np.full(rows.size, -np.inf)
    inside = (step == 0) & (g > 0)
    left[inside] = score(every[inside], g[inside] - 1)
    step[inside & (left > here)] = -1
    # Climb: one step up where that is better, else one step down where that is better; then on
    # in the same direction while the evidence still rises.
    ahead = np.where(step > 0, right, left)  # the evidence one step on
    moving = np.flatnonzero(step)
    while moving.size:
        direction = step[moving]
        falling = moving[direction < 0]
        right[falling] = here[falling]
        g[moving] += direction
        here[moving] = ahead[moving]
        target = g[moving] + direction
        inside = (target >= 0) & (target <= last)
        right[moving[~inside & (direction > 0)]] = -np.inf  # at the top: nothing to the right
        moving, target, direction = moving[inside], target[inside], direction[inside]
        ahead[moving] = score(moving, target)
        rising = moving[direction > 0]
        right[rising] = ahead[rising]
        moving = moving[ahead[moving] > here[moving]]
    # Walk right (towards pooling) while within one standard error of the best; the first step's
    # evidence is already known.
    best = here
    tops[rows] = grid[g]
    walking = np.flatnonzero((g < last) & (right >= best - _ONE_SE))
    g[walking] += 1
    walking = walking[g[walking] < last]
    while walking.size:
        ahead = score(walking, g[walking] + 1)
        walking = walking[ahead >= best[walking] - _ONE_SE]
        g[walking] += 1
        walking = walking[g[walking] < last]
    keep[rows] = grid[g]
    return (keep, tops) if peak else keep


def _without_diagonal(matrix) -> sp.csr_matrix:
    """A square CSR matrix with its diagonal entries removed (one pass over the entries;
    ``setdiag(0)`` looks each one up)."""
    matrix = matrix.tocsr()
    rows = np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))
    matrix.data[matrix.indices == rows] = 0.0
    matrix.eliminate_zeros()
    return matrix


def _pair_counts(items, workers, labels, n_workers: int, n_classes: int):
    """For every ordered pair of different annotators (r, s): ``scale * shared + agreed`` as one
    (W, W) CSR matrix, and ``scale``, where ``shared`` counts pairs of their answers on the same
    item (B'B, B the items x annotators count matrix) and ``agreed`` those with the same label
    (A'A, A the (item, label) x annotators one), and ``scale`` a power of two above any
    ``agreed``: pairs that agreed share items, so the sum has overlap's pattern, and both counts
    come back from it exactly (integers below 2**53), aligned.
    """
    W, C = n_workers, n_classes
    n_items = int(items.max(initial=-1)) + 1
    ones = np.ones(items.size)
    answer_rows = items * C + labels
    by_worker = sp.csr_matrix((ones, (items, workers)), shape=(n_items, W))
    by_answer = sp.csr_matrix((ones, (answer_rows, workers)), shape=(n_items * C, W))
    # Both transposes built as CSR too: a CSR x CSR product needs no format conversion.
    overlap = _without_diagonal(sp.csr_matrix((ones, (workers, items)), shape=(W, n_items)) @ by_worker)
    agree = _without_diagonal(sp.csr_matrix((ones, (workers, answer_rows)), shape=(W, n_items * C)) @ by_answer)
    scale = 2.0 ** np.ceil(np.log2(agree.data.max(initial=0.0) + 1.0))
    return (overlap * scale + agree).tocsr(), scale


def agreement_skills(data, *, iterations: int = 50, max_items: int = 20_000) -> np.ndarray:
    r"""Each annotator's one-coin accuracy from how often they agree with the others, no model fit.

    Under the one-coin model, the chance-corrected agreement of annotators r and s on the items they
    share is a product, Cohen's :math:`\kappa_{rs} = (A_{rs} - p_e)/(1 - p_e) \approx x_r x_s` with
    :math:`x_r` r's skill above chance (:math:`p_e = \sum_k q_{rk} q_{sk}`, ``q_r`` r's label shares:
    two annotators who always give the same label have kappa 0, however often they agree),
    so the matrix of pairwise agreements is rank one (Ghosh, Kale & McAfee, "Who moderates the
    moderators?", EC 2011; Dalvi et al., "Aggregating crowdsourced binary ratings", WWW 2013). The
    skills are its overlap-weighted rank-one fit (alternating least squares on the pairs that share
    items, :math:`\kappa` clipped to [0.001, 1]), and the accuracy is :math:`x_r + (1 - x_r) \bar p`
    (:math:`\bar p = \sum_k q_k^2` over all answers).
    It is what tells annotators apart where EM cannot: with two labels per item every disagreement
    is a tie whose expected counts split evenly, yet who agrees with whom, how often, still ranks
    the annotators. nan for an annotator who shares no item with anyone. On more than
    ``max_items`` items, every k-th item (a fixed subset of that size) is used: a skill is one
    number per annotator, and the pairs of 20,000 items pin it down well (EM refines it).
    """
    C, W = data.n_classes, data.n_workers
    if data.items.size == 0 or W == 0:
        return np.full(W, np.nan)
    items, workers, labels = data.items, data.workers, data.labels
    if data.n_items > max_items:  # a fixed, evenly spread subset of the items: moments settle fast
        step = -(-data.n_items // max_items)
        kept = items % step == 0
        items, workers, labels = items[kept] // step, workers[kept], labels[kept]
    both, scale = _pair_counts(items, workers, labels, W, C)  # scale * shared items + agreements, per pair
    if both.nnz == 0:
        return np.full(W, np.nan)
    overlap = both.copy()
    overlap.data = np.floor(both.data / scale)
    agreed = both.data - overlap.data * scale
    # Cohen's chance agreement of each pair from the two annotators' own label shares: two
    # annotators who always give the same label agree always and by chance alone (kappa 0).
    given = np.bincount(workers * C + labels, minlength=W * C).reshape(W, C).astype(np.float64)
    given /= np.maximum(given.sum(axis=1, keepdims=True), 1.0)
    rows = np.repeat(np.arange(W), np.diff(overlap.indptr))
    columns = overlap.indices
    if C > 16 and W <= 2048:  # many classes: every pair's chance agreement at once, then the sharing pairs'
        pair_chance = (given @ given.T)[rows, columns]
    else:  # few classes: one class at a time over the sharing pairs
        pair_chance = np.zeros(rows.size)
        per_row, columns = np.diff(overlap.indptr), columns.astype(np.intp)
        for share_k in np.ascontiguousarray(given.T):
            pair_chance += np.repeat(share_k, per_row) * share_k[columns]
    room = 1.0 - pair_chance
    kappa = np.where(room > 1e-9, (agreed / overlap.data - pair_chance) / np.maximum(room, 1e-9), 0.0)
    weighted_kappa = overlap.copy()  # shared items x clipped chance-corrected agreement
    weighted_kappa.data = overlap.data * np.clip(kappa, 1e-3, 1.0)
    share = np.bincount(labels, minlength=C) / labels.size
    chance = min(float((share**2).sum()), 1.0 - 1e-6)
    x = np.full(W, 0.5)
    for _ in range(iterations):
        numerator, denominator = weighted_kappa @ x, overlap @ (x * x)
        updated = np.where(denominator > 0, np.clip(numerator / np.maximum(denominator, 1e-12), 1e-3, 1.0), x)
        updated = np.sqrt(updated * x)  # damped: the plain update swaps x and c / x for ever
        done = np.abs(updated - x).max() < 1e-4
        x = updated
        if done:
            break
    known = np.diff(overlap.indptr) > 0
    return np.where(known, x + (1.0 - x) * chance, np.nan)


def _weighted_vote(data, answers: _Answers, skills: np.ndarray) -> np.ndarray:
    """EM's start, as (n_items, C) float32 rows with gold clamped: a vote weighted by the one-coin
    log-odds of the agreement skills (vote shares when no annotator shares an item with another),
    computed as an E-step whose answer weights are those log-odds on the given label."""
    C = data.n_classes
    known = np.isfinite(skills)
    if not known.any():
        return answers.clamp(_vote_shares(data).astype(np.float32))
    accuracy = np.clip(np.where(known, skills, np.nanmean(skills)), 1.0 / C + 1e-3, 1.0 - 1e-3)
    weight = np.log(accuracy * (C - 1) / (1.0 - accuracy))
    # [(r, k), j]: minus the weight against every class but the answer (the same softmax as plus the
    # weight for it, and no score above 0 to overflow)
    layout = (weight[:, None, None] * (np.eye(C) - 1.0)).reshape(data.n_workers * C, C)
    return answers.e_step(np.zeros(C), layout)[0]


def _held_out_answers(data, cap: int, per_item: np.ndarray | None = None) -> np.ndarray:
    """Indices of the answers on items with two or more answers, at most ``cap``, evenly spread.
    ``per_item``: each item's number of answers, when already counted."""
    if per_item is None:
        per_item = np.bincount(data.items, minlength=data.n_items)
    if per_item.min(initial=2) >= 2:  # every answer qualifies: no pass over them
        size = data.items.size
        return np.linspace(0, size - 1, cap).astype(np.int64) if size > cap else np.arange(size)
    held = np.flatnonzero(per_item[data.items] >= 2)
    if held.size > cap:
        held = held[np.linspace(0, held.size - 1, cap).astype(np.int64)]
    return held


def _column_sums(rows: np.ndarray) -> np.ndarray:
    """Column sums of an (n, C) array accumulated in double: blocks of 64 rows summed as one wide
    row each (numpy adds whole rows quickly, short ones slowly), then folded."""
    n, C = rows.shape
    whole = n // 64 * 64
    wide = rows[:whole].reshape(-1, 64 * C).sum(axis=0, dtype=np.float64).reshape(64, C).sum(axis=0)
    return wide + rows[whole:].sum(axis=0, dtype=np.float64)


def _logit(p):
    p = np.clip(p, 1e-9, 1 - 1e-9)
    return np.log(p) - np.log1p(-p)


def _softmax_columns(joint: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Softmax over the first axis of a (C, n) array, in place, and each column's log-sum-exp:
    every step is a whole-row operation of length n (numpy reduces a short last axis several
    times slower)."""
    top = joint.max(axis=0)
    joint -= top
    np.exp(joint, out=joint)
    total = joint.sum(axis=0)
    joint /= total
    return joint, np.log(total) + top


def _argmax_columns(columns: np.ndarray) -> np.ndarray:
    """``np.argmax(columns, axis=0)`` (the first of tied maxima) of a (C, n) array, one whole-row
    comparison per class: numpy's arg-max over the first axis is several times slower."""
    best, index = columns[0].copy(), np.zeros(columns.shape[1], dtype=np.int64)
    for c in range(1, columns.shape[0]):
        better = columns[c] > best
        index[better] = c
        np.maximum(best, columns[c], out=best)
    return index


def _posterior_rows(logits: np.ndarray, *, scale: float = 1.0, offset=None, dtype=np.float64, norms: bool = True):
    """Row softmax of ``scale * logits + offset`` for (n, C) ``logits``, as new (n, C) rows of
    ``dtype``, and each row's log-sum-exp (None unless ``norms``).

    Worked on (C, n) columns (see :func:`_softmax_columns`) and without the usual shift by each
    row's largest value: log weights of probabilities are negative, so nothing overflows, and
    only rows whose every class underflows (dozens of answers against every class) or that
    overflow (large positive scores, as the weighted vote's) are shifted, afterwards. Two passes
    fewer over the whole array.
    """
    n, C = logits.shape
    joint = np.empty((C, n), dtype=dtype)
    if offset is not None:
        np.add(logits.T, np.asarray(offset, dtype=dtype)[:, None], out=joint)
        if scale != 1.0:
            joint *= scale
    else:
        np.multiply(logits.T, scale, out=joint)
    with np.errstate(over="ignore", divide="ignore"):  # both caught just below
        np.exp(joint, out=joint)
        total = joint.sum(axis=0)
        log_total = np.log(total) if norms else None
    safe = np.finfo(dtype).tiny ** 0.8
    if not (total.min(initial=1.0) > safe and total.max(initial=1.0) < 1.0 / safe):
        redo = np.flatnonzero(~((total > safe) & (total < 1.0 / safe)))
        column = logits[redo].T.astype(dtype)
        if offset is not None:
            column += np.asarray(offset, dtype=dtype)[:, None]
        joint[:, redo], shifted = _softmax_columns(scale * column)
        total[redo] = 1.0
        if norms:
            log_total[redo] = shifted
    rows = np.empty((n, C), dtype=dtype)
    np.divide(joint, total, out=rows.T)
    return rows, log_total


def _softmax_rows(logits: np.ndarray, *, inplace: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise softmax and the row log-sum-exp. Row max and sum are loops over the (few) columns:
    numpy reduces a short last axis several times slower than it combines whole columns."""
    joint = logits if inplace else logits.copy()
    top = joint[:, 0].copy()
    for column in joint.T[1:]:
        np.maximum(top, column, out=top)
    joint -= top[:, None]
    np.exp(joint, out=joint)
    total = joint[:, 0].copy()
    for column in joint.T[1:]:
        total += column
    joint /= total[:, None]
    return joint, np.log(total) + top


class _Answers:
    """The answers as EM multiplies them, built once per fit: the count matrix (its CSC transpose
    for the M-steps, see :func:`_count_matrix`), the weights of the items that count for the class
    priors, and the gold items that clamp.

    Inside EM the posteriors are single precision, (n_items, C) rows: a posterior's rounding
    (1e-7, or 1e-7 x the square root of an annotator's answers in an expected count) is far below
    the sampling noise of anything the M-step estimates, and a million answers' E- and M-steps
    are memory-bound, so half the bytes is nearly half the time. The final evidence, the
    temperature and the posteriors returned are computed in double.
    """

    def __init__(self, data, gold: np.ndarray | None):
        self.counts = counts = _count_matrix(data, np.float32)
        self.per_item = np.diff(counts.indptr)
        labelled = self.per_item > 0
        self.known = np.zeros(0, dtype=np.int64)
        if gold is not None:
            labelled |= gold >= 0
            self.known = np.flatnonzero(gold >= 0)
        self.known_labels = gold[self.known] if gold is not None else self.known
        self.labelled = None if labelled.all() else np.flatnonzero(labelled)
        self.n_answers = max(data.items.size, 1)

    def evidence(self, log_prior: np.ndarray, log_layout: np.ndarray) -> np.ndarray:
        """(n_items, C) log prior + the sum of each item's answers' log weights, in double."""
        logits = np.asarray(self.counts @ log_layout)
        logits += log_prior
        return logits

    def e_step(self, log_prior: np.ndarray, log_layout: np.ndarray) -> tuple[np.ndarray, float]:
        """(n_items, C) float32 posteriors, gold clamped, and the marginal log-likelihood."""
        logits = np.asarray(self.counts @ log_layout.astype(np.float32))
        rows, norms = _posterior_rows(logits, offset=log_prior, dtype=np.float32)
        return self.clamp(rows), float(norms.sum(dtype=np.float64))

    def clamp(self, rows: np.ndarray) -> np.ndarray:
        """(n_items, C) posteriors with the gold items' replaced by their one-hot labels."""
        if self.known.size:
            rows[self.known] = 0.0
            rows[self.known, self.known_labels] = 1.0
        return rows

    def statistics(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """From (n_items, C) float32 posteriors: the expected counts (W*C, C), ``[(r, k), j] =
        sum_i n_irk T_ij``, and the (C,) summed posteriors of the items that count for the priors."""
        soft = np.asarray(self.counts.T @ rows).astype(np.float64)
        return soft, _column_sums(rows if self.labelled is None else rows[self.labelled])


class HierarchicalDawidSkene(_Aggregator):
    r"""Dawid-Skene whose complexity follows the evidence: hierarchical priors chosen by empirical Bayes.

    Quorum's default aggregator (the loop and ``manage.py aggregate``). The model and the reasons
    for it are in the module docstring ("An aggregator that adapts its complexity"); in short, each
    confusion row is split into an accuracy and an error distribution,

    .. math::
        \pi_r^{jj} = a_{rj}, \qquad \pi_r^{jk} = (1 - a_{rj})\, e_r^{jk} \quad (k \ne j),

    with priors nested from the pool down to the annotator and the class:

    - ``a_rj ~ Beta(κ_rc m_rj, κ_rc (1 - m_rj))``, ``logit m_rj = logit a_r + logit ā_j - logit ā``
      (annotator skill plus class difficulty, the class-conditional rung);
    - ``a_r`` (the annotator's one-coin accuracy) shrunk towards the pool accuracy ``ā`` with
      strength ``κ_w``; ``ā_j`` (class difficulty) towards ``ā`` with strength ``κ_c``;
    - ``e_r^{j·} ~ Dirichlet(β_r ē^{j·})`` around the pool's error pattern ``ē^{j·}``, itself
      ``~ Dirichlet(β_0 u)`` around errors spread evenly (``u``: uniform over the other classes;
      the one-coin rung).

    Every strength (``κ_c, κ_w, κ_rc, β_0, β_r``) is chosen from the data at hand by maximising
    the beta-binomial / Dirichlet-multinomial evidence of the expected counts (empirical Bayes),
    keeping the largest strength whose evidence is within one standard error (0.5 nat) of the best:
    with few answers the evidence is flat and the priors stay strong (one-coin), with many the
    data pull them down to full per-annotator confusion matrices. Nothing is tuned per data set.

    The E-step uses the variational weights :math:`\exp E[\log\pi]` (the digamma form of
    mean-field Bayes, as in IBCC), which discount rows seen a few times. After convergence the item
    log-posteriors are temperature-scaled by one :math:`\tau` chosen by held-out likelihood
    (``calibrate``), which never changes a label. Inside EM the posteriors are single precision
    (module docstring, "Cost"); what the fit returns is double.

    Parameters
    ----------
    max_iter : int, default 100
        Maximum number of EM iterations.
    tol : float, default 1e-5
        Stop when the log-likelihood per answer changes by less than ``tol`` (the prior strengths
        are chosen once more at that point, for the final parameters).
    prior_smoothing : float, default 1.0
        Dirichlet pseudo-count per class of the class priors (a uniform prior on the simplex).
    calibrate : bool, default True
        Choose the temperature :math:`\tau` by held-out likelihood: of the gold labels when at least
        ``MIN_CALIBRATION_GOLD`` (20) gold items have answers (each predicted from its answers),
        otherwise of each answer on an item with two or more answers, predicted from the item's
        other answers. Off, or with no such data: ``τ = 1``.
    max_calibration_answers : int, default 20000
        Held-out answers used to choose τ (evenly spread over the answers; one number needs few);
        ten times as many are used for the model choice.
    max_selection_answers : int, default 50000
        Above this many answers, the choice between the class-conditional and the one-coin model
        is made on every k-th item (at most this many answers; EM there stops at ``10 * tol``,
        or at ``tol`` when the choice is within two standard errors of the one-SE line), then only
        the chosen model is fitted on all the answers, its strength searches starting from the
        subset's.

    Learned attributes
    ------------------
    posteriors_ : (n_items, C) calibrated posteriors (gold items one-hot). Unlabelled items get the
        (tempered) priors. A class nobody used (no answer, no gold label) keeps the small prior
        of its pseudo-count and the pool's one-coin rows, so it is never chosen over an answered
        class, yet a label first given on the submit path still counts there.
    labels_ : (n_items,) arg-max of ``posteriors_`` (lowest index on a tie).
    priors_ : (C,) posterior-mean class priors.
    confusion_ : (n_workers, C, C) posterior-mean confusion matrices, rows sum to 1.
    class_accuracy_ : (n_workers, C) ``a_rj``, the diagonals of ``confusion_``.
    skills_ : (n_workers,) prior-weighted accuracy :math:`\sum_j \theta_j \pi_r^{jj}` (the
        dashboard's figure). An annotator without answers gets the pool's.
    answer_weights_, prior_weights_ : what the posteriors are made of:
        ``posteriors_[i] ∝ prior_weights_ · ∏_answers answer_weights_[r, :, k]`` exactly
        (:func:`annotation.routing.item_posterior` with these recomputes the posterior of any item
        from its answers, which is what the submit path does).
    temperature_ : τ.
    strengths_ : dict of the chosen prior strengths (``class``, ``annotator``, ``annotator_class``
        (one per annotator), ``pool_errors``, ``annotator_errors``, ``class_prior``).
    model_ : ``"class-conditional"`` or ``"one-coin"``, the model kept (module docstring, "Which
        model, in the end").
    selection_ : dict: ``gain`` (share of held-out answers the class-conditional model predicts
        better), ``se`` (its standard error), ``answers`` (how many), ``criterion`` (``labels``, or
        ``log-likelihood`` when both models predict every held-out label alike; absent when the
        evidence already pooled every class rung), ``subset`` (chosen on a subset of the items)
        and, then, ``tol`` (the tolerance that subset's EM ran to).
    agreement_skills_ : (n_workers,) :func:`agreement_skills`, EM's start (nan: no shared item).
    n_iter_, converged_, log_likelihood_ (of the last E-step, untempered), classes_.

    Deterministic (no randomness; majority-vote start).
    """

    def __init__(
        self,
        *,
        max_iter: int = 100,
        tol: float = 1e-5,
        prior_smoothing: float = 1.0,
        calibrate: bool = True,
        max_calibration_answers: int = 20000,
        max_selection_answers: int = 50_000,
    ):
        self.max_iter = max_iter
        self.tol = tol
        self.prior_smoothing = prior_smoothing
        self.calibrate = calibrate
        self.max_calibration_answers = max_calibration_answers
        self.max_selection_answers = max_selection_answers

    # -- M-step -----------------------------------------------------------------------------------

    def _m_step(self, answers: _Answers, posteriors: np.ndarray, search: bool):
        """Posterior Beta / Dirichlet parameters from the expected counts; returns the E-step's log
        weights laid out as [(r, k), j] and the log prior weights. ``search``: choose the strengths
        afresh (else keep the last ones)."""
        n_workers, C = self.n_workers_, self.n_classes_
        soft, mass = answers.statistics(posteriors)  # posteriors: (n_items, C) float32
        soft = np.ascontiguousarray(soft.reshape(n_workers, C, C).transpose(0, 2, 1))  # [r, j, k]
        diagonal = np.arange(C)
        hits = soft[:, diagonal, diagonal]
        totals = np.einsum("rjk->rj", soft)
        misses = np.maximum(totals - hits, 0.0)
        strengths, peaks = self.strengths_, self._peaks

        def warm(key: str):  # every search climbs from the last one's evidence maximum (1e3 at first)
            return peaks.get(key, strengths[key])

        def keep(key: str, found, otherwise) -> None:  # a search's choice, and where the next one starts
            if found is None:
                strengths[key] = otherwise
            else:
                strengths[key], peaks[key] = found

        # Accuracies: pool -> class difficulty and annotator skill -> annotator x class.
        pool = (hits.sum() + 1.0) / (totals.sum() + 2.0)  # Beta(1, 1) on the pool accuracy
        class_hits, class_misses = hits.sum(axis=0), misses.sum(axis=0)
        worker_hits, worker_misses = hits.sum(axis=1), misses.sum(axis=1)
        one_coin = self._one_coin
        if one_coin:  # the simpler model of the choice (see _fit): one accuracy per annotator
            strengths["class"], strengths["annotator_class"] = _PINNED, np.full(n_workers, _PINNED)
        if search and not one_coin:
            found = _beta_binomial_strength(class_hits, class_misses, pool, warm("class"), peak=True)
            keep("class", found, strengths["class"])
        if search:
            found = _beta_binomial_strength(worker_hits, worker_misses, pool, warm("annotator"), peak=True)
            keep("annotator", found, strengths["annotator"])
        k_c, k_w = strengths["class"], strengths["annotator"]
        class_acc = (class_hits + k_c * pool) / (class_hits + class_misses + k_c)
        worker_acc = (worker_hits + k_w * pool) / (worker_hits + worker_misses + k_w)
        mean = 1.0 / (1.0 + np.exp(-(_logit(worker_acc)[:, None] + _logit(class_acc)[None, :] - _logit(pool))))
        if search and not one_coin:
            found = _beta_binomial_strength_per_row(
                hits, misses, mean, strengths["annotator_class"], start=warm("annotator_class"), peak=True
            )
            keep("annotator_class", found, strengths["annotator_class"])
        k_rc = strengths["annotator_class"][:, None]
        alpha = hits + k_rc * mean
        beta = misses + k_rc * (1.0 - mean)
        digamma_total = digamma(alpha + beta)
        log_hit = digamma(alpha) - digamma_total
        log_miss = digamma(beta) - digamma_total
        accuracy = alpha / (alpha + beta)
        self._class_spread = float(np.abs(accuracy - worker_acc[:, None]).max(initial=0.0))

        # Error distributions over the other classes: uniform -> pool pattern -> annotator.
        if C > 2:
            off_mask = ~np.eye(C, dtype=bool)
            off_rows = np.nonzero(off_mask)[0]  # the true class j of each off-diagonal cell (j, k)
            off = soft * off_mask
            pool_off = off.sum(axis=0)
            uniform = off_mask / (C - 1.0)
            if search:
                found = _dirichlet_multinomial_strength(pool_off, uniform, warm("pool_errors"), peak=True)
                keep("pool_errors", found, strengths["pool_errors"])
            b0 = strengths["pool_errors"]
            pattern = (pool_off + b0 * uniform) / (pool_off.sum(axis=1, keepdims=True) + b0)
            if search:
                rows = np.tile(np.arange(C), n_workers)  # row (r, j) has mean pattern[j]
                found = _dirichlet_multinomial_strength(
                    off.reshape(-1, C), pattern, warm("annotator_errors"), group=rows, peak=True
                )
                keep("annotator_errors", found, strengths["annotator_errors"])
            b1 = strengths["annotator_errors"]
            errors = off + b1 * pattern[None]  # Dirichlet parameters, 0 on the diagonal
            error_rows = np.einsum("rjk->rj", errors)[:, :, None]
            log_error = np.zeros_like(errors)
            log_error[:, off_mask] = digamma(errors[:, off_mask]) - digamma(error_rows)[:, off_rows, 0]
            error_mean = errors / error_rows
        else:
            off_mask = ~np.eye(C, dtype=bool)
            log_error = np.zeros((n_workers, C, C))
            error_mean = np.broadcast_to(off_mask.astype(float), (n_workers, C, C))

        log_weights = log_miss[:, :, None] + log_error
        log_weights[:, diagonal, diagonal] = log_hit
        confusion = (1.0 - accuracy)[:, :, None] * error_mean
        confusion[:, diagonal, diagonal] = accuracy

        if search:
            uniform = np.full((1, C), 1.0 / C)
            found = _dirichlet_multinomial_strength(mass[None], uniform, warm("class_prior"), peak=True)
            keep("class_prior", found, 0.0)
        mass = mass + max(strengths["class_prior"] / C, self.prior_smoothing)
        self.priors_ = mass / mass.sum()
        log_prior = digamma(mass) - digamma(mass.sum())
        self.confusion_, self._log_weights = confusion, log_weights
        return log_prior, log_weights.transpose(0, 2, 1).reshape(n_workers * C, C)

    # -- calibration ------------------------------------------------------------------------------

    def _temperature(self, data, answers: _Answers, logits: np.ndarray, log_layout: np.ndarray, gold) -> float:
        """τ maximising the held-out likelihood of the gold labels, or of the answers (class docstring)."""
        C = logits.shape[1]
        held = _held_out_answers(data, self.max_calibration_answers, answers.per_item)
        gold_rows = np.zeros(0, dtype=np.int64)
        if gold is not None:
            gold_rows = np.flatnonzero((gold >= 0) & (answers.per_item > 0))
        if gold_rows.size >= MIN_CALIBRATION_GOLD:  # the truth itself: answers only predict answers
            held = held[:0]
        else:
            gold_rows = gold_rows[:0]
        if held.size == 0 and gold_rows.size == 0:
            return 1.0
        # (C, n) layouts: every step of the loss is a whole-row operation (see _softmax_columns).
        r, k, i = data.workers[held], data.labels[held], data.items[held]
        rest = (logits[i] - log_layout[r * C + k]).T.copy()  # each item's evidence without the answer
        answer_given = self.confusion_[r, :, k].T.copy()  # [j, n]: P(answer k | true j)
        gold_logits = logits[gold_rows].T.copy()
        gold_labels = gold[gold_rows] if gold_rows.size else gold_rows
        gold_at = (gold_labels, np.arange(gold_rows.size))

        def loss(tau: float) -> float:
            total = 0.0
            if held.size:
                p, _ = _softmax_columns(tau * rest)
                total -= np.log(np.maximum((p * answer_given).sum(axis=0), 1e-300)).sum()
            if gold_rows.size:
                scaled = tau * gold_logits
                picked = scaled[gold_at]
                _, norm = _softmax_columns(scaled)
                total -= (picked - norm).sum()
            return total

        result = minimize_scalar(loss, bounds=_TEMPERATURE_BOUNDS, method="bounded", options={"xatol": 1e-3})
        return float(result.x)

    # -- public API -------------------------------------------------------------------------------

    def fit(self, items, workers, labels, *, n_items=None, n_workers=None, n_classes=None, true_labels=None):
        """Fit on long-format answers (as :meth:`DawidSkene.fit`; ``true_labels`` clamp and teach)."""
        if (
            self.max_iter < 0
            or self.tol < 0
            or self.prior_smoothing <= 0
            or self.max_calibration_answers < 1
            or self.max_selection_answers < 1
        ):
            raise ValueError(f"{self!r}: max_iter, tol must be >= 0, prior_smoothing > 0, max_*_answers >= 1")
        data = as_annotations(items, workers, labels, n_items=n_items, n_workers=n_workers, n_classes=n_classes)
        if data.n_classes == 0:
            raise ValueError("no classes: pass n_classes when there are no annotations")
        gold = _true_label_array(true_labels, data.n_items, data.n_classes)
        self.n_items_, self.n_workers_, self.n_classes_ = data.n_items, data.n_workers, data.n_classes
        self._fit(data, gold)
        self.labels_ = np.argmax(self.posteriors_, axis=1)
        self.class_accuracy_ = np.diagonal(self.confusion_, axis1=1, axis2=2).copy()
        self.skills_ = self.class_accuracy_ @ self.priors_
        self.classes_ = np.arange(data.n_classes)
        for scratch in ("_log_weights", "_one_coin", "_class_spread", "_peaks"):
            self.__dict__.pop(scratch, None)
        return self

    def _fit(self, data, gold) -> None:
        C, W = data.n_classes, data.n_workers
        self.strengths_ = {"class": 1e3, "annotator": 1e3, "annotator_class": np.full(W, 1e3), "pool_errors": 1e3}
        self.strengths_.update(annotator_errors=1e3, class_prior=1e3)
        self._peaks = {}  # each strength's evidence maximum at the last search: the next one climbs from there
        self.n_iter_, self.converged_, self.log_likelihood_, self.temperature_ = 0, False, float("nan"), 1.0
        if C == 1:
            self.posteriors_ = np.ones((data.n_items, 1))
            self.priors_ = self.prior_weights_ = np.ones(1)
            self.confusion_ = self.answer_weights_ = np.ones((W, 1, 1))
            self._log_weights = np.zeros((W, 1, 1))
            self.converged_ = True
            return
        answers = _Answers(data, gold)
        self.model_, self.selection_ = "class-conditional", {"gain": 0.0, "se": 0.0, "answers": 0, "subset": False}
        chosen = None
        if data.items.size > self.max_selection_answers:
            chosen, self.agreement_skills_ = self._choose_on_subset(data, answers, gold)
        else:
            self.agreement_skills_ = agreement_skills(data)
        self._one_coin = chosen == "one-coin"
        log_prior, log_layout = self._em(answers, _weighted_vote(data, answers, self.agreement_skills_))
        logits = answers.evidence(log_prior, log_layout)  # the final parameters' evidence
        if chosen is not None:
            self.model_ = chosen
        elif self._class_spread > _SPREAD_TOLERANCE:
            log_prior, log_layout, logits = self._choose_model(data, answers, log_prior, log_layout, logits)
        else:
            self.model_ = "one-coin"  # the evidence already pooled every class rung
        self.temperature_ = self._temperature(data, answers, logits, log_layout, gold) if self.calibrate else 1.0
        posteriors, _ = _posterior_rows(logits, scale=self.temperature_, norms=False)
        self.posteriors_ = _clamp(posteriors, gold)
        self.prior_weights_ = np.exp(self.temperature_ * (log_prior - log_prior.max()))
        self.answer_weights_ = np.exp(self.temperature_ * self._log_weights)

    def _choose_on_subset(self, data, answers: _Answers, gold) -> tuple[str, np.ndarray]:
        """The model choice of ``_choose_model`` made on every k-th item (at most
        ``max_selection_answers`` answers), so that a large fit runs EM once: which model the
        answers support is settled long before a million of them."""
        step = -(-data.items.size // self.max_selection_answers)
        C, indptr = data.n_classes, answers.counts.indptr
        chosen = np.arange(0, data.n_items, step)  # their answers, read off the count matrix's rows
        starts, lengths = indptr[chosen], np.diff(indptr)[chosen]
        at = np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(lengths.sum())
        workers, labels = np.divmod(answers.counts.indices[at].astype(np.int64), C)
        subset = data._replace(
            items=np.repeat(np.arange(chosen.size), lengths), workers=workers, labels=labels, n_items=chosen.size
        )
        subset_gold = None if gold is None else gold[::step]
        probe = clone(self).set_params(
            calibrate=False, max_selection_answers=data.items.size, tol=_PROBE_LOOSENING * self.tol
        )
        probe.n_items_, probe.n_workers_, probe.n_classes_ = subset.n_items, subset.n_workers, subset.n_classes
        probe._fit(subset, subset_gold)
        gain, se = probe.selection_["gain"], probe.selection_["se"]
        if "criterion" in probe.selection_ and abs(gain - se) <= 2.0 * se:  # near the one-SE line
            probe.set_params(tol=self.tol)._fit(subset, subset_gold)
        self.selection_ = {**probe.selection_, "subset": True, "tol": probe.tol}
        # Its strengths are where the full fit's first searches start climbing (the same choice
        # from fewer evaluations where the evidence is unimodal).
        self.strengths_ = {key: np.copy(value) for key, value in probe.strengths_.items()}
        self._peaks = {key: np.copy(value) for key, value in probe._peaks.items()}
        return probe.model_, probe.agreement_skills_  # the same every-k-th items agreement_skills uses

    def _choose_model(self, data, answers: _Answers, log_prior, log_layout, logits):
        """Keep the class-conditional fit only if it predicts held-out answers better than one-coin.

        Both are fitted (one-coin warm-started from the other's posteriors); each predicts every
        held-out answer's label from the item's other answers, and the class-conditional model is
        kept when its share of right predictions is higher by more than one standard error of the
        paired difference (the one-SE rule again: the simpler model unless the data reject it).
        """
        held = _held_out_answers(data, 10 * self.max_calibration_answers, answers.per_item)
        full_match, full_log = self._held_out_match(data, held, logits, log_layout)
        full_state = self._state(log_prior, log_layout, logits)
        posteriors = answers.clamp(_posterior_rows(logits, dtype=np.float32, norms=False)[0])
        self._one_coin = True
        try:
            log_prior, log_layout = self._em(answers, posteriors)
        finally:
            self._one_coin = False
        logits = answers.evidence(log_prior, log_layout)
        one_match, one_log = self._held_out_match(data, held, logits, log_layout)
        difference, criterion = full_match - one_match, "labels"
        if difference.size and not difference.any():  # the same predictions: the probabilities decide
            difference, criterion = full_log() - one_log(), "log-likelihood"
        gain = float(difference.mean()) if difference.size else 0.0
        se = float(difference.std(ddof=1) / np.sqrt(difference.size)) if difference.size > 1 else 0.0
        self.selection_ = {"gain": gain, "se": se, "answers": int(difference.size), "criterion": criterion}
        self.selection_["subset"] = False
        if gain > se:
            return self._restore(full_state)
        self.model_ = "one-coin"
        return log_prior, log_layout, logits

    def _held_out_match(self, data, held: np.ndarray, logits: np.ndarray, log_layout: np.ndarray):
        """Per held-out answer (``held``: on items with two or more answers, at most
        ``max_calibration_answers * 10`` evenly spread): 1.0 where its label is the arg-max of its
        item's evidence without it; and a function giving the log-probability the model gives it
        from that evidence (needed only when the two models predict every held-out label alike)."""
        C = logits.shape[1]
        r, k, i = data.workers[held], data.labels[held], data.items[held]
        rest = (logits[i] - log_layout[r * C + k]).T.copy()  # (C, n), as _temperature
        match = (_argmax_columns(rest) == k).astype(np.float64)
        confusion = self.confusion_

        def log_likelihood() -> np.ndarray:
            posterior, _ = _softmax_columns(rest)
            given = (posterior * confusion[r, :, k].T).sum(axis=0)
            return np.log(np.maximum(given, 1e-300))

        return match, log_likelihood

    def _state(self, log_prior, log_layout, logits) -> dict:
        state = {key: getattr(self, key) for key in _FIT_STATE}
        state["strengths_"] = {key: np.copy(value) for key, value in self.strengths_.items()}
        state["_returned"] = (log_prior, log_layout, logits)
        return state

    def _restore(self, state: dict):
        for key in _FIT_STATE:
            setattr(self, key, state[key])
        self.strengths_ = {key: (value if value.ndim else float(value)) for key, value in state["strengths_"].items()}
        return state["_returned"]

    def _em(self, answers: _Answers, posteriors: np.ndarray):
        """EM from (n_items, C) float32 ``posteriors``; returns the last M-step's log prior and log answer weights."""
        self.converged_ = False
        log_prior, log_layout = self._m_step(answers, posteriors, search=True)
        previous = -np.inf
        searches = {2, 8, 32}  # and once more when the likelihood settles
        for iteration in range(1, self.max_iter + 1):
            posteriors, log_likelihood = answers.e_step(log_prior, log_layout)
            self.n_iter_, self.log_likelihood_ = iteration, log_likelihood
            settled = abs(log_likelihood - previous) / answers.n_answers < self.tol
            search = settled or iteration in searches
            log_prior, log_layout = self._m_step(answers, posteriors, search=search)
            if settled:
                self.converged_ = True
                break
            previous = log_likelihood
        return log_prior, log_layout

"""Guardrails for a fine-tune that cannot mean anything: refuse before the work when the data
is degenerate, and say so plainly when the result is the base model or training learnt nothing.

- **Too few pairs** (< ``MIN_PAIRS`` after the dev split): contrastive losses learn from the
  other examples of a batch (in-batch negatives); with a handful of pairs there are almost none,
  and no test split could show a difference.  Refused.  Below ``FEW_PAIRS``: a warning (a
  fine-tune on so little rarely moves a held-out metric; the verdict will most likely be
  "not significant").
- **No dev queries although --dev-ratio > 0** (``round(queries x ratio)`` is 0, or takes every
  query): the user asked for checkpoint selection and would silently get the last epoch, or
  nothing to train on.  Refused, with the ratio that would work.  Fewer than ``FEW_DEV``
  dev queries: a warning (dev NDCG@10 on 2 queries picks the checkpoint by chance).
- **Loss ~0 from the first epoch** (mean training loss < ``ZERO_LOSS``): the examples are
  trivially easy for the base model (positives equal to queries, a batch of one, triplets
  whose negative is unrelated), so there is no gradient to learn from.  A warning.
- **Best checkpoint = epoch 0**: the model written is the base model, unchanged; the verdict
  and the card say it in those words.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

from embedlab.errors import EmbedlabError
from embedlab.train.fit import EpochPoint

log = logging.getLogger(__name__)

MIN_PAIRS = 4
FEW_PAIRS = 100
FEW_DEV = 5
ZERO_LOSS = 1e-3
BASE_KEPT = "the best dev checkpoint is epoch 0, so the output is the unchanged base model"


def check_data(*, pairs: int, queries: int, dev_ratio: float) -> list[str]:
    """Refuse degenerate training data (raises); return warnings for thin data."""
    dev = round(queries * dev_ratio)
    if dev_ratio > 0 and (dev == 0 or dev == queries):
        need = math.ceil(100 / queries) / 100 if queries else 0.0  # queries x need >= 1: one dev query
        raise EmbedlabError(
            f"--dev-ratio {dev_ratio:g} of {queries} training queries leaves "
            + ("0 dev queries" if dev == 0 else "no query to train on"),
            expected="at least one dev query and one training query",
            hint=(f"use --dev-ratio {need:g} or more, " if dev == 0 and queries > 1 else "use a smaller --dev-ratio, ")
            + "or --dev-ratio 0 to keep the last epoch without a dev split",
        )
    training_pairs = pairs if dev == 0 else round(pairs * (queries - dev) / queries)  # estimate before the split
    if training_pairs < MIN_PAIRS:
        raise EmbedlabError(
            f"too few training pairs to fine-tune: about {training_pairs} after the dev split",
            expected=f"at least {MIN_PAIRS} (query, positive) pairs; hundreds to see an effect",
            hint="add training data (click logs: --train-format clicks), or evaluate the base model as it is",
        )
    warnings = []
    if training_pairs < FEW_PAIRS:
        warnings.append(
            f"only about {training_pairs} training pairs: a fine-tune on so few rarely changes a held-out metric "
            "(expect 'not significant'); hundreds of pairs are usual"
        )
    if 0 < dev < FEW_DEV:
        warnings.append(
            f"only {dev} dev quer{'y' if dev == 1 else 'ies'} pick the checkpoint: dev NDCG@10 on so few is mostly "
            "chance; use a larger --dev-ratio or more queries"
        )
    for line in warnings:
        log.warning("%s", line)
    return warnings


def check_curve(curve: Sequence[EpochPoint], *, best_epoch: int) -> list[str]:
    """Warnings about what training did: a loss at ~0 from the start, or the base model kept."""
    warnings = []
    first = next((p for p in curve if p.epoch == 1), None)
    if first is not None and first.train_loss is not None and first.train_loss < ZERO_LOSS:
        warnings.append(
            f"the training loss was {first.train_loss:.2g} in the first epoch: the examples are trivially easy for "
            "the base model (positives equal to queries, batches of one, unrelated negatives), so there was "
            "nothing to learn; check the training data"
        )
    if best_epoch == 0 and len(curve) > 1:
        warnings.append(BASE_KEPT + ": no epoch beat it on the dev queries")
    for line in warnings:
        log.warning("%s", line)
    return warnings

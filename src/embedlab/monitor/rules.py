"""``monitor.toml``: the reference window and the alert rules ``embedlab monitor check`` evaluates.

```toml
[reference]
first = 500                 # the first 500 logged searches are the reference ...
# queries = "queries.jsonl" # ... or the queries the model was evaluated on (BEIR queries file)

[[rule]]
name = "queries drifted"    # optional; default: the metric
metric = "query_drift"      # an online metric (ctr, mrr, latency_p95, ...) or a drift test
window = "1h"               # the last hour of searches (after the reference)
p_value = 0.01              # drift tests: alert when p < 0.01
min_volume = 50             # fewer searches in the window: no verdict (not an alert)

[[rule]]
metric = "ctr"
window = "1d"
below = 0.2                 # online metrics: alert when below (or `above`) the threshold
min_volume = 200

[retrain]                   # optional: these alerts start `monitor retrain` (gated; stages, never promotes)
on = ["queries drifted"]    # rule names (default: any alert)
test_dataset = "scifact"    # and the other `monitor retrain` options: holdout, stage, epochs, ...
```

Errors name the file and the line of the offending rule or key (TOML text is searched for the
``[[rule]]`` headers; pydantic gives the rule number and key).
"""

from __future__ import annotations

import re
from functools import partial
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from embedlab.configfile import invalid_settings, read_settings
from embedlab.errors import EmbedlabError
from embedlab.monitor.online import METRICS, parse_duration

DRIFT_TESTS = ("query_drift", "query_centroid", "out_of_domain", "vocabulary_drift", "corpus_drift")


class Reference(BaseModel):
    model_config = ConfigDict(extra="forbid")
    first: int | None = Field(None, ge=20, le=100_000)
    queries: str | None = None

    @model_validator(mode="after")
    def _one(self) -> Reference:
        if (self.first is None) == (self.queries is None):
            raise ValueError("give exactly one of 'first' (logged searches) or 'queries' (a BEIR queries file)")
        return self


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, min_length=1, max_length=80, pattern=r"^[\w .:/-]+$")
    metric: str
    window: str = "1h"
    p_value: float | None = Field(None, gt=0, lt=1)
    above: float | None = None
    below: float | None = None
    min_volume: int = Field(30, ge=1)

    @field_validator("window")
    @classmethod
    def _duration(cls, value: str) -> str:
        try:
            parse_duration(value, option="window")
        except EmbedlabError as err:
            raise ValueError(err.message + "; expected a duration like 30s, 15m, 1h or 7d") from None
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Rule:
        if self.metric in DRIFT_TESTS:
            if self.p_value is None or self.above is not None or self.below is not None:
                raise ValueError(f"drift test {self.metric!r} takes 'p_value' (and no above/below)")
        elif self.metric in METRICS:
            if self.p_value is not None or (self.above is None) == (self.below is None):
                raise ValueError(f"online metric {self.metric!r} takes exactly one of 'above' or 'below'")
        else:
            raise ValueError(f"unknown metric {self.metric!r}; known: {', '.join(METRICS + DRIFT_TESTS)}")
        return self

    @property
    def label(self) -> str:
        return self.name or self.metric

    @property
    def window_s(self) -> float:
        return parse_duration(self.window, option="window")


class RetrainOnAlert(BaseModel):
    """``[retrain]``: when one of ``on`` (rule names; empty: any rule) alerts, ``monitor check`` runs
    ``monitor retrain`` with these options; the gate still decides, and a passing candidate is only
    staged (interleaved or shadow), never promoted: promotion stays a person's decision."""

    model_config = ConfigDict(extra="forbid")
    on: list[str] = Field(default_factory=list)
    test_dataset: str | None = None
    holdout: float = Field(0.2, gt=0, lt=1)
    stage: Literal["interleave", "shadow"] = "interleave"
    min_clicks: int = Field(50, ge=1)
    min_holdout: int = Field(10, ge=1)
    epochs: int = Field(4, ge=1, le=100)
    learning_rate: float = Field(5e-5, gt=0, lt=1)
    batch_size: int = Field(32, ge=2, le=4096)
    dev_ratio: float = Field(0.1, ge=0, lt=1)
    propensity_eta: float = Field(1.0, ge=0, le=4)
    click_gate: Literal["auto", "improve", "no-regression", "report"] = "auto"
    out_dir: str = "models"  # the candidate's model goes to <out_dir>/<candidate>


class MonitorFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reference: Reference = Field(default_factory=lambda: Reference(first=500))
    rule: list[Rule] = Field(min_length=1)
    retrain: RetrainOnAlert | None = None

    def retrain_triggers(self, alerting: list[str]) -> list[str]:
        """The alerting rules that start a retrain (none without a ``[retrain]`` table)."""
        if self.retrain is None:
            return []
        return [label for label in alerting if not self.retrain.on or label in self.retrain.on]


_EXPECTED = "[reference] and [[rule]] tables with metric, window, p_value or above/below, min_volume"


def _line(text: str, loc: tuple[Any, ...]) -> int | None:
    """The line of ``loc`` (``("rule", 2, "window")``) in the TOML text: the key inside the n-th
    ``[[rule]]`` block, or the block's header, or the ``[reference]`` table."""
    lines = text.splitlines()
    if not loc:
        return None
    header = r"^\s*\[\[\s*rule\s*\]\]" if loc[0] == "rule" else rf"^\s*\[\s*{re.escape(str(loc[0]))}\s*\]"
    starts = [i for i, line in enumerate(lines) if re.match(header, line)]
    index = loc[1] if loc[0] == "rule" and len(loc) > 1 and isinstance(loc[1], int) else 0
    if index >= len(starts):
        key = str(loc[0])
        hits = [i for i, line in enumerate(lines) if re.match(rf"^\s*{re.escape(key)}\s*=", line)]
        return hits[0] + 1 if hits else None
    start = starts[index]
    end = next((i for i in range(start + 1, len(lines)) if re.match(r"^\s*\[", lines[i])), len(lines))
    found: object = None
    if loc[0] == "rule" and len(loc) > 2:
        found = loc[2]
    elif loc[0] != "rule" and len(loc) > 1:
        found = loc[1]
    if isinstance(found, str):
        key = found
        for i in range(start, end):
            if re.match(rf"^\s*{re.escape(key)}\s*=", lines[i]):
                return i + 1
    return start + 1


def load_rules(path: str | Path) -> MonitorFile:
    """The checked ``monitor.toml``; every problem is one :class:`EmbedlabError` with file and line."""
    path = Path(path)
    text, data = read_settings(path, what="monitor rules file", expected=_EXPECTED)
    try:
        parsed = MonitorFile.model_validate(data)
    except ValidationError as err:
        line_of = partial(_line, text)
        raise invalid_settings(err, what="monitor rules file", path=path, line_of=line_of, expected=_EXPECTED) from None
    labels = [r.label for r in parsed.rule]
    if len(set(labels)) != len(labels):
        twice = next(label for label in labels if labels.count(label) > 1)
        raise EmbedlabError(f"two rules are both named {twice!r}", path=path, hint="give one of them a distinct name")
    unknown = [name for name in (parsed.retrain.on if parsed.retrain else []) if name not in labels]
    if unknown:
        raise EmbedlabError(
            f"[retrain] on names no rule: {unknown[0]!r}", path=path, expected=f"one of {', '.join(labels)}"
        )
    return parsed

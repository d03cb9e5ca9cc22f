"""Progress bars that follow the log level: shown when asked for and logging is at INFO or below."""

from __future__ import annotations

import logging
import sys

from tqdm.auto import tqdm


def progress_bar(*, total: int, desc: str, enabled: bool) -> tqdm:
    show = enabled and logging.getLogger("embedlab").getEffectiveLevel() <= logging.INFO and sys.stderr.isatty()
    return tqdm(total=total, desc=desc, disable=not show, leave=False, unit="txt", dynamic_ncols=True)

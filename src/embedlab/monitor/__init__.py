"""Watching a served collection: online metrics (``online``), drift tests (``drift``), alert rules
(``rules``, ``check``) and the dashboard (``report``), all from the searches and feedback that
``embedlab serve`` logs in ``feedback.sqlite`` (``events``)."""

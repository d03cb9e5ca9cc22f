"""``embedlab tune``: settings of a retrieval pipeline chosen on labelled dev queries (hybrid fusion,
re-rank depth under a latency budget) and reported on queries that played no part in the choice."""

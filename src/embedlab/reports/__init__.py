"""Results as JSON (MTEB-compatible scores plus a run manifest), terminal tables, Markdown and HTML."""

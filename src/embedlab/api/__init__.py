"""The Python API: the functions ``embedlab/__init__.py`` exports (``embedlab.load_model`` ...).

One module per task (``model``, ``evaluation``, ``selection``, ``collections``, ``training``),
on top of the core like the CLI, which calls these same functions.  ``specs`` turns Python
values into the specs the core runs on, with the CLI's checks and one-line errors.
"""

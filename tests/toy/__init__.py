"""A toy step added as a user would add one: its module (``polish.py``: the node and its
declaration), its prompt file (``polish.md``) and its edge (``with_polish``)."""

"""Graphs for ``langgraph dev`` (see ``langgraph.json``): compiled without a checkpointer.

The dev server refuses a graph compiled with one (it brings its own). Headless runs compile
the same builders with the SQLite saver instead (``codeclm.engine``). Runs on the server
carry no models: the nodes use the context built from ``$CODECLM_CONFIG``.
"""

from __future__ import annotations

from codeclm.graph import build_instruction_graph, build_prepare_graph, retry_policy

instruction_graph = build_instruction_graph(retry_policy(3), served=True).compile()
prepare_graph = build_prepare_graph(retry_policy(3), served=True).compile()

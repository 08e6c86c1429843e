"""The run engine: threads, the 'prepare' stream, outputs and the run record.

Dependency direction (each layer imports only those after it):
``cli → api → engine → graph → nodes → llm / state / prompts``.
"""

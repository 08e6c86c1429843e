"""Model roles: OpenAI-compatible clients and the embedded llama.cpp server."""

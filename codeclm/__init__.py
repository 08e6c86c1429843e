"""codeclm: tailored synthetic instruction data by the CodecLM method, on LangGraph."""

__version__ = "0.1.0"

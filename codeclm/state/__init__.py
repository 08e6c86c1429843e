"""Graph state models (pydantic), registered with the checkpoint serializer."""

from codeclm.state.models import (
    SCHEMA_VERSION,
    STATE_MODELS,
    BasicInstruction,
    EncodedSeed,
    EncodeTask,
    Failure,
    InstructionState,
    JudgeScores,
    MetadataEntry,
    MetadataTask,
    PrepareState,
    RubricSet,
    Seed,
    TokenUsage,
    add_usage,
)

__all__ = [
    "SCHEMA_VERSION",
    "STATE_MODELS",
    "BasicInstruction",
    "EncodeTask",
    "EncodedSeed",
    "Failure",
    "InstructionState",
    "JudgeScores",
    "MetadataEntry",
    "MetadataTask",
    "PrepareState",
    "RubricSet",
    "Seed",
    "TokenUsage",
    "add_usage",
]

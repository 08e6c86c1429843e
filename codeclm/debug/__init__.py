"""Looking into a run's threads (``codeclm inspect``) and stepping one (``codeclm step``)."""

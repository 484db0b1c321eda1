"""One small file per task: model, physical parameters, actuation, reward."""

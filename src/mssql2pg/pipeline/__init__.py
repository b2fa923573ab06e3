"""The pipeline: reader → bounded queue → applier, with restarts from the committed checkpoint."""

"""Representation geometry (methods layer): cluster indices, their normalisations, pooled representations and the
Alignment Quality Index (AQI) of how well a model's hidden states separate safe from unsafe inputs."""

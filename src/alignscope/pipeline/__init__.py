"""The resumable refusal-study pipeline behind ``alignscope run``: config, stages, checkpoints, manifest."""

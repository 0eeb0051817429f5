"""Adapters that let other tools drive alignscope models (the top layer: nothing in alignscope imports them)."""

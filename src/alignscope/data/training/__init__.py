"""Training data for the alignment circuit: examples, the built-in mixes, public formats and training sources."""

from alignscope.data.training.examples import SPLITS, Example, MCItem, TrainingSet, hash_split
from alignscope.data.training.formats import load_alpaca, load_beavertails, load_hh_examples, load_truthfulqa_csv, read_mc_task
from alignscope.data.training.mixes import MIXES, HonestItem, honest_items, load_honest_mc, load_mix, load_mixes, refusal_for, refusal_styles
from alignscope.data.training.sources import TrainingSource, load_training_source, parse_training_source

__all__ = ["MIXES", "SPLITS", "Example", "HonestItem", "MCItem", "TrainingSet", "TrainingSource", "hash_split", "honest_items",
           "load_alpaca", "load_beavertails", "load_hh_examples", "load_honest_mc", "load_mix", "load_mixes",
           "load_training_source", "load_truthfulqa_csv", "parse_training_source", "read_mc_task", "refusal_for",
           "refusal_styles"]

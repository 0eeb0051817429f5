"""Prompt sets, the built-in sets written by this project, and loaders for public formats."""

from alignscope.data.builtin_sets import BUILTIN_SETS, load_builtin, split_of
from alignscope.data.prompts import Prompt, PromptSet, load_prompts
from alignscope.data.public import PreferencePair, load_any, load_hh_rlhf

__all__ = ["BUILTIN_SETS", "PreferencePair", "Prompt", "PromptSet", "load_any", "load_builtin", "load_hh_rlhf", "load_prompts", "split_of"]

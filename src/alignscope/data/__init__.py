"""Prompt sets, the built-in sets written by this project, loaders for public formats, and prompt sources."""

from alignscope.data.builtin_sets import BUILTIN_SETS, load_builtin, split_of
from alignscope.data.prompts import Prompt, PromptSet, load_prompts
from alignscope.data.public import PreferencePair, load_any, load_hh_rlhf
from alignscope.data.sources import PromptSource, load_source, load_sources, parse_source

__all__ = ["BUILTIN_SETS", "PreferencePair", "Prompt", "PromptSet", "PromptSource", "load_any", "load_builtin", "load_hh_rlhf",
           "load_prompts", "load_source", "load_sources", "parse_source", "split_of"]

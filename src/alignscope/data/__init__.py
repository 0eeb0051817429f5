"""Prompt sets and their loaders."""

from alignscope.data.prompts import Prompt, PromptSet, load_prompts

__all__ = ["Prompt", "PromptSet", "load_prompts"]

"""Behaviour evaluation: batched generation, refusal detection and rates, capability checks, LLM judge."""

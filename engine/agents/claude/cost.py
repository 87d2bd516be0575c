"""Token counts of a proposal's requests, as the API reported them, and their price in dollars."""

from __future__ import annotations

from dataclasses import dataclass

from ratchet.engine.workspace.config import ClaudeConfig


@dataclass
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    requests: int = 0  # responses whose usage was reported, complete or cut

    def add(self, reported: dict[str, int]) -> None:
        """Add one response's usage, keyed as the API names it."""
        self.input_tokens += reported.get("input_tokens") or 0
        self.output_tokens += reported.get("output_tokens") or 0
        self.cache_read_tokens += reported.get("cache_read_input_tokens") or 0
        self.cache_write_tokens += reported.get("cache_creation_input_tokens") or 0
        self.requests += 1

    def cost_usd(self, prices: ClaudeConfig) -> float:
        """Dollars at the configured prices per million tokens."""
        return (self.input_tokens * prices.price_input
                + self.output_tokens * prices.price_output
                + self.cache_read_tokens * prices.price_cache_read
                + self.cache_write_tokens * prices.price_cache_write) / 1e6

    def fields(self) -> dict[str, int]:
        return {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
                "cache_read_tokens": self.cache_read_tokens,
                "cache_write_tokens": self.cache_write_tokens, "requests": self.requests}

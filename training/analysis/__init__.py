"""Research tools: experiments and benchmarks that inform decisions, not part of building the shipped model."""

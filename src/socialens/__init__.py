"""socialens: build, compare and serve text classifiers for news and social-media analysis."""

__version__ = "0.1.0"

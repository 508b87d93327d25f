"""babelsieve: multilingual pretraining-data curation (Common Crawl -> Parquet), FineWeb2-style."""

__version__ = "0.1.0"

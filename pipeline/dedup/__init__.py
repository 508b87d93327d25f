"""Global MinHash deduplication per language (signatures, band buckets, clusters, annotate)."""

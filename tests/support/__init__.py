"""Code the tests share: test data paths, engine runs, an S3-API server, dedup corpora, deploy tools."""

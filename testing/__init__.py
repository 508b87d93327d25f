"""What tests and benchmarks start around the pipeline: a real S3 API (moto's server mode) and a
throttling, request-counting proxy in front of it. Needs the `test` extra (moto)."""

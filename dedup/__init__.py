"""Engine-free deduplication: MinHash signatures, LSH band buckets, clusters, rehydration weights."""

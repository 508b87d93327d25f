"""Quality filters and formatters: engine-free functions of (documents, language settings)."""

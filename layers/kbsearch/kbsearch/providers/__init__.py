"""Model providers (embeddings, rerankers, expansion) and the HTTP policy they share."""

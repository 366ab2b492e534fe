"""The article's servers: one wire protocol, one small module per concurrency strategy."""

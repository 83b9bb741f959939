// The messenger channel adapter; see adapters/messenger/README.md.

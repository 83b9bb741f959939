// The instagram channel adapter; see adapters/instagram/README.md.

// The whatsapp channel adapter; see adapters/whatsapp/README.md.

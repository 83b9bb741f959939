// The email channel: MIME parsing first; IMAP/LMTP/SMTP to follow. See adapters/email/README.md.

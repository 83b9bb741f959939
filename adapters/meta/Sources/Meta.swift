// Shared pieces of the Meta channels (WhatsApp Cloud API, Messenger, Instagram):
// webhook verification and the Graph API client. See adapters/meta/README.md.

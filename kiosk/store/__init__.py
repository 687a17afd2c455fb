"""Local data: the crash-safe database, AES-GCM sealing, the loan outbox, the card-link cache
and the audit trail."""

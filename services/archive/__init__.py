"""The archive: every complaint's record and audit trail in a relational database."""

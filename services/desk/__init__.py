"""The staff desk: who may act, work lists and search, the case page, actions as case events."""

"""Bounds on path and query values that reach the journal's queries."""

from __future__ import annotations

# Numbers that reach the journal's queries are bounded by their column types, so larger ones are a 422 and
# never reach the database (SQLite's driver raises OverflowError past 64 bits; PostgreSQL refuses a bigint
# beyond its INTEGER event ids): offsets are 64-bit, event ids 32-bit.
MAX_INT64 = 2**63 - 1
MAX_EVENT_ID = 2**31 - 1
# PostgreSQL text cannot hold NUL, so no stored id, name or status has one; a lookup with one failed there
# (DataError, a 500). Path and query strings that reach the journal refuse it (422).
NO_NUL = r"^[^\x00]*$"

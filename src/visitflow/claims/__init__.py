"""Claims core (issue 8): the 837P writer, the 837 checker (pyx12 + CLM edits) and 835 remittance reading.

Pure: no database, no Temporal, no clock (the caller passes "today"). Modules: `models` (what a claim holds),
`x837p` (writer), `validate` (pyx12, CLM-06), `reader` (837P/837I read back), `edits` (CLM-01..05, CLM-07),
`check` (the checker behind the CLI and the API), `cli` (`visitflow check-837`), `remittance` (835).
"""

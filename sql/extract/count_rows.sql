-- Rows a CDM table holds, to report against the rows that left the database.
SELECT COUNT(*) AS n FROM {cdm}{table}

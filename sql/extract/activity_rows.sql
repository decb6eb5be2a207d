-- The activity rows of one table that are quarantined one by one: dated after :future (the day
-- of the run, without an explicit cutoff), or of a screened person_id that has no person row.
-- Normally none: this query only runs when activity.sql counted some.
SELECT
    a.row_id
    , a.person_id
    , a.known
    , a.start_date
    , a.start_raw
FROM ({rows}) a
WHERE (
    a.candidate = 0
    OR a.row_id IN (SELECT u.row_id FROM leopard_ungrouped u WHERE u.record = :record)
){since}
    AND (a.known = 0 OR a.start_date > :future)

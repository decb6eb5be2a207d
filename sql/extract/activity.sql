-- Activity records (spec §1 v2) of one table, aggregated in the database: the screened persons'
-- rows in no code group (not a candidate, or a candidate rows.py found in no group: the
-- leopard_ungrouped ids), one row per person.
-- latest = the latest date <= :bound (the cutoff, else the day of the run): a row's end when it
-- is after its start and not after the bound, else its start when that is not after the bound
-- (an interval spanning the bound counts by its start). Rows starting after :future (the day of
-- the run when there is no explicit cutoff) are counted here and quarantined one by one
-- (activity_rows.sql); rows without a usable start date are counted (out of scope).
SELECT
    a.person_id
    , a.known
    , MAX(CASE
        WHEN a.start_date IS NULL OR a.start_date > :future THEN NULL
        WHEN a.end_date > a.start_date AND a.end_date <= :bound THEN a.end_date
        WHEN a.start_date <= :bound THEN a.start_date
    END) AS latest
    , COUNT(*) AS n_rows
    , SUM(CASE WHEN a.start_date IS NULL THEN 1 ELSE 0 END) AS n_undated
    , SUM(CASE WHEN a.start_date > :future THEN 1 ELSE 0 END) AS n_future
FROM ({rows}) a
WHERE (
    a.candidate = 0
    OR a.row_id IN (SELECT u.row_id FROM leopard_ungrouped u WHERE u.record = :record)
){since}
GROUP BY a.person_id, a.known

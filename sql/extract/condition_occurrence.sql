-- Every condition of the screened persons, in the column names all tables share (rows.py).
-- candidate = 1 when the standard or source concept is in the concept set, or the source value
-- looks like a diagnosis code of a group (ICD-10 / -CM / -GM, ICD-9-CM): those rows leave the
-- database one by one (grouped.sql); the others are activity records, aggregated (activity.sql).
-- {t.date[col]} / {t.text[col]} / {t.id[col]} cast the column as its actual type needs (columns.py).
SELECT
    {t.id[condition_occurrence_id]} AS row_id
    , lp.person_id
    , lp.known
    , {t.id[condition_concept_id]} AS concept_id
    , {t.id[condition_source_concept_id]} AS source_concept_id
    , {t.text[condition_source_value]} AS source_value
    , {t.date[condition_start_date]} AS start_date
    , {t.date[condition_end_date]} AS end_date
    , {t.text[condition_start_date]} AS start_raw
    , CASE
        WHEN {t.id[condition_concept_id]} IN (SELECT c.concept_id FROM leopard_concept c)
            OR {t.id[condition_source_concept_id]} IN (SELECT c.concept_id FROM leopard_concept c)
        THEN 1
        -- the LIKE over every pattern only for a source value whose first character starts one
        -- (CASE, not AND: evaluated in this order on every database)
        WHEN SUBSTRING(UPPER({t.text[condition_source_value]}), 1, 1) IN (
            SELECT s.lead FROM leopard_source_code s WHERE s.record = 'condition_occurrence'
        )
        THEN CASE
            WHEN EXISTS (
                SELECT 1 FROM leopard_source_code s
                WHERE s.record = 'condition_occurrence' AND UPPER({t.text[condition_source_value]}) LIKE s.pattern
            )
            THEN 1 ELSE 0
        END
        ELSE 0
    END AS candidate
FROM {cdm}condition_occurrence t
INNER JOIN leopard_person lp ON lp.person_id = {t.id[person_id]}

-- Every procedure of the screened persons (radiotherapy, surgery, …); quantity = RT fractions.
-- procedure_end_date exists in v5.4 only: on v5.3 {t.date[procedure_end_date]} is a typed NULL.
-- candidate: concept set, or a source value that looks like a procedure code of a group
-- (CPT, ICD-10-PCS, OPS, ICD-9-CM procedures).
SELECT
    {t.id[procedure_occurrence_id]} AS row_id
    , lp.person_id
    , lp.known
    , {t.id[procedure_concept_id]} AS concept_id
    , {t.id[procedure_source_concept_id]} AS source_concept_id
    , {t.text[procedure_source_value]} AS source_value
    , {t.date[procedure_date]} AS start_date
    , {t.date[procedure_end_date]} AS end_date
    , {t.text[procedure_date]} AS start_raw
    , {t.id[quantity]} AS quantity
    , CASE
        WHEN {t.id[procedure_concept_id]} IN (SELECT c.concept_id FROM leopard_concept c)
            OR {t.id[procedure_source_concept_id]} IN (SELECT c.concept_id FROM leopard_concept c)
        THEN 1
        -- the LIKE over every pattern only for a source value whose first character starts one
        -- (CASE, not AND: evaluated in this order on every database)
        WHEN SUBSTRING(UPPER({t.text[procedure_source_value]}), 1, 1) IN (
            SELECT s.lead FROM leopard_source_code s WHERE s.record = 'procedure_occurrence'
        )
        THEN CASE
            WHEN EXISTS (
                SELECT 1 FROM leopard_source_code s
                WHERE s.record = 'procedure_occurrence' AND UPPER({t.text[procedure_source_value]}) LIKE s.pattern
            )
            THEN 1 ELSE 0
        END
        ELSE 0
    END AS candidate
FROM {cdm}procedure_occurrence t
INNER JOIN leopard_person lp ON lp.person_id = {t.id[person_id]}

-- Conditions of screened persons whose standard or source concept is in the concept set,
-- or whose source value looks like an ICD-10-CM / CPT code of a group (cheap pre-filter).
SELECT
    t.condition_occurrence_id AS row_id
    , t.person_id
    , t.condition_concept_id AS concept_id
    , t.condition_source_concept_id AS source_concept_id
    , t.condition_source_value AS source_value
    , t.condition_start_date AS start_date
    , t.condition_end_date AS end_date
FROM {cdm}condition_occurrence t
INNER JOIN leopard_person lp ON lp.person_id = t.person_id
WHERE t.condition_start_date >= :since
    AND (
        t.condition_concept_id IN (SELECT c.concept_id FROM leopard_concept c)
        OR t.condition_source_concept_id IN (SELECT c.concept_id FROM leopard_concept c)
        OR EXISTS (SELECT 1 FROM leopard_source_code s WHERE t.condition_source_value LIKE s.pattern)
    )
